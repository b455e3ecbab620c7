package wire

import "time"

// The performatives as Go structs (part 2, section 2.7; part 5 for SASL),
// with the fields twinhub reads or writes. Each has a Parse from a
// decoded Performative, which checks the types of the fields (a field of
// another type is ErrMalformed: amqp:decode-error), and a List of its
// fields for AppendPerformative. Defaults are the spec's: a field a peer
// leaves out (or sends as null) takes its default.

// Open negotiates a connection.
type Open struct {
	ContainerID  string
	Hostname     string
	MaxFrameSize uint32 // default 4294967295
	ChannelMax   uint16 // default 65535
	// IdleTimeout is how long the sender lets the connection be silent
	// before it closes it (0: no limit).
	IdleTimeout         time.Duration
	OfferedCapabilities []Symbol
	DesiredCapabilities []Symbol
	Properties          Map
}

// Begin opens a session on a channel.
type Begin struct {
	RemoteChannel  *uint16 // set when answering the peer's begin
	NextOutgoingID uint32
	IncomingWindow uint32
	OutgoingWindow uint32
	HandleMax      uint32 // default 4294967295
	Properties     Map
}

// Attach opens a link. Role false is the sender, true the receiver.
type Attach struct {
	Name                 string
	Handle               uint32
	Role                 bool
	SndSettleMode        uint8 // 0 unsettled, 1 settled, 2 mixed (default)
	RcvSettleMode        uint8 // 0 first (default), 1 second
	Source               *Terminus
	Target               *Terminus
	InitialDeliveryCount uint32
	MaxMessageSize       uint64
	OfferedCapabilities  []Symbol
	DesiredCapabilities  []Symbol
	Properties           Map
}

// Roles of a link end.
const (
	RoleSender   = false
	RoleReceiver = true
)

// Terminus is a link's source or target: its address, and for a source
// the filters asked for (Event Hubs readers send their position there).
type Terminus struct {
	Address      string
	Filter       Map // source only
	Capabilities []Symbol
}

// Descriptors of a source and a target.
const (
	CodeSource = 0x28
	CodeTarget = 0x29
)

// Flow updates the session windows and, with a handle, a link's credit.
type Flow struct {
	NextIncomingID *uint32
	IncomingWindow uint32
	NextOutgoingID uint32
	OutgoingWindow uint32
	Handle         *uint32
	DeliveryCount  *uint32
	LinkCredit     *uint32
	Available      *uint32
	Drain          bool
	Echo           bool
}

// Transfer carries a message, or a frame of one (More).
type Transfer struct {
	Handle        uint32
	DeliveryID    *uint32
	DeliveryTag   []byte
	MessageFormat *uint32
	Settled       *bool
	More          bool
	State         any // a delivery state (Described), or nil
	Aborted       bool
	Payload       []byte
}

// Disposition settles or updates deliveries First to Last (First when
// Last is nil).
type Disposition struct {
	Role    bool
	First   uint32
	Last    *uint32
	Settled bool
	State   any // Accepted, Rejected ... as Described, or nil
}

// Detach ends a link; Closed also forgets its state. End ends a session,
// Close the connection; each may carry an error.
type Detach struct {
	Handle uint32
	Closed bool
	Error  *Error
}

// Error is an AMQP error: a condition such as amqp:not-found, a
// description, and info (amqp:link:redirect puts the new address there).
type Error struct {
	Condition   Symbol
	Description string
	Info        Map
}

// CodeError is the descriptor of an error.
const CodeError = 0x1d

// The delivery states and outcomes (part 3, section 3.4).
const (
	CodeReceived = 0x23
	CodeAccepted = 0x24
	CodeRejected = 0x25
	CodeReleased = 0x26
	CodeModified = 0x27
)

// SASLInit is the client's choice of mechanism and its first response.
type SASLInit struct {
	Mechanism       Symbol
	InitialResponse []byte
	Hostname        string
}

