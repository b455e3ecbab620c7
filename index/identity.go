package index

import (
	"encoding/binary"
	"math"
	"strings"
	"time"

	"github.com/twinhub/twinhub"
)

// identity is a twin's device or module identity as the index keeps it,
// inside its flatTwin. At a million twins the *twinhub.Device the index
// kept took about 440 bytes a twin in five or six allocations (the struct
// and its strings), a third of the index's heap and most of its pointers,
// which the garbage collector reads on every cycle. Here the identity's
// strings go in the flatTwin's own allocation (after the bytes of its
// string values), the node key is shared with the table, the instants are
// integers and the enumerations bytes: about 200 bytes a twin and no
// allocation or pointer of its own.
type identity struct {
	// key is the node key: the device id, or the device id, "\x00" and
	// the module id.
	key string
	// text holds the identity's other strings, each after its length as a
	// uvarint, in the order of the id... constants below; the parent scopes
	// come last, after their count.
	text    string
	version int64 // the identity's version, which its etag encodes
	// times are connectionStateUpdatedTime, statusUpdatedTime (devices)
	// and lastActivityTime, in ticks (see ticksOf).
	times    [3]int64
	c2d      int64
	isModule bool
	// statusIx, stateIx and authIx index statuses, states and auths;
	// enumOther says that the value is none of them and is in text.
	statusIx, stateIx, authIx uint8
	opt                       uint8 // opt bits: which optional strings are set
	iotEdge                   bool
}

// The strings of identity.text, in order.
const (
	idGeneration = iota
	idPrimaryKey
	idSecondaryKey
	idManagedBy
	idStatusReason
	idDeviceScope
	idPrimaryThumbprint
	idSecondaryThumbprint
	idStatus     // when status is enumOther
	idState      // when state is enumOther
	idAuth       // when auth is enumOther
	idParentsLen // a count, then the parent scopes
)

// The bits of identity.opt: which optional strings are set (a nil
// pointer told from an empty string), and whether ParentScopes is nil.
const (
	optStatusReason = 1 << iota
	optDeviceScope
	optPrimaryThumbprint
	optSecondaryThumbprint
	optParentScopes // ParentScopes is not nil
)

const (
	timeConnection = iota
	timeStatus
	timeActivity
)

const enumOther = math.MaxUint8

var (
	statuses = []string{"", twinhub.StatusEnabled, twinhub.StatusDisabled}
	states   = []string{"", twinhub.StateDisconnected, twinhub.StateConnected}
	auths    = []string{"", twinhub.AuthSAS, twinhub.AuthSelfSigned, twinhub.AuthCertificateAuthority, twinhub.AuthNone}
)

// ticksZero stands for the zero instant, which IoT Hub writes for what
// never happened.
const ticksZero = math.MinInt64

// ticksOf is t in ticks of 100 ns since the Unix epoch (IoT Hub's
// precision, and years 1 to 9999 fit), and whether instantOf gives t back
// exactly: a time with a zone or finer precision comes back in UTC at
// 100 ns, as the record codec would write it anyway.
func ticksOf(t twinhub.Time) (int64, bool) {
	if t.IsZero() {
		return ticksZero, t.Time == time.Time{}
	}
	sec, ns := t.Unix(), int64(t.Nanosecond())
	ticks := sec*1e7 + ns/100
	return ticks, ns%100 == 0 && t.Location() == time.UTC && instantOf(ticks).Time == t.Time
}

func instantOf(ticks int64) twinhub.Time {
	if ticks == ticksZero {
		return twinhub.Time{}
	}
	sec, rest := ticks/1e7, ticks%1e7
	if rest < 0 {
		sec, rest = sec-1, rest+1e7
	}
	return twinhub.Time{Time: time.Unix(sec, rest*100).UTC()}
}

func enumOf(table []string, s string) uint8 {
	for i, v := range table {
		if v == s {
			return uint8(i)
		}
	}
	return enumOther
}

