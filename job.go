package twinhub

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// Jobs (IoT Hub's jobs v2): a twin update or a direct method applied to
// every device a query condition matches, from a start time on, with a
// record per device that `SELECT * FROM devices.jobs` returns.

// Job types and statuses as IoT Hub spells them on the wire.
const (
	JobUpdateTwin   = "scheduleUpdateTwin"
	JobDeviceMethod = "scheduleDeviceMethod"

	JobQueued    = "queued"    // accepted, not yet taken up
	JobScheduled = "scheduled" // waiting for its start time
	JobRunning   = "running"
	JobCompleted = "completed" // every device was processed (some may have failed)
	JobFailed    = "failed"    // the job itself could not finish
	JobCancelled = "cancelled"
)

// Per-device statuses (IoT Hub spells this "canceled" with one l).
const (
	DeviceJobPending   = "pending"
	DeviceJobRunning   = "running"
	DeviceJobCompleted = "completed"
	DeviceJobFailed    = "failed"
	DeviceJobCanceled  = "canceled"
)

// DefaultJobMaxExecution is maxExecutionTimeInSeconds when a request
// leaves it out, as the SDKs' default.
const DefaultJobMaxExecution = 3600

// JobStatistics counts a job's devices by outcome.
type JobStatistics struct {
	DeviceCount    int `json:"deviceCount"`
	FailedCount    int `json:"failedCount"`
	SucceededCount int `json:"succeededCount"`
	RunningCount   int `json:"runningCount"`
	PendingCount   int `json:"pendingCount"`
}

// Job is a job as PUT, GET and cancel on /jobs/v2/{id} show it (JobResponse).
type Job struct {
	JobID                     string          `json:"jobId"`
	QueryCondition            string          `json:"queryCondition"`
	CreatedTime               Time            `json:"createdTime"`
	StartTime                 Time            `json:"startTime"`
	EndTime                   *Time           `json:"endTime,omitempty"`
	MaxExecutionTimeInSeconds int64           `json:"maxExecutionTimeInSeconds"`
	Type                      string          `json:"type"`
	CloudToDeviceMethod       *MethodRequest  `json:"cloudToDeviceMethod,omitempty"`
	UpdateTwin                json.RawMessage `json:"updateTwin,omitempty"`
	Status                    string          `json:"status"`
	FailureReason             string          `json:"failureReason,omitempty"`
	StatusMessage             string          `json:"statusMessage,omitempty"`
	DeviceJobStatistics       JobStatistics   `json:"deviceJobStatistics"`
}

// Done says whether the job has ended, one way or another.
func (j *Job) Done() bool {
	return j.Status == JobCompleted || j.Status == JobFailed || j.Status == JobCancelled
}

// Deadline is when the job must have ended.
func (j *Job) Deadline() time.Time {
	return j.StartTime.Add(time.Duration(j.MaxExecutionTimeInSeconds) * time.Second)
}

// DeviceJobOutcome is what a device answered a method job.
type DeviceJobOutcome struct {
	DeviceMethodResponse *MethodResult `json:"deviceMethodResponse"`
}

// DeviceJobError says why a device's part of a job failed.
type DeviceJobError struct {
	Code        string `json:"code"`
	Description string `json:"description"`
}

// DeviceJob is one device's part of a job, as devices.jobs shows it.
type DeviceJob struct {
	DeviceID               string            `json:"deviceId"`
	JobID                  string            `json:"jobId"`
	JobType                string            `json:"jobType"`
	Status                 string            `json:"status"`
	StartTimeUtc           Time              `json:"startTimeUtc"`
	EndTimeUtc             Time              `json:"endTimeUtc"`
	CreatedDateTimeUtc     Time              `json:"createdDateTimeUtc"`
	LastUpdatedDateTimeUtc Time              `json:"lastUpdatedDateTimeUtc"`
	Outcome                *DeviceJobOutcome `json:"outcome,omitempty"`
	Error                  *DeviceJobError   `json:"error,omitempty"`
	// TwinVersion is the twin's version a twin-update job read before
	// it wrote (and wrote with as its If-Match): a job resumed after a
	// restart finds the twin at that version, unwritten, or past it,
	// written, and so never applies the update twice. Not shown.
	TwinVersion int64 `json:"twinVersion,omitempty"`
}

// Doc is the device job as a devices.jobs query sees it.
func (d *DeviceJob) Doc() map[string]any {
	doc := map[string]any{
		"deviceId":               d.DeviceID,
		"jobId":                  d.JobID,
		"jobType":                d.JobType,
		"status":                 d.Status,
		"startTimeUtc":           d.StartTimeUtc.String(),
		"endTimeUtc":             d.EndTimeUtc.String(),
		"createdDateTimeUtc":     d.CreatedDateTimeUtc.String(),
		"lastUpdatedDateTimeUtc": d.LastUpdatedDateTimeUtc.String(),
	}
	if d.Outcome != nil {
		var payload any
		if r := d.Outcome.DeviceMethodResponse; r != nil {
			_ = json.Unmarshal(r.Payload, &payload)
			doc["outcome"] = map[string]any{"deviceMethodResponse": map[string]any{"status": float64(r.Status), "payload": payload}}
		} else {
			doc["outcome"] = map[string]any{"deviceMethodResponse": nil}
		}
	}
	if d.Error != nil {
		doc["error"] = map[string]any{"code": d.Error.Code, "description": d.Error.Description}
	}
	return doc
}

