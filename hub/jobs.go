package hub

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/query"
)

// Jobs: a twin update or a direct method applied to every device a query
// condition matches, from the job's start time on. A job's state and its
// device records live in the JobStore, so that a hub restarted in the
// middle of a job takes it up where it was (see resumeTwin for why a twin
// update is never applied twice) and every node answers for it.
//
// One node runs a job: the one whose compare-and-set takes it from queued
// to scheduled or running. A hub starting up takes up the jobs that were
// running or scheduled (this assumes one node runs jobs; issue 18's
// cluster work will need a lease so that a live node's job is not taken).

const (
	// jobWorkers is how many devices of a job are processed at once:
	// each waits on a few JetStream round trips, so that the job's pace
	// is set by how many are in flight (16: 3,100 devices/s, 64: see
	// BENCHMARKS.md "Jobs").
	jobWorkers = 64
	// jobPoll is how often a running job writes its statistics and
	// looks for a cancellation.
	jobPoll = time.Second
)

var errNoJobs = twinhub.Errorf(http.StatusNotImplemented, "NotImplemented", "this hub keeps no jobs")

func errJobNotFound(id string) *twinhub.Error {
	return twinhub.Errorf(http.StatusNotFound, "JobNotFound", "Job with ID '%s' not found", id)
}

// jobQuery is the query that finds a job's devices: IoT Hub's
// queryCondition is the condition of a WHERE clause on devices, or * for
// every device.
func jobQuery(condition string) (*query.Query, error) {
	c := strings.TrimSpace(condition)
	src := "SELECT deviceId FROM devices"
	if c != "*" {
		if len(c) >= 6 && strings.EqualFold(c[:6], "WHERE ") {
			c = c[6:]
		}
		src += " WHERE " + c
	}
	q, err := query.Parse(src)
	if err != nil {
		return nil, twinhub.ErrInvalid("queryCondition: %v", err)
	}
	return q, nil
}

// CreateJob schedules a job (PUT /jobs/v2/{id}): 409 if the id is taken.
func (h *Hub) CreateJob(ctx context.Context, j twinhub.Job) (*twinhub.Job, error) {
	if h.jobs == nil {
		return nil, errNoJobs
	}
	now := twinhub.Now()
	u, err := twinhub.ValidateJob(&j, now)
	if err != nil {
		return nil, err
	}
	if u != nil {
		// A change that breaks the twin limits fails here, once, rather
		// than on every device.
		t := twinhub.NewTwin(now)
		if err := t.Apply(*u, now); err != nil {
			return nil, err
		}
	}
	if m := j.CloudToDeviceMethod; m != nil {
		req := *m
		if _, _, err := checkMethodRequest(&req); err != nil {
			return nil, err
		}
	}
	if _, err := jobQuery(j.QueryCondition); err != nil {
		return nil, err
	}
	if err := h.jobs.CreateJob(ctx, &j); errors.Is(err, twinhub.ErrExists) {
		return nil, twinhub.Errorf(http.StatusConflict, "JobAlreadyExists", "A job with ID '%s' already exists", j.JobID)
	} else if err != nil {
		return nil, err
	}
	return &j, nil
}

// GetJob reads a job (GET /jobs/v2/{id}).
func (h *Hub) GetJob(ctx context.Context, id string) (*twinhub.Job, error) {
	if h.jobs == nil {
		return nil, errNoJobs
	}
	j, _, err := h.jobs.Job(ctx, id)
	if errors.Is(err, twinhub.ErrNotFound) {
		return nil, errJobNotFound(id)
	}
	return j, err
}

// CancelJob cancels a job that has not ended (POST /jobs/v2/{id}/cancel);
// a job that has ended is returned as it is. Devices it has processed stay
// processed; the runner stops within jobPoll.
func (h *Hub) CancelJob(ctx context.Context, id string) (*twinhub.Job, error) {
	return h.changeJob(ctx, id, func(j *twinhub.Job) bool {
		if j.Done() {
			return false
		}
		now := twinhub.Now()
		j.Status, j.EndTime = twinhub.JobCancelled, &now
		return true
	})
}

