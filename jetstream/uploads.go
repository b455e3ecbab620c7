package jetstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinhub/twinhub"
)

// UploadBucket keeps each device's file uploads under way (key: the
// device id, twinhub.EncodeID): a short hash of each upload's correlation
// id and when its SAS token expires.
const UploadBucket = "twinhub-file-uploads"

// Uploads is twinhub.ActiveUploads on a KV bucket, changed by
// compare-and-set so that every node counts the same uploads.
type Uploads struct {
	kv jetstream.KeyValue
}

var _ twinhub.ActiveUploads = (*Uploads)(nil)

// OpenUploads creates or opens the bucket.
func OpenUploads(ctx context.Context, nc *nats.Conn, replicas int) (*Uploads, error) {
	kv, err := openBucket(ctx, nc, jetstream.KeyValueConfig{Bucket: UploadBucket, Description: "twinhub file uploads under way, by device"}, replicas)
	if err != nil {
		return nil, err
	}
	return &Uploads{kv: kv}, nil
}

// activeUpload is one upload under way.
type activeUpload struct {
	ID      string `json:"id"` // the first 8 bytes of SHA-256 of its correlation id, hex
	Expires int64  `json:"exp"`
}

func uploadID(correlation string) string {
	sum := sha256.Sum256([]byte(correlation))
	return hex.EncodeToString(sum[:8])
}

func (u *Uploads) Begin(ctx context.Context, device, id string, expiry time.Time, max int) error {
	return u.change(ctx, device, func(active []activeUpload) ([]activeUpload, error) {
		if len(active) >= max {
			return nil, twinhub.ErrTooManyUploads
		}
		return append(active, activeUpload{ID: uploadID(id), Expires: expiry.Unix()}), nil
	})
}

func (u *Uploads) End(ctx context.Context, device, id string) error {
	h := uploadID(id)
	return u.change(ctx, device, func(active []activeUpload) ([]activeUpload, error) {
		kept := active[:0]
		for _, a := range active {
			if a.ID != h {
				kept = append(kept, a)
			}
		}
		return kept, nil
	})
}

// change applies fn to a device's uploads under way, the expired ones
// dropped first, by compare-and-set (again from a fresh read on a
// conflict); an empty list deletes the key.
func (u *Uploads) change(ctx context.Context, device string, fn func([]activeUpload) ([]activeUpload, error)) error {
	key := twinhub.EncodeID(device)
	for {
		var active []activeUpload
		var rev uint64
		e, err := u.kv.Get(ctx, key)
		switch {
		case keyMissing(err):
		case err != nil:
			return err
		default:
			rev = e.Revision()
			if err := json.Unmarshal(e.Value(), &active); err != nil {
				active = nil // unreadable: counted as none
			}
		}
		now := time.Now().Unix()
		live := active[:0]
		for _, a := range active {
			if a.Expires > now {
				live = append(live, a)
			}
		}
		next, err := fn(live)
		if err != nil {
			return err
		}
		switch {
		case len(next) == 0 && rev == 0:
			return nil
		case len(next) == 0:
			err = u.kv.Delete(ctx, key, jetstream.LastRevision(rev))
		case rev == 0:
			b, _ := json.Marshal(next)
			_, err = u.kv.Create(ctx, key, b)
		default:
			b, _ := json.Marshal(next)
			_, err = u.kv.Update(ctx, key, b, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		return err
	}
}
