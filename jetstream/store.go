package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/internal/recordjson"
)

// RegistryBucket is the KV bucket that holds one record per device and
// per module, keyed by twinhub.EncodeKey.
const RegistryBucket = "twinhub-registry"

// Store is twinhub.Store on a JetStream KV bucket. The KV revision of a
// key is the record's revision, so compare-and-set is a publish to the
// key's subject that expects that revision as the subject's last (put).
type Store struct {
	kv     jetstream.KeyValue
	stream jetstream.Stream
	log    *slog.Logger

	// Create and Update publish to the bucket's subjects themselves,
	// waiting on ack (publish.go), rather than through kv.
	nc  *nats.Conn
	ack *acker

	// written, when set (ReportWrites), is told of every record Create
	// and Update store.
	written func(k twinhub.Key, data []byte, rev uint64)
}

// ReportWrites has fn called with the JSON of every record that Create or
// Update stores, once JetStream has acknowledged it and before they
// return: the hub of a node that is the store's only writer puts its
// writes into its query index from it (index.ApplyWritten) without
// decoding them back from the watch. data is only valid during the call.
// Set it before the first write.
func (s *Store) ReportWrites(fn func(k twinhub.Key, data []byte, rev uint64)) {
	s.written = fn
}

// registryPutPrefix is the subject prefix of the registry bucket's keys
// (a JetStream KV bucket's "$KV.<bucket>.").
const registryPutPrefix = "$KV." + RegistryBucket + "."

// conflictCodes are JetStream's error codes for a publish whose expected
// last subject sequence is not the subject's: 10071, or 10164 from a
// replicated stream while another write of the subject is in flight.
var conflictCodes = [...]jetstream.ErrorCode{jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant}

var _ twinhub.Store = (*Store)(nil)

// StoreOptions configure the bucket when it is first created.
type StoreOptions struct {
	// Replicas is the number of copies a NATS cluster keeps (1 embedded).
	Replicas int
	Log      *slog.Logger
}