// appendIdentity appends to data the text of the identity of dev or mod
// (exactly one is set) and returns it with text empty: placeTwin points
// text at where the bytes land once newFlatTwin has copied data.
// exact is false when the identity does not give the same identity back
// (see ticksOf).
func appendIdentity(data []byte, dev *twinhub.Device, mod *twinhub.Module, version int64) (id identity, _ []byte, exact bool) {
	if mod != nil {
		id.key = mod.DeviceID + "\x00" + mod.ModuleID
	} else {
		id.key = dev.DeviceID
	}
	id.version, id.isModule = version, mod != nil
	exact = true
	str := func(s string) {
		data = binary.AppendUvarint(data, uint64(len(s)))
		data = append(data, s...)
	}
	opt := func(bit uint8, s *string) {
		if s == nil {
			str("")
			return
		}
		id.opt |= bit
		str(*s)
	}
	enum := func(table []string, s string, at *uint8) string {
		if *at = enumOf(table, s); *at == enumOther {
			return s
		}
		return ""
	}
	tick := func(i int, t twinhub.Time) {
		var ok bool
		id.times[i], ok = ticksOf(t)
		exact = exact && ok
	}
	var auth *twinhub.Authentication
	var managedBy, status, state string
	if mod != nil {
		auth, managedBy = &mod.Authentication, mod.ManagedBy
		str(mod.GenerationID)
		state = enum(states, mod.ConnectionState, &id.stateIx)
		tick(timeConnection, mod.ConnectionStateUpdatedTime)
		tick(timeActivity, mod.LastActivityTime)
		id.c2d = int64(mod.CloudToDeviceMessageCount)
	} else {
		auth = &dev.Authentication
		str(dev.GenerationID)
		status = enum(statuses, dev.Status, &id.statusIx)
		state = enum(states, dev.ConnectionState, &id.stateIx)
		tick(timeConnection, dev.ConnectionStateUpdatedTime)
		tick(timeStatus, dev.StatusUpdatedTime)
		tick(timeActivity, dev.LastActivityTime)
		id.c2d = int64(dev.CloudToDeviceMessageCount)
		id.iotEdge = dev.Capabilities.IoTEdge
	}
	str(auth.SymmetricKey.PrimaryKey)
	str(auth.SymmetricKey.SecondaryKey)
	str(managedBy)
	if dev != nil {
		opt(optStatusReason, dev.StatusReason)
		opt(optDeviceScope, dev.DeviceScope)
	} else {
		str("")
		str("")
	}
	opt(optPrimaryThumbprint, auth.X509Thumbprint.PrimaryThumbprint)
	opt(optSecondaryThumbprint, auth.X509Thumbprint.SecondaryThumbprint)
	str(status)
	str(state)
	str(enum(auths, auth.Type, &id.authIx))
	if dev != nil && dev.ParentScopes != nil {
		id.opt |= optParentScopes
		data = binary.AppendUvarint(data, uint64(len(dev.ParentScopes)))
		for _, s := range dev.ParentScopes {
			str(s)
		}
	} else {
		data = binary.AppendUvarint(data, 0)
	}
	return id, data, exact
}

// placeTwin allocates the flatTwin of t (its header as it is) with its
// fields, its stamps (t.stamps, copied) and the bytes of its string values
// (data) in one allocation
// (newFlatTwin), the identity of dev or mod appended to data and its
// text pointed there. It returns data as it grew, for the caller's
// buffer, and appendIdentity's exact.
func placeTwin(t *flatTwin, fields []field, data []byte, dev *twinhub.Device, mod *twinhub.Module, version int64) (ft *flatTwin, grown []byte, exact bool) {
	at := len(data)
	id, data, exact := appendIdentity(data, dev, mod, version)
	ft = newFlatTwin(len(fields), t.stamps, data)
	all, stamps, strs := ft.fields, ft.stamps, ft.data
	*ft = *t
	ft.fields, ft.stamps, ft.data = all, stamps, strs
	copy(ft.fields, fields)
	ft.id = id
	ft.id.text = strs[at:]
	return ft, data, exact
}

// values is the bytes of the twin's string values: data without the
// identity's text.
func (t *flatTwin) values() string { return t.data[:len(t.data)-len(t.id.text)] }

// field returns string i of text (one of the id... constants before
// idParentsLen).
func (id *identity) field(i int) string {
	s := id.text
	for ; i > 0; i-- {
		_, s = nextString(s)
	}
	str, _ := nextString(s)
	return str
}

// nextString splits the string at the start of s, after its length, from
// the rest. appendIdentity wrote s, so it is well formed.
func nextString(s string) (str, rest string) {
	n, w := uvarint(s)
	return s[w : w+n], s[w+n:]
}

// uvarint reads the uvarint at the start of s and its width.
func uvarint(s string) (n, w int) {
	var x uint64
	for shift := 0; ; shift += 7 {
		c := s[w]
		w++
		x |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return int(x), w
		}
	}
}