// SASL outcome codes.
const (
	SASLOK      = 0
	SASLAuth    = 1
	SASLSys     = 2
	SASLSysPerm = 3
	SASLSysTemp = 4
)

// fields reads a performative's list with types checked, remembering the
// first error.
type fields struct {
	l    List
	name string
	err  error
}

func (f *fields) at(i int) any {
	if i < len(f.l) {
		return f.l[i]
	}
	return nil
}

func (f *fields) bad(i int, want string) {
	if f.err == nil {
		f.err = malformed("%s field %d is a %T, not a %s", f.name, i, f.at(i), want)
	}
}

func (f *fields) mandatory(i int) bool {
	if f.at(i) == nil {
		if f.err == nil {
			f.err = malformed("%s field %d is mandatory", f.name, i)
		}
		return false
	}
	return true
}

func (f *fields) str(i int) string {
	switch v := f.at(i).(type) {
	case nil:
		return ""
	case string:
		return v
	}
	f.bad(i, "string")
	return ""
}

func (f *fields) symbol(i int) Symbol {
	switch v := f.at(i).(type) {
	case nil:
		return ""
	case Symbol:
		return v
	}
	f.bad(i, "symbol")
	return ""
}

func (f *fields) binary(i int) []byte {
	switch v := f.at(i).(type) {
	case nil:
		return nil
	case []byte:
		return v
	}
	f.bad(i, "binary")
	return nil
}

func (f *fields) boolean(i int) bool {
	switch v := f.at(i).(type) {
	case nil:
		return false
	case bool:
		return v
	}
	f.bad(i, "boolean")
	return false
}

func (f *fields) optBool(i int) *bool {
	if f.at(i) == nil {
		return nil
	}
	v := f.boolean(i)
	return &v
}

func (f *fields) ubyte(i int, def uint8) uint8 {
	switch v := f.at(i).(type) {
	case nil:
		return def
	case uint8:
		return v
	}
	f.bad(i, "ubyte")
	return def
}

func (f *fields) ushort(i int, def uint16) uint16 {
	switch v := f.at(i).(type) {
	case nil:
		return def
	case uint16:
		return v
	}
	f.bad(i, "ushort")
	return def
}

func (f *fields) uint(i int, def uint32) uint32 {
	switch v := f.at(i).(type) {
	case nil:
		return def
	case uint32:
		return v
	}
	f.bad(i, "uint")
	return def
}

func (f *fields) optUint(i int) *uint32 {
	if f.at(i) == nil {
		return nil
	}
	v := f.uint(i, 0)
	return &v
}

func (f *fields) ulong(i int) uint64 {
	switch v := f.at(i).(type) {
	case nil:
		return 0
	case uint64:
		return v
	}
	f.bad(i, "ulong")
	return 0
}

func (f *fields) fieldsMap(i int) Map {
	switch v := f.at(i).(type) {
	case nil:
		return nil
	case Map:
		return v
	}
	f.bad(i, "map")
	return nil
}

// symbols reads a "multiple" symbol field: one symbol or an array.
func (f *fields) symbols(i int) []Symbol {
	switch v := f.at(i).(type) {
	case nil:
		return nil
	case Symbol:
		return []Symbol{v}
	case Array:
		out := make([]Symbol, 0, len(v))
		for _, e := range v {
			s, ok := e.(Symbol)
			if !ok {
				f.bad(i, "symbol array")
				return nil
			}
			out = append(out, s)
		}
		return out
	}
	f.bad(i, "symbol or symbol array")
	return nil
}

// described reads a described field whose descriptor is code, returning
// its list (false when the field is null or not that).
func (f *fields) described(i int, code uint64, what string) (List, bool) {
	v := f.at(i)
	if v == nil {
		return nil, false
	}
	d, ok := v.(Described)
	c, known := DescriptorCode(d.Descriptor)
	l, isList := d.Value.(List)
	if !ok || !known || c != code || !isList {
		f.bad(i, what)
		return nil, false
	}
	return l, true
}

