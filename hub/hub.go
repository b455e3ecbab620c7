package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/index"
	"github.com/twinhub/twinhub/sas"
)

// Hub is the core of twinhub: the identity registry, twins, queries and
// authorization, with no protocol code. Front ends (REST, MQTT) translate
// requests into calls on it.
type Hub struct {
	host     string
	policies []sas.Policy
	store    twinhub.Store
	bus      twinhub.Bus
	log      *slog.Logger
	index    *index.Index
	// cache holds recently read and written records (cache.go).
	cache *recordCache
	// states writes connection states in the background (connections.go).
	states connStates

	subsMu sync.Mutex
	subs   map[twinhub.Key]map[*desiredSub]struct{}

	// Messages (messages.go): the stores Config gave, fixed for the
	// hub's life; without telemetry, events are acknowledged and dropped
	// (said once, noted); without C2D, cloud-to-device messages are
	// refused. c2dLocks are the locks of messages received over HTTPS.
	telemetry twinhub.TelemetryStore
	c2d       twinhub.C2DQueue
	feedbacks twinhub.FeedbackStore
	noted     sync.Once
	c2dMu     sync.Mutex
	c2dLocks  map[c2dLockKey]time.Time

	// methodsOnce makes methodRouter, the node's direct-method router,
	// on first use (methods.go).
	methodsOnce  sync.Once
	methodRouter *methodRouter
	methodResend time.Duration
}

// Config is what a Hub needs to run.
type Config struct {
	// Host is the hub's host name, the one SAS tokens are issued for.
	Host     string
	Policies []sas.Policy
	Store    twinhub.Store
	Bus      twinhub.Bus
	Log      *slog.Logger
	// Telemetry and C2D store device-to-cloud and cloud-to-device
	// messages; without them telemetry is dropped and C2D refused.
	// Without Feedback, no C2D feedback is kept.
	Telemetry twinhub.TelemetryStore
	C2D       twinhub.C2DQueue
	Feedback  twinhub.FeedbackStore
	// MethodResendInterval is how often a direct-method call that waits
	// for its device to connect (connectTimeoutInSeconds) is sent again
	// to every node, besides when a node announces the device's
	// connection (default 1 s).
	MethodResendInterval time.Duration
	// C2DSweepInterval is how often expired cloud-to-device messages are
	// deleted, with their feedback, when no delivery has come across
	// them (0: never; `twinhub serve` sweeps every minute).
	C2DSweepInterval time.Duration
	// RecordCacheBytes bounds the decoded records the hub keeps to start
	// writes and answer reads from (0: DefaultRecordCacheBytes, < 0: no
	// cache).
	RecordCacheBytes int
}