// OpenStore creates the registry bucket if needed and opens it.
func OpenStore(ctx context.Context, nc *nats.Conn, o StoreOptions) (*Store, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if o.Replicas < 1 {
		o.Replicas = 1
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	kv, err := openBucket(ctx, nc, jetstream.KeyValueConfig{
		Bucket:      RegistryBucket,
		Description: "twinhub device and module identities with their twins",
		History:     1,
	}, o.Replicas)
	if err != nil {
		return nil, err
	}
	stream, err := js.Stream(ctx, "KV_"+RegistryBucket)
	if err != nil {
		return nil, fmt.Errorf("opening the stream of bucket %s: %w", RegistryBucket, err)
	}
	ack, err := newAcker(nc)
	if err != nil {
		return nil, err
	}
	return &Store{kv: kv, stream: stream, log: o.Log, nc: nc, ack: ack}, nil
}

var _ twinhub.RevisionGetter = (*Store)(nil)

func (s *Store) Get(ctx context.Context, k twinhub.Key) (*twinhub.Record, uint64, error) {
	return s.GetUnlessRevision(ctx, k, 0)
}

// GetUnlessRevision reads k and decodes it unless its revision is known.
func (s *Store) GetUnlessRevision(ctx context.Context, k twinhub.Key, known uint64) (*twinhub.Record, uint64, error) {
	e, err := s.kv.Get(ctx, twinhub.EncodeKey(k))
	if keyMissing(err) {
		return nil, 0, twinhub.ErrNotFound
	} else if err != nil {
		return nil, 0, storeError(err)
	}
	if known != 0 && e.Revision() == known {
		return nil, known, nil
	}
	rec, err := decode(e.Value())
	if err != nil {
		return nil, 0, fmt.Errorf("record %s: %w", k, err)
	}
	return rec, e.Revision(), nil
}

func (s *Store) Create(ctx context.Context, k twinhub.Key, r *twinhub.Record) (uint64, error) {
	buf, err := encode(r)
	if err != nil {
		return 0, err
	}
	subject := registryPutPrefix + twinhub.EncodeKey(k)
	rev, err := s.put(ctx, subject, buf.stored, 0)
	if errors.Is(err, twinhub.ErrConflict) {
		// The key has a last message: a record, or the marker of a
		// deleted one, which a new record replaces (as KV's Create does).
		var last *jetstream.RawStreamMsg
		if last, err = s.stream.GetLastMsgForSubject(ctx, subject); err == nil {
			if op := last.Header.Get(kvOperationHeader); op == "DEL" || op == "PURGE" {
				rev, err = s.put(ctx, subject, buf.stored, last.Sequence)
			} else {
				err = twinhub.ErrExists
			}
		}
		if errors.Is(err, twinhub.ErrConflict) || errors.Is(err, jetstream.ErrMsgNotFound) {
			// Created meanwhile, or being created: a replicated stream
			// refuses a write while another of the key is in flight.
			err = twinhub.ErrExists
		}
	}
	if err == nil && s.written != nil {
		s.written(k, buf.json, rev)
	}
	buf.release()
	if err != nil {
		return 0, storeError(err)
	}
	return rev, nil
}

// kvOperationHeader marks a KV bucket's delete and purge markers.
const kvOperationHeader = "KV-Operation"

// put writes a record's stored form at subject if the subject's last
// message is at revision rev (0: the subject has none): ErrConflict when
// it is not.
func (s *Store) put(ctx context.Context, subject string, stored []byte, rev uint64) (uint64, error) {
	m := &nats.Msg{
		Subject: subject,
		Header:  nats.Header{jetstream.ExpectedLastSubjSeqHeader: {strconv.FormatUint(rev, 10)}},
		Data:    stored,
	}
	newRev, err := s.ack.request(ctx, s.nc, m)
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && slices.Contains(conflictCodes[:], apiErr.ErrorCode) {
		return 0, twinhub.ErrConflict
	}
	return newRev, err
}

func (s *Store) Update(ctx context.Context, k twinhub.Key, r *twinhub.Record, rev uint64) (uint64, error) {
	buf, err := encode(r)
	if err != nil {
		return 0, err
	}
	newRev, err := s.put(ctx, registryPutPrefix+twinhub.EncodeKey(k), buf.stored, rev)
	if err == nil && s.written != nil {
		s.written(k, buf.json, newRev)
	}
	buf.release()
	if errors.Is(err, twinhub.ErrConflict) {
		return 0, err
	}
	return newRev, storeError(err)
}

func (s *Store) Delete(ctx context.Context, k twinhub.Key, rev uint64) error {
	var opts []jetstream.KVDeleteOpt
	if rev != 0 {
		opts = append(opts, jetstream.LastRevision(rev))
	}
	err := s.kv.Delete(ctx, twinhub.EncodeKey(k), opts...)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return twinhub.ErrConflict
	}
	return storeError(err)
}

func (s *Store) Watch(ctx context.Context, fn func(twinhub.Key, *twinhub.Record, uint64), ready func()) error {
	return s.WatchRaw(ctx, 0, func(k twinhub.Key, stored []byte, rev uint64) {
		if stored == nil {
			fn(k, nil, rev)
			return
		}
		rec, err := decode(stored)
		if err != nil {
			s.log.Error("skipping an unreadable record", "identity", k.String(), "err", err)
			return
		}
		fn(k, rec, rev)
	}, ready)
}

// WatchRaw is Watch with each record as stored (recordformat.go; nil for
// a deletion), for the reader to unpack with Unpack when it needs its
// JSON: the hub's index reads it without building a Record, which makes
// a node start several times faster, unpacks it on every processor at
// start-up, and not at all when it holds the change already (its own
// writes, ReportWrites). With from > 0 it begins at that revision: the
// changes since an index snapshot, each record changed since as it is now
// (deletions as markers), the bucket keeping one revision a key.
func (s *Store) WatchRaw(ctx context.Context, from uint64, fn func(k twinhub.Key, stored []byte, rev uint64), ready func()) error {
	var opts []jetstream.WatchOpt
	if from > 0 {
		opts = append(opts, jetstream.ResumeFromRevision(from))
	}
	w, err := s.kv.WatchAll(ctx, opts...)
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("KV watch closed")
			}
			if e == nil {
				ready()
				continue
			}
			k, err := twinhub.DecodeKey(e.Key())
			if err != nil {
				s.log.Error("skipping a KV key that is not an identity", "key", e.Key(), "err", err)
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				fn(k, nil, e.Revision())
				continue
			}
			stored := e.Value()
			if stored == nil {
				stored = []byte{} // an empty record, not a deletion
			}
			fn(k, stored, e.Revision())
		}
	}
}