// ParseOpen reads an open performative.
func ParseOpen(p Performative) (Open, error) {
	f := fields{l: p.Fields, name: "open"}
	o := Open{
		ContainerID:  f.str(0),
		Hostname:     f.str(1),
		MaxFrameSize: f.uint(2, 4294967295),
		ChannelMax:   f.ushort(3, 65535),
		IdleTimeout:  time.Duration(f.uint(4, 0)) * time.Millisecond,
	}
	f.mandatory(0)
	o.OfferedCapabilities = f.symbols(7)
	o.DesiredCapabilities = f.symbols(8)
	o.Properties = f.fieldsMap(9)
	return o, f.err
}

// List is the open's fields.
func (o Open) List() List {
	return List{o.ContainerID, orNil(o.Hostname), o.MaxFrameSize, o.ChannelMax,
		uint32(o.IdleTimeout / time.Millisecond), nil, nil,
		symbolArray(o.OfferedCapabilities), symbolArray(o.DesiredCapabilities), mapOrNil(o.Properties)}
}

// ParseBegin reads a begin performative.
func ParseBegin(p Performative) (Begin, error) {
	f := fields{l: p.Fields, name: "begin"}
	var b Begin
	if f.at(0) != nil {
		c := f.ushort(0, 0)
		b.RemoteChannel = &c
	}
	for _, i := range []int{1, 2, 3} {
		f.mandatory(i)
	}
	b.NextOutgoingID = f.uint(1, 0)
	b.IncomingWindow = f.uint(2, 0)
	b.OutgoingWindow = f.uint(3, 0)
	b.HandleMax = f.uint(4, 4294967295)
	b.Properties = f.fieldsMap(7)
	return b, f.err
}

// List is the begin's fields.
func (b Begin) List() List {
	var remote any
	if b.RemoteChannel != nil {
		remote = *b.RemoteChannel
	}
	return List{remote, b.NextOutgoingID, b.IncomingWindow, b.OutgoingWindow, b.HandleMax, nil, nil, mapOrNil(b.Properties)}
}

// ParseAttach reads an attach performative.
func ParseAttach(p Performative) (Attach, error) {
	f := fields{l: p.Fields, name: "attach"}
	f.mandatory(0)
	f.mandatory(1)
	f.mandatory(2)
	a := Attach{
		Name:                 f.str(0),
		Handle:               f.uint(1, 0),
		Role:                 f.boolean(2),
		SndSettleMode:        f.ubyte(3, 2),
		RcvSettleMode:        f.ubyte(4, 0),
		InitialDeliveryCount: f.uint(9, 0),
		MaxMessageSize:       f.ulong(10),
		OfferedCapabilities:  f.symbols(11),
		DesiredCapabilities:  f.symbols(12),
		Properties:           f.fieldsMap(13),
	}
	if l, ok := f.described(5, CodeSource, "source"); ok {
		s := fields{l: l, name: "source"}
		a.Source = &Terminus{Address: s.str(0), Filter: s.fieldsMap(7), Capabilities: s.symbols(10)}
		if f.err == nil {
			f.err = s.err
		}
	}
	if l, ok := f.described(6, CodeTarget, "target"); ok {
		t := fields{l: l, name: "target"}
		a.Target = &Terminus{Address: t.str(0), Capabilities: t.symbols(6)}
		if f.err == nil {
			f.err = t.err
		}
	}
	return a, f.err
}

// List is the attach's fields. A nil Source or Target is sent as null:
// how a refused attach is answered (AMQP.md).
func (a Attach) List() List {
	var source, target any
	if a.Source != nil {
		source = Described{uint64(CodeSource), List{orNil(a.Source.Address), nil, nil, nil, nil, nil, nil, mapOrNil(a.Source.Filter), nil, nil, nil}}
	}
	if a.Target != nil {
		target = Described{uint64(CodeTarget), List{orNil(a.Target.Address), nil, nil, nil, nil, nil, nil}}
	}
	l := List{a.Name, a.Handle, a.Role, a.SndSettleMode, a.RcvSettleMode, source, target, nil, nil}
	if a.Role == RoleSender {
		l = append(l, a.InitialDeliveryCount)
	} else {
		l = append(l, nil)
	}
	var max any
	if a.MaxMessageSize > 0 {
		max = a.MaxMessageSize
	}
	return append(l, max, symbolArray(a.OfferedCapabilities), symbolArray(a.DesiredCapabilities), mapOrNil(a.Properties))
}