// New starts a hub: it begins watching the store into the query index and
// subscribes to desired-property events, and returns once the index holds
// every existing record. The hub runs until ctx ends.
func New(ctx context.Context, c Config) (*Hub, error) {
	if c.Log == nil {
		c.Log = slog.Default()
	}
	h := &Hub{
		host:     strings.ToLower(c.Host),
		policies: c.Policies,
		store:    c.Store,
		bus:      c.Bus,
		log:      c.Log,
		index:    index.NewIndex(),
		subs:     map[twinhub.Key]map[*desiredSub]struct{}{},

		telemetry: c.Telemetry,
		c2d:       c.C2D,
		feedbacks: c.Feedback,
		c2dLocks:  map[c2dLockKey]time.Time{},

		methodResend: c.MethodResendInterval,
	}
	if h.methodResend <= 0 {
		h.methodResend = time.Second
	}
	if c.RecordCacheBytes == 0 {
		c.RecordCacheBytes = DefaultRecordCacheBytes
	}
	h.cache = newRecordCache(c.RecordCacheBytes)
	h.states.init()
	ready := make(chan struct{})
	watchErr := make(chan error, 1)
	go func() {
		watchErr <- h.index.Watch(ctx, c.Store, c.Log, func() { close(ready) })
	}()
	select {
	case <-ready:
	case err := <-watchErr:
		return nil, fmt.Errorf("watching the store: %w", err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	go func() {
		if err := <-watchErr; err != nil && ctx.Err() == nil {
			h.log.Error("store watch ended", "err", err)
		}
	}()
	if c.C2D != nil && c.C2DSweepInterval > 0 {
		go h.sweepC2DEvery(ctx, c.C2DSweepInterval)
	}
	if c.Bus != nil {
		cancel, err := c.Bus.Subscribe(desiredSubject+">", h.deliverDesired)
		if err != nil {
			return nil, fmt.Errorf("subscribing to desired-property events: %w", err)
		}
		context.AfterFunc(ctx, cancel)
	}
	return h, nil
}

// Host is the hub's host name.
func (h *Hub) Host() string { return h.host }

// --- authorization ---

// AuthorizeService checks a back end's SAS token for an operation on the
// hub as a whole: the token's resource must be the hub's host, and its
// policy must have at least one of the rights the operation accepts.
func (h *Hub) AuthorizeService(token string, anyOf ...sas.Permission) error {
	return h.AuthorizeServiceOn(token, "", anyOf...)
}

// AuthorizeServiceOn checks a back end's SAS token for an operation on
// resource, the path below the hub's host that the operation touches (such
// as "/devices/dev1" or "/twins/dev1/methods"; "" for the hub itself), and
// that its policy has at least one of the rights the operation accepts.
//
// IoT Hub treats a token's resource URI (sr) as the "URI prefix (by
// segment) of the endpoints that can be accessed with this token"
// (iot-hub-dev-guide-sas.md): a policy token for "<host>/devices/dev1" is
// good for "<host>/devices/dev1" and "<host>/devices/dev1/modules/m1", not
// for "<host>/devices/dev10", "<host>/twins/dev1" or the hub as a whole.
// sas.Token.Covers makes that comparison, after the normalizations twinhub
// applies to every sr (host case, scheme, trailing "/", the double
// encoding of some SDKs). The caller maps its request to resource; a
// resource it cannot name with confidence must be "", so that only
// hub-wide tokens pass.
func (h *Hub) AuthorizeServiceOn(token, resource string, anyOf ...sas.Permission) error {
	p, err := sas.Authenticate(token, h.policies, h.host+resource, twinhub.Now().Time)
	if err != nil {
		return unauthorized(err)
	}
	for _, need := range anyOf {
		if p.Rights.Has(need) {
			return nil
		}
	}
	return twinhub.Errorf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "the policy %s does not grant the right this operation needs", p.Name)
}

func unauthorized(err error) *twinhub.Error {
	return twinhub.Errorf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "Unauthorized: %v", err)
}

// AuthenticateDevice checks a token that a device or module presents to
// act as k: signed with k's own key for k's resource, or with a policy
// that grants DeviceConnect. The identity (and, for a module, its device)
// must exist and be enabled.
func (h *Hub) AuthenticateDevice(ctx context.Context, token string, k twinhub.Key) error {
	t, err := sas.ParseToken(token)
	if err != nil {
		return unauthorized(err)
	}
	if err := t.CheckTime(twinhub.Now().Time); err != nil {
		return unauthorized(err)
	}
	if !t.Covers(h.ResourceURI(k)) {
		return unauthorized(sas.ErrResource)
	}
	if t.KeyName != "" {
		p, err := sas.Authenticate(token, h.policies, h.ResourceURI(k), twinhub.Now().Time)
		if err != nil {
			return unauthorized(err)
		}
		if !p.Rights.Has(sas.DeviceConnect) {
			return unauthorized(fmt.Errorf("policy %s does not grant DeviceConnect", p.Name))
		}
	}
	e, err := h.read(ctx, k)
	if notFound(err) {
		return unauthorized(fmt.Errorf("%s is not registered", k))
	} else if err != nil {
		return err
	}
	rec := e.rec
	if err := h.checkEnabled(ctx, rec); err != nil {
		return err
	}
	if t.KeyName != "" {
		return nil
	}
	a := rec.Auth()
	if a.Type != twinhub.AuthSAS {
		return unauthorized(fmt.Errorf("%s does not authenticate with symmetric keys", k))
	}
	if err := t.Verify(a.SymmetricKey.PrimaryKey, a.SymmetricKey.SecondaryKey); err != nil {
		return unauthorized(err)
	}
	return nil
}

