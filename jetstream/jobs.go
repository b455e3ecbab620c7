package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinhub/twinhub"
)

// JobBucket keeps jobs (key j.<job>) and their device records (key
// d.<job>.<device>), ids written with twinhub.EncodeID. One bucket keeps a
// job and its records together, for every node of a hub to read.
const JobBucket = "twinhub-jobs"

// Jobs is the JetStream store of jobs.
type Jobs struct {
	kv jetstream.KeyValue
	// stream is the bucket's stream, whose purge by subject deletes a
	// job's records at once and leaves no delete markers.
	stream jetstream.Stream
}

var _ twinhub.JobStore = (*Jobs)(nil)

// OpenJobs creates or opens the bucket.
func OpenJobs(ctx context.Context, nc *nats.Conn, replicas int) (*Jobs, error) {
	kv, err := openBucket(ctx, nc, jetstream.KeyValueConfig{Bucket: JobBucket, Description: "twinhub jobs (scheduled twin updates and direct methods) and their device records"}, replicas)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	stream, err := js.Stream(ctx, "KV_"+JobBucket)
	if err != nil {
		return nil, fmt.Errorf("opening the stream of bucket %s: %w", JobBucket, err)
	}
	return &Jobs{kv: kv, stream: stream}, nil
}

// purge deletes every value of the keys that filter matches (a key or a
// pattern with *), their history and markers included.
func (s *Jobs) purge(ctx context.Context, filter string) error {
	return s.stream.Purge(ctx, jetstream.WithPurgeSubject("$KV."+JobBucket+"."+filter))
}

func jobKey(id string) string { return "j." + twinhub.EncodeID(id) }

func deviceJobKey(jobID, deviceID string) string {
	return "d." + twinhub.EncodeID(jobID) + "." + twinhub.EncodeID(deviceID)
}

func (s *Jobs) CreateJob(ctx context.Context, j *twinhub.Job) error {
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	_, err = s.kv.Create(ctx, jobKey(j.JobID), b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return twinhub.ErrExists
	}
	return err
}

func (s *Jobs) Job(ctx context.Context, id string) (*twinhub.Job, uint64, error) {
	e, err := s.kv.Get(ctx, jobKey(id))
	if keyMissing(err) {
		return nil, 0, twinhub.ErrNotFound
	} else if err != nil {
		return nil, 0, err
	}
	var j twinhub.Job
	if err := json.Unmarshal(e.Value(), &j); err != nil {
		return nil, 0, fmt.Errorf("job %s: %w", id, err)
	}
	return &j, e.Revision(), nil
}

func (s *Jobs) UpdateJob(ctx context.Context, j *twinhub.Job, rev uint64) (uint64, error) {
	b, err := json.Marshal(j)
	if err != nil {
		return 0, err
	}
	n, err := s.kv.Update(ctx, jobKey(j.JobID), b, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, twinhub.ErrConflict
	}
	return n, err
}

func (s *Jobs) Jobs(ctx context.Context) ([]*twinhub.Job, error) {
	var jobs []*twinhub.Job
	err := lastValues(ctx, s.kv, "j.*", func(_ string, data []byte) error {
		var j twinhub.Job
		if err := json.Unmarshal(data, &j); err != nil {
			return err
		}
		jobs = append(jobs, &j)
		return nil
	})
	sort.SliceStable(jobs, func(a, b int) bool {
		if !jobs[a].CreatedTime.Equal(jobs[b].CreatedTime.Time) {
			return jobs[a].CreatedTime.Before(jobs[b].CreatedTime.Time)
		}
		return jobs[a].JobID < jobs[b].JobID
	})
	return jobs, err
}

func (s *Jobs) WatchJobs(ctx context.Context, fn func(j *twinhub.Job, initial bool)) error {
	w, err := s.kv.Watch(ctx, "j.*", jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer w.Stop()
	initial := true
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("the watch of jobs ended")
			}
			if e == nil {
				initial = false // every job as it was has come
				continue
			}
			var j twinhub.Job
			if err := json.Unmarshal(e.Value(), &j); err != nil {
				return fmt.Errorf("job %s: %w", e.Key(), err)
			}
			fn(&j, initial)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *Jobs) PutDeviceJob(ctx context.Context, d *twinhub.DeviceJob) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	_, err = s.kv.Put(ctx, deviceJobKey(d.JobID, d.DeviceID), b)
	return err
}

func (s *Jobs) DeviceJob(ctx context.Context, jobID, deviceID string) (*twinhub.DeviceJob, error) {
	e, err := s.kv.Get(ctx, deviceJobKey(jobID, deviceID))
	if keyMissing(err) {
		return nil, twinhub.ErrNotFound
	} else if err != nil {
		return nil, err
	}
	var d twinhub.DeviceJob
	return &d, json.Unmarshal(e.Value(), &d)
}

func (s *Jobs) DeviceJobs(ctx context.Context, jobID string, fn func(*twinhub.DeviceJob) bool) error {
	stop := errors.New("stop")
	filter := "d.>"
	if jobID != "" {
		filter = "d." + twinhub.EncodeID(jobID) + ".*"
	}
	err := lastValues(ctx, s.kv, filter, func(_ string, data []byte) error {
		var d twinhub.DeviceJob
		if err := json.Unmarshal(data, &d); err != nil {
			return err
		}
		if !fn(&d) {
			return stop
		}
		return nil
	})
	if errors.Is(err, stop) {
		return nil
	}
	return err
}

func (s *Jobs) DeleteJob(ctx context.Context, id string) error {
	if err := s.purge(ctx, "d."+twinhub.EncodeID(id)+".*"); err != nil {
		return err // the job stays, to be deleted again
	}
	return s.purge(ctx, jobKey(id))
}