// ParseFlow reads a flow performative.
func ParseFlow(p Performative) (Flow, error) {
	f := fields{l: p.Fields, name: "flow"}
	f.mandatory(1)
	f.mandatory(2)
	f.mandatory(3)
	fl := Flow{
		NextIncomingID: f.optUint(0),
		IncomingWindow: f.uint(1, 0),
		NextOutgoingID: f.uint(2, 0),
		OutgoingWindow: f.uint(3, 0),
		Handle:         f.optUint(4),
		DeliveryCount:  f.optUint(5),
		LinkCredit:     f.optUint(6),
		Available:      f.optUint(7),
		Drain:          f.boolean(8),
		Echo:           f.boolean(9),
	}
	return fl, f.err
}

// List is the flow's fields.
func (fl Flow) List() List {
	return List{optUint(fl.NextIncomingID), fl.IncomingWindow, fl.NextOutgoingID, fl.OutgoingWindow,
		optUint(fl.Handle), optUint(fl.DeliveryCount), optUint(fl.LinkCredit), optUint(fl.Available), fl.Drain, fl.Echo, nil}
}

// ParseTransfer reads a transfer performative and its payload.
func ParseTransfer(p Performative) (Transfer, error) {
	f := fields{l: p.Fields, name: "transfer"}
	f.mandatory(0)
	t := Transfer{
		Handle:        f.uint(0, 0),
		DeliveryID:    f.optUint(1),
		DeliveryTag:   f.binary(2),
		MessageFormat: f.optUint(3),
		Settled:       f.optBool(4),
		More:          f.boolean(5),
		State:         f.at(7),
		Aborted:       f.boolean(9),
		Payload:       p.Payload,
	}
	return t, f.err
}

// List is the transfer's fields (the payload goes after them).
func (t Transfer) List() List {
	var settled any
	if t.Settled != nil {
		settled = *t.Settled
	}
	return List{t.Handle, optUint(t.DeliveryID), t.DeliveryTag, optUint(t.MessageFormat), settled, t.More, nil, t.State, nil, t.Aborted, false}
}

// ParseDisposition reads a disposition performative.
func ParseDisposition(p Performative) (Disposition, error) {
	f := fields{l: p.Fields, name: "disposition"}
	f.mandatory(0)
	f.mandatory(1)
	d := Disposition{
		Role:    f.boolean(0),
		First:   f.uint(1, 0),
		Last:    f.optUint(2),
		Settled: f.boolean(3),
		State:   f.at(4),
	}
	return d, f.err
}

// List is the disposition's fields.
func (d Disposition) List() List {
	return List{d.Role, d.First, optUint(d.Last), d.Settled, d.State, false}
}

// ParseDetach reads a detach performative.
func ParseDetach(p Performative) (Detach, error) {
	f := fields{l: p.Fields, name: "detach"}
	f.mandatory(0)
	d := Detach{Handle: f.uint(0, 0), Closed: f.boolean(1)}
	d.Error = f.error(2)
	return d, f.err
}

// List is the detach's fields.
func (d Detach) List() List { return List{d.Handle, d.Closed, d.Error.Field()} }