// changeJob applies change to job id with compare-and-set, retrying on
// conflicts; change returns false to leave the job as it is.
func (h *Hub) changeJob(ctx context.Context, id string, change func(*twinhub.Job) bool) (*twinhub.Job, error) {
	if h.jobs == nil {
		return nil, errNoJobs
	}
	for {
		j, rev, err := h.jobs.Job(ctx, id)
		if errors.Is(err, twinhub.ErrNotFound) {
			return nil, errJobNotFound(id)
		} else if err != nil {
			return nil, err
		}
		if !change(j) {
			return j, nil
		}
		if _, err := h.jobs.UpdateJob(ctx, j, rev); err == nil {
			return j, nil
		} else if !errors.Is(err, twinhub.ErrConflict) {
			return nil, err
		}
	}
}

// QueryJobs lists jobs (GET /jobs/v2/query), oldest first, of one type and
// status when those are given (in any case; "finished" is completed).
func (h *Hub) QueryJobs(ctx context.Context, jobType, status string) ([]*twinhub.Job, error) {
	if h.jobs == nil {
		return nil, errNoJobs
	}
	if strings.EqualFold(status, "finished") {
		status = twinhub.JobCompleted
	}
	all, err := h.jobs.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	jobs := make([]*twinhub.Job, 0, len(all))
	for _, j := range all {
		if (jobType == "" || strings.EqualFold(jobType, j.Type)) && (status == "" || strings.EqualFold(status, j.Status)) {
			jobs = append(jobs, j)
		}
	}
	return jobs, nil
}

// queryDeviceJobs answers SELECT * FROM devices.jobs [WHERE ...]: the
// device records of every job, by job id then device id. A condition
// devices.jobs.jobId = '...' reads that job's records only.
func (h *Hub) queryDeviceJobs(ctx context.Context, q *query.Query, pageSize int, tok int) ([]map[string]any, int, error) {
	var docs []map[string]any
	if h.jobs != nil {
		jobID := ""
		for _, c := range query.Conjuncts(q.Where) {
			if p, v, ok := query.PathEquals(c); ok && v.Kind == query.String && len(p.Segments) == 1 && p.Segments[0].Name == "jobId" {
				jobID = v.Str
			}
		}
		var records []*twinhub.DeviceJob
		err := h.jobs.DeviceJobs(ctx, jobID, func(d *twinhub.DeviceJob) bool {
			records = append(records, d)
			return true
		})
		if err != nil {
			return nil, 0, err
		}
		slices.SortFunc(records, func(a, b *twinhub.DeviceJob) int {
			if c := strings.Compare(a.JobID, b.JobID); c != 0 {
				return c
			}
			return strings.Compare(a.DeviceID, b.DeviceID)
		})
		docs = make([]map[string]any, len(records))
		for i, d := range records {
			docs[i] = d.Doc()
		}
	}
	rows, err := q.Execute(slices.Values(docs))
	if err != nil {
		return nil, 0, twinhub.ErrInvalid("query: %v", err)
	}
	if tok > len(rows) {
		tok = len(rows)
	}
	end := min(tok+pageSize, len(rows))
	next := end
	if end == len(rows) {
		next = 0
	}
	return rows[tok:end], next, nil
}

// --- the runner ---

