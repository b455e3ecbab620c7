package twinhub

import "context"

// Store keeps identity records with optimistic concurrency: every record
// has a revision, and Update and Delete succeed only if the revision they
// name is still current. The jetstream package implements it on a NATS KV
// bucket, whose revisions these are.
type Store interface {
	// Get returns the record and its revision, or ErrNotFound.
	Get(ctx context.Context, k Key) (*Record, uint64, error)
	// Create stores a new record, or returns ErrExists.
	Create(ctx context.Context, k Key, r *Record) (uint64, error)
	// Update replaces the record if rev is current, or returns ErrConflict.
	Update(ctx context.Context, k Key, r *Record, rev uint64) (uint64, error)
	// Delete removes the record if rev is current (0: whatever it is).
	Delete(ctx context.Context, k Key, rev uint64) error
	// Watch calls fn for every record as it stands, then for every change
	// (r is nil for a deletion) until ctx ends. Calls are sequential and in
	// revision order; intermediate revisions of one key may be skipped.
	// ready is called once the existing records have all been seen.
	Watch(ctx context.Context, fn func(k Key, r *Record, rev uint64), ready func()) error
	// LastRevision is the revision of the newest change in the store. A
	// watcher that has seen it has seen every write acknowledged before.
	LastRevision(ctx context.Context) (uint64, error)
}

// Bus carries the hub's fire-and-forget events between nodes: desired
// property notifications and, later, method calls. Delivery is at most
// once; subscribers of one publisher see its events in order.
type Bus interface {
	Publish(subject string, data []byte) error
	// Subscribe calls fn for every event on subject (which may end in the
	// wildcard ">") until the returned cancel is called.
	Subscribe(subject string, fn func(subject string, data []byte)) (cancel func(), err error)
}

// ReconnectingBus is a Bus that says how often it reconnected to the
// backbone. Events sent while it was away are lost, so the hub has the
// readers that wait for notices look again after each reconnection.
type ReconnectingBus interface {
	Bus
	Reconnects() uint64
}

// RevisionGetter is a Store that can tell a caller who already holds a
// record at some revision that it has not changed, without decoding it
// again. The hub's record cache (hub/cache.go) uses it for every read.
type RevisionGetter interface {
	// GetUnlessRevision is Get, except that when k's revision is known
	// (non-zero) it returns a nil record with that revision.
	GetUnlessRevision(ctx context.Context, k Key, known uint64) (*Record, uint64, error)
}

// SessionStore keeps the part of a device's MQTT session (CleanSession=0)
// that must outlive its connection, its subscriptions, by identity, in a
// form the MQTT front end chooses. In JetStream, a device that reconnects
// after a restart, or through another node of a cluster, resumes its
// session there: the Node SDK relies on that and does not subscribe again.
// Sessions not saved for the store's expiry are forgotten.
type SessionStore interface {
	// LoadSession returns the saved session of k; found is false if
	// there is none.
	LoadSession(ctx context.Context, k Key) (data []byte, found bool, err error)
	SaveSession(ctx context.Context, k Key, data []byte) error
	DeleteSession(ctx context.Context, k Key) error
}