// Parse reads any performative into its struct (Open, Begin, Attach,
// Flow, Transfer, Disposition, Detach, SASLInit; *Error for end and
// close; the fields as they are for the other SASL frames).
func Parse(p Performative) (any, error) {
	switch p.Code {
	case CodeOpen:
		return ParseOpen(p)
	case CodeBegin:
		return ParseBegin(p)
	case CodeAttach:
		return ParseAttach(p)
	case CodeFlow:
		return ParseFlow(p)
	case CodeTransfer:
		return ParseTransfer(p)
	case CodeDisposition:
		return ParseDisposition(p)
	case CodeDetach:
		return ParseDetach(p)
	case CodeEnd, CodeClose:
		return ParseError(p)
	case CodeSASLInit:
		return ParseSASLInit(p)
	case CodeSASLMechanisms, CodeSASLChallenge, CodeSASLResponse, CodeSASLOutcome:
		return p.Fields, nil
	}
	return nil, malformed("no performative has code %#x", p.Code)
}

// ParseError reads the error field of an end or close performative.
func ParseError(p Performative) (*Error, error) {
	f := fields{l: p.Fields, name: "end or close"}
	e := f.error(0)
	return e, f.err
}

func (f *fields) error(i int) *Error {
	l, ok := f.described(i, CodeError, "error")
	if !ok {
		return nil
	}
	e := fields{l: l, name: "error"}
	out := &Error{Condition: e.symbol(0), Description: e.str(1), Info: e.fieldsMap(2)}
	if f.err == nil {
		f.err = e.err
	}
	return out
}

// Field is the error as a field of a performative or delivery state: nil
// for no error.
func (e *Error) Field() any {
	if e == nil {
		return nil
	}
	return Described{uint64(CodeError), List{e.Condition, orNil(e.Description), mapOrNil(e.Info)}}
}

// ErrorList is the fields of an end or close carrying e (nil: none).
func ErrorList(e *Error) List { return List{e.Field()} }

// ParseSASLInit reads a sasl-init frame.
func ParseSASLInit(p Performative) (SASLInit, error) {
	f := fields{l: p.Fields, name: "sasl-init"}
	f.mandatory(0)
	s := SASLInit{Mechanism: f.symbol(0), InitialResponse: f.binary(1), Hostname: f.str(2)}
	return s, f.err
}

// SASLMechanismsList is the fields of a sasl-mechanisms frame.
func SASLMechanismsList(mechanisms ...Symbol) List { return List{symbolArray(mechanisms)} }

// SASLOutcomeList is the fields of a sasl-outcome frame.
func SASLOutcomeList(code uint8) List { return List{code, nil} }

// Accepted is the accepted outcome, the settlement of nearly every
// delivery: one value, not one made for each (it holds an empty list,
// which no one changes).
var Accepted = State(CodeAccepted)

// acceptedState is Accepted boxed once, for the State of a Disposition.
var acceptedState any = Accepted

// StateOf is outcome as the State of a Disposition. Boxing the outcome
// of each delivery allocated; the accepted outcome is boxed once.
func StateOf(outcome Described) any {
	if l, ok := outcome.Value.(List); ok && len(l) == 0 && outcome.Descriptor == any(uint64(CodeAccepted)) {
		return acceptedState
	}
	return outcome
}

// State is a delivery state or outcome with its fields.
func State(code uint64, fields ...any) Described {
	return Described{Descriptor: code, Value: append(List{}, fields...)}
}

// StateCode is the code of a delivery state (0 when v is none).
func StateCode(v any) uint64 {
	d, ok := v.(Described)
	if !ok {
		return 0
	}
	c, _ := DescriptorCode(d.Descriptor)
	return c
}

// orNil is v as a field, or nil (the field left out) for v's zero value.
func orNil[T comparable](v T) any {
	var zero T
	if v == zero {
		return nil
	}
	return v
}

func mapOrNil(m Map) any {
	if m == nil {
		return nil
	}
	return m
}

func optUint(p *uint32) any {
	if p == nil {
		return nil
	}
	return *p
}

func symbolArray(s []Symbol) any {
	if len(s) == 0 {
		return nil
	}
	a := make(Array, len(s))
	for i, v := range s {
		a[i] = v
	}
	return a
}