// runJobs takes up this hub's jobs until ctx ends: at start the ones that
// were scheduled or running, then each new one, as a watch of the job
// store tells of them (on any node).
func (h *Hub) runJobs(ctx context.Context) {
	var mu sync.Mutex
	running := map[string]bool{}
	start := func(j *twinhub.Job, initial bool) {
		if j.Done() || (j.Status != twinhub.JobQueued && !initial) {
			return
		}
		mu.Lock()
		busy := running[j.JobID]
		running[j.JobID] = true
		mu.Unlock()
		if busy {
			return
		}
		go func(id string) {
			if err := h.runJob(ctx, id); err != nil && ctx.Err() == nil {
				h.log.Warn("job ended with an error", "job", id, "err", err)
			}
			mu.Lock()
			delete(running, id)
			mu.Unlock()
		}(j.JobID)
	}
	for ctx.Err() == nil {
		// A watch that fails is started again; it tells of every job
		// again, and those running here are left as they are.
		if err := h.jobs.WatchJobs(ctx, start); err != nil && ctx.Err() == nil {
			h.log.Warn("watching jobs", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(jobPoll):
			}
		}
	}
}

// runJob runs job id: it claims it, waits for its start time, processes
// its devices and writes the outcome. A job this node does not claim (or
// one that ended meanwhile) is left alone.
func (h *Hub) runJob(ctx context.Context, id string) error {
	claimed, resumed := false, false
	j, err := h.changeJob(ctx, id, func(j *twinhub.Job) bool {
		claimed, resumed = false, false
		switch j.Status {
		case twinhub.JobQueued:
			j.Status = twinhub.JobScheduled
			claimed = true
			return true
		case twinhub.JobScheduled, twinhub.JobRunning:
			// Taken up again after a restart: devices may have records.
			claimed, resumed = true, j.Status == twinhub.JobRunning
		}
		return false
	})
	if err != nil || !claimed {
		return err
	}
	// Wait for the start time, watching for a cancellation.
	for wait := time.Until(j.StartTime.Time); wait > 0; wait = time.Until(j.StartTime.Time) {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(min(wait, jobPoll)):
		}
		if j, _, err = h.jobs.Job(ctx, id); err != nil || j.Done() {
			return err
		}
	}
	deadline := j.Deadline()
	if j, err = h.changeJob(ctx, id, func(j *twinhub.Job) bool {
		if j.Done() {
			return false
		}
		j.Status = twinhub.JobRunning
		return true
	}); err != nil || j.Done() {
		return err
	}

	devices, err := h.jobDevices(ctx, j)
	if err != nil {
		_, err2 := h.finishJob(ctx, id, twinhub.JobStatistics{}, twinhub.JobFailed, err.Error())
		return errors.Join(err, err2)
	}
	var update *twinhub.TwinUpdate
	if j.Type == twinhub.JobUpdateTwin {
		if update, err = j.TwinUpdate(); err != nil {
			_, err2 := h.finishJob(ctx, id, twinhub.JobStatistics{}, twinhub.JobFailed, err.Error())
			return errors.Join(err, err2)
		}
	}

	work, stop := context.WithDeadline(ctx, deadline)
	defer stop()
	var succeeded, failed, active atomic.Int64
	next := make(chan string)
	var wg sync.WaitGroup
	for range min(jobWorkers, max(1, len(devices))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for dev := range next {
				active.Add(1)
				var d *twinhub.DeviceJob
				if update != nil {
					d = h.jobTwin(work, j, *update, dev, resumed)
				} else {
					d = h.jobMethod(work, j, dev, resumed)
				}
				active.Add(-1)
				if d == nil {
					continue // stopped before it was done
				}
				if d.Status == twinhub.DeviceJobCompleted {
					succeeded.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	stats := func() twinhub.JobStatistics {
		s, f, r := int(succeeded.Load()), int(failed.Load()), int(active.Load())
		return twinhub.JobStatistics{DeviceCount: len(devices), SucceededCount: s, FailedCount: f, RunningCount: r,
			PendingCount: max(0, len(devices)-s-f-r)}
	}
	// A watcher writes the statistics now and then and stops the work
	// when the job is cancelled.
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		every(work, jobPoll, func() bool {
			cur, err := h.changeJob(work, id, func(cur *twinhub.Job) bool {
				if cur.Done() {
					return false
				}
				cur.DeviceJobStatistics = stats()
				return true
			})
			if err == nil && cur.Done() {
				stop()
				return false
			}
			return true
		})
	}()
feed:
	for _, dev := range devices {
		select {
		case next <- dev:
		case <-work.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	timedOut := errors.Is(work.Err(), context.DeadlineExceeded)
	stop()
	<-watched
	if ctx.Err() != nil {
		return nil // the hub is stopping: the job is taken up at the next start
	}
	status, reason := twinhub.JobCompleted, ""
	if timedOut {
		status, reason = twinhub.JobFailed, "maxExecutionTimeInSeconds elapsed before every device was processed"
	}
	_, err = h.finishJob(ctx, id, stats(), status, reason)
	return err
}

// finishJob writes a job's end, unless it was cancelled meanwhile (then
// only its statistics).
func (h *Hub) finishJob(ctx context.Context, id string, stats twinhub.JobStatistics, status, reason string) (*twinhub.Job, error) {
	return h.changeJob(ctx, id, func(j *twinhub.Job) bool {
		if j.Status == twinhub.JobCancelled {
			j.DeviceJobStatistics = stats
			return true
		}
		if j.Done() {
			return false
		}
		now := twinhub.Now()
		j.Status, j.FailureReason, j.EndTime, j.DeviceJobStatistics = status, reason, &now, stats
		return true
	})
}

// jobDevices lists the devices a job's condition matches now.
func (h *Hub) jobDevices(ctx context.Context, j *twinhub.Job) ([]string, error) {
	q, err := jobQuery(j.QueryCondition)
	if err != nil {
		return nil, err
	}
	var ids []string
	err = h.queryEach(ctx, q.Source, func(item map[string]any) {
		if id, ok := item["deviceId"].(string); ok {
			ids = append(ids, id)
		}
	})
	return ids, err
}

// newDeviceJob is a device's record of j as it starts.
func newDeviceJob(j *twinhub.Job, dev string) *twinhub.DeviceJob {
	now := twinhub.Now()
	return &twinhub.DeviceJob{DeviceID: dev, JobID: j.JobID, JobType: j.Type, Status: twinhub.DeviceJobRunning,
		CreatedDateTimeUtc: now, StartTimeUtc: now, LastUpdatedDateTimeUtc: now}
}

// endDeviceJob writes a device's record as done: completed, or failed
// with err. It returns nil if the work was stopped before.
func (h *Hub) endDeviceJob(ctx context.Context, d *twinhub.DeviceJob, err error) *twinhub.DeviceJob {
	if ctx.Err() != nil {
		return nil
	}
	now := twinhub.Now()
	d.EndTimeUtc, d.LastUpdatedDateTimeUtc = now, now
	d.Status = twinhub.DeviceJobCompleted
	if err != nil {
		te := twinhub.AsError(err)
		d.Status, d.Error = twinhub.DeviceJobFailed, &twinhub.DeviceJobError{Code: te.Code, Description: te.Message}
	}
	if err := h.jobs.PutDeviceJob(ctx, d); err != nil {
		return nil
	}
	return d
}

// jobTwin applies a twin job's update to one device. Before it writes the
// twin it records the twin's version in the device's record and writes
// with that version as If-Match; a job taken up again (resumed) finds
// that record and that version still current (the write never happened:
// it writes now) or passed (the write happened, or another came first: it
// does not write again).
func (h *Hub) jobTwin(ctx context.Context, j *twinhub.Job, u twinhub.TwinUpdate, dev string, resumed bool) *twinhub.DeviceJob {
	k := twinhub.DeviceKey(dev)
	d := newDeviceJob(j, dev)
	if resumed {
		if prev, err := h.jobs.DeviceJob(ctx, j.JobID, dev); err == nil {
			if prev.Status != twinhub.DeviceJobRunning {
				return prev // processed before the restart
			}
			d = prev
			if rec, err := h.get(ctx, k); err == nil && rec.Twin.Version != prev.TwinVersion {
				return h.endDeviceJob(ctx, d, nil)
			}
		}
	}
	for attempt := 0; ; attempt++ {
		// The cached record names the version to write against; if it
		// is stale, the If-Match fails and the store's is read.
		var rec *twinhub.Record
		if e := h.cache.get(k); e != nil && attempt == 0 {
			rec = e.rec
		} else {
			var err error
			if rec, err = h.get(ctx, k); err != nil {
				return h.endDeviceJob(ctx, d, err)
			}
		}
		if d.TwinVersion != rec.Twin.Version {
			d.TwinVersion, d.LastUpdatedDateTimeUtc = rec.Twin.Version, twinhub.Now()
			if err := h.jobs.PutDeviceJob(ctx, d); err != nil {
				return h.endDeviceJob(ctx, d, err)
			}
		}
		_, err := h.writeTwin(ctx, k, u, twinhub.TwinETag(rec.Twin.Version))
		var te *twinhub.Error
		if errors.As(err, &te) && te.Status == http.StatusPreconditionFailed && attempt < 100 {
			continue // another writer came between: read the new version
		}
		return h.endDeviceJob(ctx, d, err)
	}
}

// jobMethod calls a method job's method on one device. A call found
// started before a restart is not made again (the device may have run
// it): that device's part fails.
func (h *Hub) jobMethod(ctx context.Context, j *twinhub.Job, dev string, resumed bool) *twinhub.DeviceJob {
	d := newDeviceJob(j, dev)
	if resumed {
		if prev, err := h.jobs.DeviceJob(ctx, j.JobID, dev); err == nil {
			if prev.Status != twinhub.DeviceJobRunning {
				return prev
			}
			return h.endDeviceJob(ctx, prev, twinhub.Errorf(http.StatusInternalServerError, "JobInterrupted",
				"the hub stopped while the method was being called; it is not called twice"))
		}
	}
	if err := h.jobs.PutDeviceJob(ctx, d); err != nil {
		return h.endDeviceJob(ctx, d, err)
	}
	res, err := h.InvokeMethod(ctx, twinhub.DeviceKey(dev), *j.CloudToDeviceMethod)
	if err == nil {
		d.Outcome = &twinhub.DeviceJobOutcome{DeviceMethodResponse: res}
	}
	return h.endDeviceJob(ctx, d, err)
}

// jobSweep is how often ended jobs past JobRetention are deleted.
const jobSweep = time.Hour

// sweepJobs deletes, every jobSweep and once at the start, the jobs (and
// import and export jobs) that ended more than retention ago, with their
// device records. Every node sweeps; deleting twice is harmless.
func (h *Hub) sweepJobs(ctx context.Context, retention, every time.Duration) {
	for {
		h.deleteEndedJobs(ctx, time.Now().Add(-retention))
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// deleteEndedJobs deletes the jobs that ended before cutoff.
func (h *Hub) deleteEndedJobs(ctx context.Context, cutoff time.Time) {
	if h.jobs != nil {
		jobs, err := h.jobs.Jobs(ctx)
		if err != nil && ctx.Err() == nil {
			h.log.Warn("listing jobs to sweep", "err", err)
		}
		for _, j := range jobs {
			if j.Done() && j.EndTime != nil && j.EndTime.Before(cutoff) {
				if err := h.jobs.DeleteJob(ctx, j.JobID); err != nil && ctx.Err() == nil {
					h.log.Warn("deleting an old job", "job", j.JobID, "err", err)
				}
			}
		}
	}
	if h.ieJobs != nil {
		jobs, err := h.ieJobs.ImportExportJobs(ctx)
		if err != nil && ctx.Err() == nil {
			h.log.Warn("listing import/export jobs to sweep", "err", err)
		}
		for _, j := range jobs {
			if j.Done() && j.EndTimeUTC != nil && j.EndTimeUTC.Before(cutoff) {
				if err := h.ieJobs.DeleteImportExportJob(ctx, j.JobID); err != nil && ctx.Err() == nil {
					h.log.Warn("deleting an old import/export job", "job", j.JobID, "err", err)
				}
			}
		}
	}
}