func (id *identity) optional(bit uint8, i int) *string {
	if id.opt&bit == 0 {
		return nil
	}
	s := id.field(i)
	return &s
}

func (id *identity) enum(table []string, v uint8, i int) string {
	if v == enumOther {
		return id.field(i)
	}
	return table[v]
}

func (id *identity) deviceID() string {
	if i := strings.IndexByte(id.key, 0); i >= 0 {
		return id.key[:i]
	}
	return id.key
}

func (id *identity) moduleID() string {
	if i := strings.IndexByte(id.key, 0); i >= 0 {
		return id.key[i+1:]
	}
	return ""
}

// identityETags are the etags of the first identity versions, made once
// rather than at every read of a twin's etag.
var identityETags = func() []string {
	out := make([]string, 64)
	for v := range out {
		out[v] = twinhub.IdentityETag(int64(v))
	}
	return out
}()

func (id *identity) etag() string {
	if v := id.version; v >= 0 && v < int64(len(identityETags)) {
		return identityETags[v]
	}
	return twinhub.IdentityETag(id.version)
}

func (id *identity) status() string { return id.enum(statuses, id.statusIx, idStatus) }

func (id *identity) connectionState() string { return id.enum(states, id.stateIx, idState) }

func (id *identity) authType() string { return id.enum(auths, id.authIx, idAuth) }

func (id *identity) parentScopes() twinhub.Scopes {
	if id.opt&optParentScopes == 0 {
		return nil
	}
	// What follows the last string is the count, then the scopes.
	s := id.text
	for range idParentsLen {
		_, s = nextString(s)
	}
	count, w := uvarint(s)
	s = s[w:]
	out := make(twinhub.Scopes, count)
	for i := range out {
		out[i], s = nextString(s)
	}
	return out
}

func (id *identity) authentication() twinhub.Authentication {
	return twinhub.Authentication{
		Type: id.authType(),
		SymmetricKey: twinhub.SymmetricKey{
			PrimaryKey:   id.field(idPrimaryKey),
			SecondaryKey: id.field(idSecondaryKey),
		},
		X509Thumbprint: twinhub.X509Thumbprint{
			PrimaryThumbprint:   id.optional(optPrimaryThumbprint, idPrimaryThumbprint),
			SecondaryThumbprint: id.optional(optSecondaryThumbprint, idSecondaryThumbprint),
		},
	}
}

// device returns a new Device of the identity, nil for a module's.
func (id *identity) device() *twinhub.Device {
	if id.isModule {
		return nil
	}
	d := id.deviceValue()
	return &d
}

// module returns a new Module of the identity, nil for a device's.
func (id *identity) module() *twinhub.Module {
	if !id.isModule {
		return nil
	}
	m := id.moduleValue()
	return &m
}

func (id *identity) deviceValue() twinhub.Device {
	return twinhub.Device{
		DeviceID:                   id.key,
		GenerationID:               id.field(idGeneration),
		ETag:                       id.etag(),
		ConnectionState:            id.connectionState(),
		Status:                     id.status(),
		StatusReason:               id.optional(optStatusReason, idStatusReason),
		ConnectionStateUpdatedTime: instantOf(id.times[timeConnection]),
		StatusUpdatedTime:          instantOf(id.times[timeStatus]),
		LastActivityTime:           instantOf(id.times[timeActivity]),
		CloudToDeviceMessageCount:  int(id.c2d),
		Authentication:             id.authentication(),
		Capabilities:               twinhub.Capabilities{IoTEdge: id.iotEdge},
		DeviceScope:                id.optional(optDeviceScope, idDeviceScope),
		ParentScopes:               id.parentScopes(),
	}
}

func (id *identity) moduleValue() twinhub.Module {
	return twinhub.Module{
		ModuleID:                   id.moduleID(),
		DeviceID:                   id.deviceID(),
		ManagedBy:                  id.field(idManagedBy),
		GenerationID:               id.field(idGeneration),
		ETag:                       id.etag(),
		ConnectionState:            id.connectionState(),
		ConnectionStateUpdatedTime: instantOf(id.times[timeConnection]),
		LastActivityTime:           instantOf(id.times[timeActivity]),
		CloudToDeviceMessageCount:  int(id.c2d),
		Authentication:             id.authentication(),
	}
}