// JobStore keeps jobs and their device records.
type JobStore interface {
	// CreateJob stores a new job: ErrExists when the id is taken.
	CreateJob(ctx context.Context, j *Job) error
	// Job reads a job and its revision: ErrNotFound when there is none.
	Job(ctx context.Context, id string) (*Job, uint64, error)
	// UpdateJob replaces the job if its revision is still rev
	// (ErrConflict otherwise) and returns the new revision.
	UpdateJob(ctx context.Context, j *Job, rev uint64) (uint64, error)
	// Jobs returns every job, oldest first.
	Jobs(ctx context.Context) ([]*Job, error)
	// WatchJobs calls fn with every job as it is at the start (initial)
	// and then with each job created or changed, until ctx ends or the
	// watch fails (its error).
	WatchJobs(ctx context.Context, fn func(j *Job, initial bool)) error
	// PutDeviceJob stores a device's record of a job.
	PutDeviceJob(ctx context.Context, d *DeviceJob) error
	// DeviceJob reads a device's record of a job: ErrNotFound when the
	// job has not reached the device.
	DeviceJob(ctx context.Context, jobID, deviceID string) (*DeviceJob, error)
	// DeviceJobs calls fn with every device record of job jobID (of
	// every job when jobID is ""), in no particular order, until fn
	// returns false.
	DeviceJobs(ctx context.Context, jobID string, fn func(*DeviceJob) bool) error
	// DeleteJob removes a job and its device records.
	DeleteJob(ctx context.Context, id string) error
}

// JobRetention is how long a job that has ended is kept, with its device
// records (IoT Hub keeps them 30 days); import and export jobs too.
const JobRetention = 30 * 24 * time.Hour

// ValidateJob checks a new job as IoT Hub does and fills in the defaults;
// now is the time it is created. For a twin job it returns the update to
// apply to each device. (The hub checks a method job's timeouts as it
// checks a direct method call's.)
func ValidateJob(j *Job, now Time) (*TwinUpdate, error) {
	if err := ValidateID("job", j.JobID); err != nil {
		return nil, err
	}
	if strings.TrimSpace(j.QueryCondition) == "" {
		return nil, ErrInvalid("queryCondition is empty: give a condition, for example deviceId IN ['a','b'], or * for every device")
	}
	if j.MaxExecutionTimeInSeconds < 0 {
		return nil, ErrInvalid("maxExecutionTimeInSeconds must not be negative")
	}
	if j.MaxExecutionTimeInSeconds == 0 {
		j.MaxExecutionTimeInSeconds = DefaultJobMaxExecution
	}
	if j.StartTime.IsZero() {
		j.StartTime = now
	}
	j.CreatedTime, j.EndTime = now, nil
	j.Status, j.FailureReason, j.StatusMessage = JobQueued, "", ""
	j.DeviceJobStatistics = JobStatistics{}
	switch j.Type {
	case JobDeviceMethod:
		m := j.CloudToDeviceMethod
		if m == nil || m.MethodName == "" {
			return nil, ErrInvalid("a scheduleDeviceMethod job needs cloudToDeviceMethod.methodName")
		}
		j.UpdateTwin = nil
		return nil, nil
	case JobUpdateTwin:
		u, err := j.TwinUpdate()
		if err != nil {
			return nil, err
		}
		j.CloudToDeviceMethod = nil
		return u, nil
	}
	return nil, ErrInvalid("job type %q is not one of %s and %s", j.Type, JobUpdateTwin, JobDeviceMethod)
}

// TwinUpdate is the change a scheduleUpdateTwin job makes to each twin:
// its tags and desired properties, checked and merged as a twin PATCH
// (ParseTwinUpdate; reported properties sent back are ignored there too).
// IoT Hub's jobs update whatever twin they find: an etag other than *
// is refused.
func (j *Job) TwinUpdate() (*TwinUpdate, error) {
	if len(j.UpdateTwin) == 0 || string(j.UpdateTwin) == "null" {
		return nil, ErrInvalid("a scheduleUpdateTwin job needs updateTwin")
	}
	var head struct {
		ETag string `json:"etag"`
	}
	if err := json.Unmarshal(j.UpdateTwin, &head); err != nil {
		return nil, ErrInvalid("updateTwin: %v", err)
	}
	if e := strings.Trim(head.ETag, `"`); e != "" && e != "*" {
		return nil, Errorf(http.StatusPreconditionFailed, "PreconditionFailed", "a twin update job updates whatever twin it finds: its etag must be *, not %q", head.ETag)
	}
	u, err := ParseTwinUpdate(j.UpdateTwin, false)
	if err != nil {
		return nil, err
	}
	return &u, nil
}