// notFound tells the hub's not-found errors (errNotFound) from others.
func notFound(err error) bool {
	var e *twinhub.Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

// checkEnabled refuses identities whose device is disabled.
func (h *Hub) checkEnabled(ctx context.Context, rec *twinhub.Record) error {
	dev := rec.Device
	if rec.Module != nil {
		d, err := h.read(ctx, twinhub.DeviceKey(rec.Module.DeviceID))
		if err != nil {
			return unauthorized(fmt.Errorf("device %s is not registered", rec.Module.DeviceID))
		}
		dev = d.rec.Device
	}
	if dev.Status != twinhub.StatusEnabled {
		return unauthorized(fmt.Errorf("device %s is disabled", dev.DeviceID))
	}
	return nil
}

// ResourceURI is the SAS resource of an identity: host/devices/id[/modules/mid].
func (h *Hub) ResourceURI(k twinhub.Key) string {
	r := h.host + "/devices/" + k.DeviceID
	if k.ModuleID != "" {
		r += "/modules/" + k.ModuleID
	}
	return r
}

// --- records ---

// modify applies change to the current record of k and stores it with
// compare-and-set, retrying from a fresh read when another writer got
// there first. change sees a private copy each time and may refuse with
// an error, in which case nothing is written.
//
// It starts from the cached record when there is one (cache.go) and
// lets the compare-and-set tell whether that was current. A refusal by
// change is only believed when change saw the record as the store holds
// it: a stale cached record may fail an etag check or a size limit that
// the current one passes.
//
// The record returned is cached: the caller must not change it.
func (h *Hub) modify(ctx context.Context, k twinhub.Key, change func(*twinhub.Record) error) (*cachedRecord, error) {
	const attempts = 100
	useCache := true
	for range attempts {
		var rec *twinhub.Record
		var rev uint64
		cached := false
		if e := h.cache.get(k); e != nil && useCache {
			rec, rev, cached = e.rec.Clone(), e.rev, true
		} else {
			r, v, err := h.store.Get(ctx, k)
			if errors.Is(err, twinhub.ErrNotFound) {
				h.cache.drop(k, 0)
				return nil, twinhub.ErrIdentityNotFound(k)
			} else if err != nil {
				return nil, err
			}
			rec, rev = r, v
		}
		useCache = true
		rec.SetETags()
		if err := change(rec); err != nil {
			if cached {
				h.cache.drop(k, rev)
				useCache = false
				continue
			}
			return nil, err
		}
		rec.SetETags()
		newRev, err := h.store.Update(ctx, k, rec, rev)
		if err == nil {
			return h.cache.put(k, rec, newRev), nil
		}
		if !errors.Is(err, twinhub.ErrConflict) {
			return nil, err
		}
		h.cache.drop(k, rev)
	}
	return nil, twinhub.Errorf(http.StatusServiceUnavailable, "ServiceUnavailable", "%s is being changed by too many writers; try again", k)
}

// etagMatches implements If-Match: empty, * or "*" match anything; quotes
// around the etag are optional, as clients differ (Node quotes even the
// star, Go sends a bare one).
func etagMatches(ifMatch, etag string) bool {
	ifMatch = strings.Trim(strings.TrimSpace(ifMatch), `"`)
	return ifMatch == "" || ifMatch == "*" || ifMatch == etag
}

// --- devices ---

// CreateDevice registers a new device with a fresh twin.
func (h *Hub) CreateDevice(ctx context.Context, d twinhub.Device) (*twinhub.Device, error) {
	rec, err := h.newDeviceRecord(d)
	if err != nil {
		return nil, err
	}
	rev, err := h.store.Create(ctx, twinhub.DeviceKey(d.DeviceID), rec)
	if errors.Is(err, twinhub.ErrExists) {
		return nil, twinhub.Errorf(http.StatusConflict, "DeviceAlreadyExists", "A device with ID '%s' is already registered", d.DeviceID)
	} else if err != nil {
		return nil, err
	}
	h.cache.put(twinhub.DeviceKey(d.DeviceID), rec, rev)
	return rec.DeviceCopy(), nil
}

func (h *Hub) newDeviceRecord(d twinhub.Device) (*twinhub.Record, error) {
	if err := twinhub.ValidateID("device", d.DeviceID); err != nil {
		return nil, err
	}
	if err := twinhub.NormalizeAuth(&d.Authentication, nil); err != nil {
		return nil, err
	}
	if d.Status == "" {
		d.Status = twinhub.StatusEnabled
	}
	if d.Status != twinhub.StatusEnabled && d.Status != twinhub.StatusDisabled {
		return nil, twinhub.ErrInvalid("status must be enabled or disabled, not %q", d.Status)
	}
	now := twinhub.Now()
	rec := &twinhub.Record{
		Device: &twinhub.Device{
			DeviceID:                  d.DeviceID,
			GenerationID:              twinhub.NewGenerationID(),
			ConnectionState:           twinhub.StateDisconnected,
			Status:                    d.Status,
			StatusReason:              d.StatusReason,
			StatusUpdatedTime:         now,
			Authentication:            d.Authentication,
			Capabilities:              d.Capabilities,
			CloudToDeviceMessageCount: 0,
		},
		IdentityVersion: 1,
		Twin:            twinhub.NewTwin(now),
	}
	rec.SetETags()
	return rec, nil
}

// GetDevice reads a device identity.
func (h *Hub) GetDevice(ctx context.Context, id string) (*twinhub.Device, error) {
	rec, err := h.get(ctx, twinhub.DeviceKey(id))
	if err != nil {
		return nil, err
	}
	return rec.DeviceCopy(), nil
}

// get returns the current record of k, after this node's pending write
// of k's connection state (connections.go), so that a device that has its
// CONNACK reads as connected here. The record is shared with the cache:
// the caller must not change it.
func (h *Hub) get(ctx context.Context, k twinhub.Key) (*twinhub.Record, error) {
	e, err := h.getEntry(ctx, k)
	if err != nil {
		return nil, err
	}
	return e.rec, nil
}

func (h *Hub) getEntry(ctx context.Context, k twinhub.Key) (*cachedRecord, error) {
	if err := h.states.settle(ctx, k); err != nil {
		return nil, err
	}
	return h.read(ctx, k)
}

// read returns the current record of k: the store says which revision is
// current, and the cached record serves if it is that one. The record is
// shared with the cache: the caller must not change it.
func (h *Hub) read(ctx context.Context, k twinhub.Key) (*cachedRecord, error) {
	e := h.cache.get(k)
	var known uint64
	if e != nil {
		known = e.rev
	}
	var rec *twinhub.Record
	var rev uint64
	var err error
	if rg, ok := h.store.(twinhub.RevisionGetter); ok {
		rec, rev, err = rg.GetUnlessRevision(ctx, k, known)
	} else {
		rec, rev, err = h.store.Get(ctx, k)
	}
	if errors.Is(err, twinhub.ErrNotFound) {
		h.cache.drop(k, 0)
		return nil, twinhub.ErrIdentityNotFound(k)
	} else if err != nil {
		return nil, err
	}
	if e != nil && rev == known {
		return e, nil
	}
	if rec == nil {
		return nil, fmt.Errorf("store returned no record for %s at revision %d", k, rev)
	}
	rec.SetETags()
	return h.cache.put(k, rec, rev), nil
}

// UpdateDevice changes a device's status, authentication and capabilities,
// if ifMatch matches its etag.
func (h *Hub) UpdateDevice(ctx context.Context, d twinhub.Device, ifMatch string) (*twinhub.Device, error) {
	disabled := false
	rec, err := h.modify(ctx, twinhub.DeviceKey(d.DeviceID), func(rec *twinhub.Record) error {
		// A fresh copy each attempt: an attempt on a stale record must
		// leave nothing (keys, status) to the next.
		d := d
		old := rec.Device
		if !etagMatches(ifMatch, old.ETag) {
			return twinhub.ErrPreconditionFailed("device")
		}
		if d.Status == "" {
			d.Status = old.Status
		}
		if d.Status != twinhub.StatusEnabled && d.Status != twinhub.StatusDisabled {
			return twinhub.ErrInvalid("status must be enabled or disabled, not %q", d.Status)
		}
		if err := twinhub.NormalizeAuth(&d.Authentication, &old.Authentication); err != nil {
			return err
		}
		if d.Status != old.Status {
			old.StatusUpdatedTime = twinhub.Now()
		}
		disabled = d.Status == twinhub.StatusDisabled && old.Status != twinhub.StatusDisabled
		old.Status, old.StatusReason = d.Status, d.StatusReason
		old.Authentication, old.Capabilities = d.Authentication, d.Capabilities
		rec.IdentityVersion++
		return nil
	})
	if err != nil {
		return nil, err
	}
	if disabled {
		// IoT Hub drops the connections of a device it disables.
		h.RevokeConnections(twinhub.DeviceKey(d.DeviceID))
	}
	return rec.rec.DeviceCopy(), nil
}

// DeleteDevice removes a device, its twin and its modules.
func (h *Hub) DeleteDevice(ctx context.Context, id, ifMatch string) error {
	if err := h.deleteRecord(ctx, twinhub.DeviceKey(id), ifMatch); err != nil {
		return err
	}
	// Closes the device's connections and its modules'.
	h.RevokeConnections(twinhub.DeviceKey(id))
	// A device created again under this id must not get the old one's
	// cloud-to-device messages.
	if q := h.c2d; q != nil {
		if _, err := q.Purge(ctx, id); err != nil {
			h.log.Warn("purging the deleted device's cloud-to-device queue", "device", id, "err", err)
		}
	}
	mods, err := h.modulesOf(ctx, id)
	if err != nil {
		return err
	}
	for _, m := range mods {
		err := h.store.Delete(ctx, twinhub.ModuleKey(id, m.ModuleID), 0)
		h.cache.drop(twinhub.ModuleKey(id, m.ModuleID), 0)
		if err != nil && !errors.Is(err, twinhub.ErrNotFound) {
			return err
		}
	}
	return nil
}

// ListDevices returns up to max devices (all when max <= 0) in id order.
func (h *Hub) ListDevices(ctx context.Context, max int) ([]*twinhub.Device, error) {
	if err := h.catchUp(ctx); err != nil {
		return nil, err
	}
	return h.index.ListDevices(max), nil
}

// Statistics counts devices by status and connection state.
func (h *Hub) Statistics(ctx context.Context) (twinhub.DeviceStatistics, twinhub.ServiceStatistics, error) {
	if err := h.catchUp(ctx); err != nil {
		return twinhub.DeviceStatistics{}, twinhub.ServiceStatistics{}, err
	}
	ds, ss := h.index.Statistics()
	return ds, ss, nil
}

// --- modules ---

// CreateModule registers a module on an existing device.
func (h *Hub) CreateModule(ctx context.Context, m twinhub.Module) (*twinhub.Module, error) {
	if err := twinhub.ValidateID("device", m.DeviceID); err != nil {
		return nil, err
	}
	if err := twinhub.ValidateID("module", m.ModuleID); err != nil {
		return nil, err
	}
	if _, err := h.get(ctx, twinhub.DeviceKey(m.DeviceID)); err != nil {
		return nil, err
	}
	if err := twinhub.NormalizeAuth(&m.Authentication, nil); err != nil {
		return nil, err
	}
	now := twinhub.Now()
	rec := &twinhub.Record{
		Module: &twinhub.Module{
			ModuleID:        m.ModuleID,
			DeviceID:        m.DeviceID,
			ManagedBy:       m.ManagedBy,
			GenerationID:    twinhub.NewGenerationID(),
			ConnectionState: twinhub.StateDisconnected,
			Authentication:  m.Authentication,
		},
		IdentityVersion: 1,
		Twin:            twinhub.NewTwin(now),
	}
	rec.SetETags()
	rev, err := h.store.Create(ctx, twinhub.ModuleKey(m.DeviceID, m.ModuleID), rec)
	if errors.Is(err, twinhub.ErrExists) {
		return nil, twinhub.Errorf(http.StatusConflict, "ModuleAlreadyExistsOnDevice", "A module with ID '%s' is already registered on device '%s'", m.ModuleID, m.DeviceID)
	} else if err != nil {
		return nil, err
	}
	h.cache.put(twinhub.ModuleKey(m.DeviceID, m.ModuleID), rec, rev)
	return rec.ModuleCopy(), nil
}

// GetModule reads a module identity.
func (h *Hub) GetModule(ctx context.Context, id, mid string) (*twinhub.Module, error) {
	rec, err := h.get(ctx, twinhub.ModuleKey(id, mid))
	if err != nil {
		return nil, err
	}
	return rec.ModuleCopy(), nil
}

// UpdateModule changes a module's authentication, if ifMatch matches.
func (h *Hub) UpdateModule(ctx context.Context, m twinhub.Module, ifMatch string) (*twinhub.Module, error) {
	rec, err := h.modify(ctx, twinhub.ModuleKey(m.DeviceID, m.ModuleID), func(rec *twinhub.Record) error {
		m := m // as in UpdateDevice
		old := rec.Module
		if !etagMatches(ifMatch, old.ETag) {
			return twinhub.ErrPreconditionFailed("module")
		}
		if err := twinhub.NormalizeAuth(&m.Authentication, &old.Authentication); err != nil {
			return err
		}
		old.Authentication = m.Authentication
		if m.ManagedBy != "" {
			old.ManagedBy = m.ManagedBy
		}
		rec.IdentityVersion++
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rec.rec.ModuleCopy(), nil
}

// DeleteModule removes a module and its twin.
func (h *Hub) DeleteModule(ctx context.Context, id, mid, ifMatch string) error {
	if err := h.deleteRecord(ctx, twinhub.ModuleKey(id, mid), ifMatch); err != nil {
		return err
	}
	h.RevokeConnections(twinhub.ModuleKey(id, mid))
	return nil
}

// deleteRecord removes the record of k if ifMatch matches its identity's
// etag, retrying when another writer changes it in between.
func (h *Hub) deleteRecord(ctx context.Context, k twinhub.Key, ifMatch string) error {
	for {
		e, err := h.read(ctx, k)
		if err != nil {
			return err
		}
		if !etagMatches(ifMatch, twinhub.IdentityETag(e.rec.IdentityVersion)) {
			if k.ModuleID != "" {
				return twinhub.ErrPreconditionFailed("module")
			}
			return twinhub.ErrPreconditionFailed("device")
		}
		err = h.store.Delete(ctx, k, e.rev)
		h.cache.drop(k, 0)
		if !errors.Is(err, twinhub.ErrConflict) {
			return err
		}
	}
}

// ListModules returns the modules of a device (404 if the device is unknown).
func (h *Hub) ListModules(ctx context.Context, id string) ([]*twinhub.Module, error) {
	if _, err := h.get(ctx, twinhub.DeviceKey(id)); err != nil {
		return nil, err
	}
	return h.modulesOf(ctx, id)
}

// modulesOf returns the modules the index has of device id, once it has
// caught up with the store; the device itself may be gone.
func (h *Hub) modulesOf(ctx context.Context, id string) ([]*twinhub.Module, error) {
	if err := h.catchUp(ctx); err != nil {
		return nil, err
	}
	return h.index.ListModules(id), nil
}

// --- twins ---

// TwinJSON is the twin of a device or module as GET /twins/{id} shows
// it (Record.TwinDoc encoded as json.Marshal encodes it), rendered once
// per revision of the twin. The slice is shared: do not change it.
func (h *Hub) TwinJSON(ctx context.Context, k twinhub.Key) ([]byte, error) {
	e, err := h.getEntry(ctx, k)
	if err != nil {
		return nil, err
	}
	return e.twin()
}

// UpdateTwin makes a back end's change to a twin (PATCH, PUT, bulk
// import, jobs) if ifMatch matches the twin's etag, and returns the new
// twin as TwinJSON does.
func (h *Hub) UpdateTwin(ctx context.Context, k twinhub.Key, u twinhub.TwinUpdate, ifMatch string) ([]byte, error) {
	e, err := h.writeTwin(ctx, k, u, ifMatch)
	if err != nil {
		return nil, err
	}
	return e.twin()
}

// UpdateReported merges a device's reported-properties patch and returns
// the new reported $version.
func (h *Hub) UpdateReported(ctx context.Context, k twinhub.Key, patch map[string]any) (int64, error) {
	e, err := h.writeTwin(ctx, k, twinhub.TwinUpdate{Reported: patch}, "")
	if err != nil {
		return 0, err
	}
	return e.rec.Twin.Reported.Version, nil
}

// writeTwin is the one function that changes a twin, whoever asks: it
// checks ifMatch against the twin's etag, applies u (Twin.Apply: the
// limits, versions and metadata), stores the record with compare-and-set
// (modify), and then tells the identity's connections, on every node,
// about a desired change.
func (h *Hub) writeTwin(ctx context.Context, k twinhub.Key, u twinhub.TwinUpdate, ifMatch string) (*cachedRecord, error) {
	e, err := h.modify(ctx, k, func(rec *twinhub.Record) error {
		if !etagMatches(ifMatch, twinhub.TwinETag(rec.Twin.Version)) {
			return twinhub.ErrPreconditionFailed("twin")
		}
		return rec.Twin.Apply(u, twinhub.Now())
	})
	if err != nil {
		return nil, err
	}
	if u.Desired != nil {
		patch := u.Desired
		if u.Replace {
			patch = e.rec.Twin.Desired.Values
		}
		h.publishDesired(k, e.rec.Twin.Desired.Version, patch)
	}
	return e, nil
}

// DeviceTwinJSON is the twin as a device reads it over MQTT: desired and
// reported with their versions, without tags or metadata, encoded without
// HTML escaping (MarshalNoHTML) and rendered once per revision of the
// twin. The slice is shared: do not change it.
func (h *Hub) DeviceTwinJSON(ctx context.Context, k twinhub.Key) ([]byte, error) {
	e, err := h.read(ctx, k)
	if err != nil {
		return nil, err
	}
	return e.deviceTwin()
}

// writeConnectionState stores that an identity connected or disconnected
// (connections.go orders these writes).
func (h *Hub) writeConnectionState(ctx context.Context, k twinhub.Key, connected bool) error {
	state := twinhub.StateDisconnected
	if connected {
		state = twinhub.StateConnected
	}
	_, err := h.modify(ctx, k, func(rec *twinhub.Record) error {
		now := twinhub.Now()
		if rec.Module != nil {
			rec.Module.ConnectionState, rec.Module.ConnectionStateUpdatedTime, rec.Module.LastActivityTime = state, now, now
		} else {
			rec.Device.ConnectionState, rec.Device.ConnectionStateUpdatedTime, rec.Device.LastActivityTime = state, now, now
		}
		return nil
	})
	return err
}

// --- desired-property notifications ---

const desiredSubject = "twinhub.desired."

// DesiredPatch is a desired-property change as devices receive it.
type DesiredPatch struct {
	Version int64          `json:"version"`
	Patch   map[string]any `json:"patch"`
}

type desiredSub struct{ fn func(DesiredPatch) }

// publishDesired sends a change to every node, which hands it to the
// identity's connections there. A failure is logged, not returned: the
// twin is written, and a device that misses an event reads the twin again
// when it reconnects, as with IoT Hub.
func (h *Hub) publishDesired(k twinhub.Key, version int64, patch map[string]any) {
	if h.bus == nil {
		return
	}
	data, err := json.Marshal(DesiredPatch{Version: version, Patch: patch})
	if err == nil {
		err = h.bus.Publish(desiredSubject+twinhub.EncodeKey(k), data)
	}
	if err != nil {
		h.log.Error("publishing desired-property change", "identity", k.String(), "err", err)
	}
}

func (h *Hub) deliverDesired(subject string, data []byte) {
	k, err := twinhub.DecodeKey(strings.TrimPrefix(subject, desiredSubject))
	if err != nil {
		return
	}
	var p DesiredPatch
	if err := json.Unmarshal(data, &p); err != nil {
		h.log.Error("bad desired-property event", "subject", subject, "err", err)
		return
	}
	h.subsMu.Lock()
	subs := make([]*desiredSub, 0, len(h.subs[k]))
	for s := range h.subs[k] {
		subs = append(subs, s)
	}
	h.subsMu.Unlock()
	for _, s := range subs {
		s.fn(p)
	}
}

// SubscribeDesired calls fn with every desired-property change of k as it
// arrives, until cancel is called. fn must not block. Changes made by
// different requests or nodes may arrive out of version order (and, the
// bus delivering at most once, one may be missing): the subscriber puts
// them back in order (mqtt's desiredFeed).
func (h *Hub) SubscribeDesired(k twinhub.Key, fn func(DesiredPatch)) (cancel func()) {
	s := &desiredSub{fn: fn}
	h.subsMu.Lock()
	if h.subs[k] == nil {
		h.subs[k] = map[*desiredSub]struct{}{}
	}
	h.subs[k][s] = struct{}{}
	h.subsMu.Unlock()
	return func() {
		h.subsMu.Lock()
		delete(h.subs[k], s)
		if len(h.subs[k]) == 0 {
			delete(h.subs, k)
		}
		h.subsMu.Unlock()
	}
}