// Unpack is the JSON of a record as WatchRaw hands it over: an error for
// a record in a form this version does not read (written by a newer one).
func (s *Store) Unpack(stored []byte) ([]byte, error) { return unpackRecord(stored) }

// Epoch names this life of the registry bucket: its stream's creation
// time. Revisions are the stream's sequence numbers, which start again if
// the bucket is ever made anew, so an index snapshot is only good for the
// epoch it was written in. last is the newest revision, as LastRevision.
func (s *Store) Epoch(ctx context.Context) (epoch string, last uint64, err error) {
	info, err := s.stream.Info(ctx)
	if err != nil {
		return "", 0, storeError(err)
	}
	return info.Config.Name + " " + info.Created.UTC().Format(time.RFC3339Nano), info.State.LastSeq, nil
}

func (s *Store) LastRevision(ctx context.Context) (uint64, error) {
	info, err := s.stream.Info(ctx)
	if err != nil {
		return 0, storeError(err)
	}
	return info.State.LastSeq, nil
}

// storeError makes the errors of a JetStream that is busy or has no
// quorum the hub's 503 (twinhub.StoreUnavailable); others pass as they
// are.
func storeError(err error) error {
	if err != nil && unavailable(err) {
		return twinhub.StoreUnavailable(err)
	}
	return err
}

// encode makes the stored form of a record (recordformat.go) in a
// recycled buffer, which the caller releases once the KV has it.
func encode(r *twinhub.Record) (*recordBuf, error) {
	b := recordBufs.Get().(*recordBuf)
	var err error
	if b.json, err = recordjson.AppendRecord(b.json[:0], r); err != nil {
		b.release()
		return nil, err
	}
	b.pack()
	return b, nil
}

// recordBuf holds a write's record: its JSON, then its stored form. Each
// was a new allocation a write (about a tenth of what the hub allocated
// while random twins changed), garbage once the KV had the write:
// nats.go copies a message into its connection's buffer before a publish
// returns.
type recordBuf struct {
	json, stored []byte
	// packed tells pack's caller that a packer has filled stored.
	packed chan struct{}
}

var recordBufs = sync.Pool{New: func() any { return &recordBuf{packed: make(chan struct{}, 1)} }}

// pack fills b.stored from b.json on one of the packers.
//
// Why not on the caller's goroutine: S2's dictionary encoder zeroes a
// 64 KB hash table on its caller's stack at every call. The hub's writes
// come from many goroutines (a connection's, a connection-state
// writer's), each with a stack to grow to the table's size and caches
// cold for it, and in the hub's profiles packing cost 5 µs a record
// under reported patches and 17 µs under new connections, against 1.5 µs
// in a loop (BenchmarkRecordFormat). A packer per core keeps the table
// in its cache; the hand-off costs less than the misses it saves
// (BenchmarkPackRecordConcurrent).
func (b *recordBuf) pack() {
	packersOnce.Do(startPackers)
	packJobs <- b
	<-b.packed
}

var (
	packersOnce sync.Once
	packJobs    chan *recordBuf
)

// startPackers starts a packer a core. They live as long as the process,
// like the buffers of a sync.Pool: an idle packer is a parked goroutine.
func startPackers() {
	n := runtime.GOMAXPROCS(0)
	packJobs = make(chan *recordBuf, 4*n)
	for range n {
		go func() {
			for b := range packJobs {
				b.stored = packRecord(b.stored[:0], b.json)
				b.packed <- struct{}{}
			}
		}()
	}
}

// release hands b back for another write, unless a large record made it
// too big to keep.
func (b *recordBuf) release() {
	const keep = 64 << 10
	if cap(b.json) <= keep && cap(b.stored) <= keep {
		recordBufs.Put(b)
	}
}

// decode reads a stored record (recordformat.go) with the hub's own JSON
// decoder, which agrees with encoding/json (FuzzDecodeRecord) and is
// about three times faster.
func decode(stored []byte) (*twinhub.Record, error) {
	data, err := unpackRecord(stored)
	if err != nil {
		return nil, err
	}
	r, err := recordjson.Decode(data)
	if err != nil {
		return nil, err
	}
	if (r.Device == nil) == (r.Module == nil) {
		return nil, errors.New("record holds neither or both of a device and a module")
	}
	return r, nil
}
