package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinhub/twinhub"
)

// Import and export jobs live in the jobs bucket too: key x.<job> a job,
// key x-active the id of the one active job (a hub runs one at a time; the
// key is created, not put, so that two nodes cannot both start one).

var _ twinhub.ImportExportJobStore = (*Jobs)(nil)

const activeImportExportKey = "x-active"

func importExportKey(id string) string { return "x." + twinhub.EncodeID(id) }

// storedImportExportJob is a job with what the store keeps beside it: its
// creation time (for the order of the list) and its runner's lease.
type storedImportExportJob struct {
	Job     *twinhub.ImportExportJob `json:"job"`
	Created twinhub.Time             `json:"created"`
	Lease   twinhub.Time             `json:"lease"`
}

func decodeImportExportJob(data []byte) (*storedImportExportJob, error) {
	var s storedImportExportJob
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	if s.Job == nil {
		return nil, errors.New("a stored import or export job without its job")
	}
	s.Job.Lease = s.Lease
	return &s, nil
}

func (s *Jobs) CreateImportExportJob(ctx context.Context, j *twinhub.ImportExportJob) error {
	// Take the active key: create it, or take it over from a job that is
	// done (a node that stopped between the two writes of the end).
	if _, err := s.kv.Create(ctx, activeImportExportKey, []byte(j.JobID)); errors.Is(err, jetstream.ErrKeyExists) {
		e, err := s.kv.Get(ctx, activeImportExportKey)
		if err != nil {
			return err
		}
		active := string(e.Value())
		if a, _, err := s.ImportExportJob(ctx, active); err == nil && !a.Done() {
			return twinhub.ErrImportExportBusy(active)
		} else if err != nil && !errors.Is(err, twinhub.ErrNotFound) {
			return err
		}
		if _, err := s.kv.Update(ctx, activeImportExportKey, []byte(j.JobID), e.Revision()); errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return twinhub.ErrImportExportBusy("(another, just created)")
		} else if err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	b, err := json.Marshal(storedImportExportJob{Job: j, Created: twinhub.Now(), Lease: j.Lease})
	if err != nil {
		return err
	}
	if _, err = s.kv.Create(ctx, importExportKey(j.JobID), b); errors.Is(err, jetstream.ErrKeyExists) {
		return twinhub.ErrExists
	}
	return err
}

func (s *Jobs) importExportJob(ctx context.Context, id string) (*storedImportExportJob, uint64, error) {
	e, err := s.kv.Get(ctx, importExportKey(id))
	if keyMissing(err) {
		return nil, 0, twinhub.ErrNotFound
	} else if err != nil {
		return nil, 0, err
	}
	st, err := decodeImportExportJob(e.Value())
	if err != nil {
		return nil, 0, fmt.Errorf("import/export job %s: %w", id, err)
	}
	return st, e.Revision(), nil
}

func (s *Jobs) ImportExportJob(ctx context.Context, id string) (*twinhub.ImportExportJob, uint64, error) {
	st, rev, err := s.importExportJob(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	return st.Job, rev, nil
}

func (s *Jobs) UpdateImportExportJob(ctx context.Context, j *twinhub.ImportExportJob, rev uint64) (uint64, error) {
	old, _, err := s.importExportJob(ctx, j.JobID)
	if err != nil {
		return 0, err
	}
	b, err := json.Marshal(storedImportExportJob{Job: j, Created: old.Created, Lease: j.Lease})
	if err != nil {
		return 0, err
	}
	n, err := s.kv.Update(ctx, importExportKey(j.JobID), b, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, twinhub.ErrConflict
	} else if err != nil {
		return 0, err
	}
	if j.Done() {
		// No longer the active one: the next job may start. A node that
		// stops here leaves the key, which the next create takes over.
		if e, err := s.kv.Get(ctx, activeImportExportKey); err == nil && string(e.Value()) == j.JobID {
			_ = s.kv.Delete(ctx, activeImportExportKey, jetstream.LastRevision(e.Revision()))
		}
	}
	return n, nil
}

func (s *Jobs) ImportExportJobs(ctx context.Context) ([]*twinhub.ImportExportJob, error) {
	var all []*storedImportExportJob
	err := lastValues(ctx, s.kv, "x.*", func(key string, data []byte) error {
		st, err := decodeImportExportJob(data)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		all = append(all, st)
		return nil
	})
	sort.SliceStable(all, func(a, b int) bool {
		if !all[a].Created.Equal(all[b].Created.Time) {
			return all[a].Created.Before(all[b].Created.Time)
		}
		return all[a].Job.JobID < all[b].Job.JobID
	})
	jobs := make([]*twinhub.ImportExportJob, len(all))
	for i, st := range all {
		jobs[i] = st.Job
	}
	return jobs, err
}

func (s *Jobs) DeleteImportExportJob(ctx context.Context, id string) error {
	return s.purge(ctx, importExportKey(id))
}
