package hub_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/internal/hubtest"
	"github.com/twinhub/twinhub/jetstream"
)

// waitJob polls a job until it has ended.
func waitJob(t *testing.T, h interface {
	GetJob(context.Context, string) (*twinhub.Job, error)
}, id string) *twinhub.Job {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		j, err := h.GetJob(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Done() {
			return j
		}
	}
	t.Fatalf("job %s has not ended", id)
	return nil
}

// twinDoc reads a twin as GET /twins shows it.
func twinDoc(t *testing.T, h *hubtest.Hub, id string) map[string]any {
	t.Helper()
	b, err := h.TwinJSON(context.Background(), twinhub.DeviceKey(id))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func deviceJobs(t *testing.T, h *hubtest.Hub, where string) []map[string]any {
	t.Helper()
	page, err := h.Query(context.Background(), "SELECT * FROM devices.jobs "+where, 100, "")
	if err != nil {
		t.Fatal(err)
	}
	if page.ItemType != "DeviceJob" {
		t.Errorf("item type %q", page.ItemType)
	}
	return page.Items
}

// TestTwinJob runs a twin-update job over the devices a condition
// matches: each twin gets the change once, the job's statistics and the
// devices.jobs records say so, and the devices it does not match are
// untouched.
func TestTwinJob(t *testing.T) {
	h := hubtest.New(t)
	ctx := context.Background()
	for _, id := range []string{"a1", "a2", "a3", "b1"} {
		if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.UpdateTwin(ctx, twinhub.DeviceKey(id), twinhub.TwinUpdate{Tags: map[string]any{"group": id[:1]}}, "*"); err != nil {
			t.Fatal(err)
		}
	}
	created, err := h.CreateJob(ctx, twinhub.Job{JobID: "tj", Type: twinhub.JobUpdateTwin, QueryCondition: "tags.group = 'a'",
		UpdateTwin: json.RawMessage(`{"etag":"*","tags":{"fw":"2.0"},"properties":{"desired":{"interval":30},"reported":{}}}`)})
	if err != nil {
		t.Fatal(err)
	}
	if created.Status != twinhub.JobQueued || created.MaxExecutionTimeInSeconds != twinhub.DefaultJobMaxExecution || created.StartTime.IsZero() {
		t.Errorf("created %+v", created)
	}
	j := waitJob(t, h, "tj")
	want := twinhub.JobStatistics{DeviceCount: 3, SucceededCount: 3}
	if j.Status != twinhub.JobCompleted || j.DeviceJobStatistics != want || j.EndTime == nil {
		t.Fatalf("ended %+v", j)
	}
	for _, id := range []string{"a1", "a2", "a3", "b1"} {
		doc := twinDoc(t, h, id)
		tags, desired := doc["tags"].(map[string]any), doc["properties"].(map[string]any)["desired"].(map[string]any)
		applied := tags["fw"] == "2.0" && desired["interval"] == 30.0
		if applied != (id != "b1") || (applied && (doc["version"] != 3.0 || desired["$version"] != 2.0)) {
			t.Errorf("%s: tags %v desired %v version %v", id, tags, desired, doc["version"])
		}
	}
	rows := deviceJobs(t, h, "WHERE devices.jobs.jobId = 'tj' AND devices.jobs.status = 'completed'")
	if len(rows) != 3 || rows[0]["deviceId"] != "a1" || rows[0]["jobType"] != twinhub.JobUpdateTwin || rows[0]["twinVersion"] != nil {
		t.Errorf("device jobs %v", rows)
	}
	// Cancelling an ended job leaves it as it is.
	if j, err := h.CancelJob(ctx, "tj"); err != nil || j.Status != twinhub.JobCompleted {
		t.Errorf("cancel after the end: %+v, %v", j, err)
	}
}

// TestJobCancelAndErrors: a job scheduled for later can be cancelled
// before it touches a device; bad jobs are refused before anything is
// stored; a method job to an offline device completes with that device
// failed.
func TestJobCancelAndErrors(t *testing.T) {
	h := hubtest.New(t)
	ctx := context.Background()
	if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: "d"}); err != nil {
		t.Fatal(err)
	}
	later := twinhub.Time{Time: time.Now().Add(time.Hour)}
	method := &twinhub.MethodRequest{MethodName: "reboot"}
	j, err := h.CreateJob(ctx, twinhub.Job{JobID: "later", Type: twinhub.JobDeviceMethod, QueryCondition: "*", StartTime: later, CloudToDeviceMethod: method})
	if err != nil || j.Status != twinhub.JobQueued {
		t.Fatalf("%+v, %v", j, err)
	}
	if j, err = h.CancelJob(ctx, "later"); err != nil || j.Status != twinhub.JobCancelled || j.EndTime == nil {
		t.Fatalf("cancelled: %+v, %v", j, err)
	}
	if got, _ := h.GetJob(ctx, "later"); got.Status != twinhub.JobCancelled {
		t.Errorf("after cancel: %+v", got)
	}

	bad := map[string]struct {
		job    twinhub.Job
		status int
	}{
		"an id in use":           {twinhub.Job{JobID: "later", Type: twinhub.JobDeviceMethod, QueryCondition: "*", CloudToDeviceMethod: method}, http.StatusConflict},
		"a condition that fails": {twinhub.Job{JobID: "x1", Type: twinhub.JobDeviceMethod, QueryCondition: "deviceId = ", CloudToDeviceMethod: method}, http.StatusBadRequest},
		"no condition":           {twinhub.Job{JobID: "x2", Type: twinhub.JobDeviceMethod, CloudToDeviceMethod: method}, http.StatusBadRequest},
		"no method name":         {twinhub.Job{JobID: "x3", Type: twinhub.JobDeviceMethod, QueryCondition: "*", CloudToDeviceMethod: &twinhub.MethodRequest{}}, http.StatusBadRequest},
		"an unknown type":        {twinhub.Job{JobID: "x4", Type: "export", QueryCondition: "*"}, http.StatusBadRequest},
		"an etag other than *":   {twinhub.Job{JobID: "x5", Type: twinhub.JobUpdateTwin, QueryCondition: "*", UpdateTwin: json.RawMessage(`{"etag":"AAAA","tags":{"a":1}}`)}, http.StatusPreconditionFailed},
		"not an object":          {twinhub.Job{JobID: "x6", Type: twinhub.JobUpdateTwin, QueryCondition: "*", UpdateTwin: json.RawMessage(`[1]`)}, http.StatusBadRequest},
		"a key the twin refuses": {twinhub.Job{JobID: "x7", Type: twinhub.JobUpdateTwin, QueryCondition: "*", UpdateTwin: json.RawMessage(`{"properties":{"desired":{"$bad":1}}}`)}, http.StatusBadRequest},
		"an invalid job id":      {twinhub.Job{JobID: "a/b", Type: twinhub.JobDeviceMethod, QueryCondition: "*", CloudToDeviceMethod: method}, http.StatusBadRequest},
	}
	for name, c := range bad {
		if _, err := h.CreateJob(ctx, c.job); statusOf(err) != c.status {
			t.Errorf("%s: %v, want %d", name, err, c.status)
		}
		if c.status != http.StatusConflict {
			if _, err := h.GetJob(ctx, c.job.JobID); statusOf(err) != http.StatusNotFound {
				t.Errorf("%s: stored anyway (%v)", name, err)
			}
		}
	}
	if _, err := h.CancelJob(ctx, "nope"); statusOf(err) != http.StatusNotFound {
		t.Errorf("cancel of an unknown job: %v", err)
	}

	if _, err := h.CreateJob(ctx, twinhub.Job{JobID: "offline", Type: twinhub.JobDeviceMethod, QueryCondition: "deviceId IN ['d']", CloudToDeviceMethod: method}); err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, h, "offline")
	if j.Status != twinhub.JobCompleted || j.DeviceJobStatistics != (twinhub.JobStatistics{DeviceCount: 1, FailedCount: 1}) {
		t.Errorf("method job to an offline device: %+v", j)
	}
	rows := deviceJobs(t, h, "WHERE devices.jobs.jobId = 'offline'")
	if len(rows) != 1 || rows[0]["status"] != "failed" || rows[0]["error"].(map[string]any)["code"] != "DeviceNotOnline" {
		t.Errorf("device jobs %v", rows)
	}
	if jobs, err := h.QueryJobs(ctx, "SCHEDULEDEVICEMETHOD", "cancelled"); err != nil || len(jobs) != 1 || jobs[0].JobID != "later" {
		t.Errorf("jobs cancelled: %v, %v", jobs, err)
	}
}

// TestTwinJobResumes takes up a twin job that a hub left running: a
// device whose record shows the write not made gets it, one whose twin
// moved past the version its record names does not get it again, and one
// done is left as it is.
func TestTwinJobResumes(t *testing.T) {
	h := hubtest.New(t)
	ctx := context.Background()
	for _, id := range []string{"todo", "written", "done"} {
		if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: id}); err != nil {
			t.Fatal(err)
		}
	}
	// What a hub that stopped in the middle left: "written" got the
	// update (version 1 to 2) but not its completed record.
	if _, err := h.UpdateTwin(ctx, twinhub.DeviceKey("written"), twinhub.TwinUpdate{Tags: map[string]any{"n": 1.0}}, "*"); err != nil {
		t.Fatal(err)
	}
	store, err := jetstream.OpenJobs(ctx, h.Conn, 1)
	if err != nil {
		t.Fatal(err)
	}
	now := twinhub.Now()
	job := &twinhub.Job{JobID: "resumed", Type: twinhub.JobUpdateTwin, QueryCondition: "*", CreatedTime: now, StartTime: now,
		MaxExecutionTimeInSeconds: 3600, Status: twinhub.JobRunning, UpdateTwin: json.RawMessage(`{"tags":{"n":1}}`)}
	if err := store.CreateJob(ctx, job); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*twinhub.DeviceJob{
		{DeviceID: "todo", JobID: "resumed", Status: twinhub.DeviceJobRunning, TwinVersion: 1},
		{DeviceID: "written", JobID: "resumed", Status: twinhub.DeviceJobRunning, TwinVersion: 1},
		{DeviceID: "done", JobID: "resumed", Status: twinhub.DeviceJobCompleted},
	} {
		if err := store.PutDeviceJob(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	// A hub starting on that state takes the job up.
	node := h.Node(t)
	j := waitJob(t, node, "resumed")
	if j.Status != twinhub.JobCompleted || j.DeviceJobStatistics.SucceededCount != 3 {
		t.Fatalf("resumed job %+v", j)
	}
	for id, version := range map[string]int64{"todo": 2, "written": 2, "done": 1} {
		doc := twinDoc(t, node, id)
		if doc["version"] != float64(version) {
			t.Errorf("%s: twin version %v, want %d (tags %v)", id, doc["version"], version, doc["tags"])
		}
	}
}

// TestJobRetention: a job that ended is kept JobRetention, then deleted
// with its device records; one that has not ended is kept.
func TestJobRetention(t *testing.T) {
	h := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) { c.JobRetention = 300 * time.Millisecond }))
	ctx := context.Background()
	if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: "d"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.CreateJob(ctx, twinhub.Job{JobID: "old", Type: twinhub.JobUpdateTwin, QueryCondition: "*",
		UpdateTwin: json.RawMessage(`{"etag":"*","tags":{"x":1}}`)}); err != nil {
		t.Fatal(err)
	}
	waitJob(t, h, "old")
	if rows := deviceJobs(t, h, "WHERE devices.jobs.jobId = 'old'"); len(rows) != 1 {
		t.Fatalf("device jobs %v", rows)
	}
	later := twinhub.Time{Time: time.Now().Add(time.Hour)}
	if _, err := h.CreateJob(ctx, twinhub.Job{JobID: "pending", Type: twinhub.JobUpdateTwin, QueryCondition: "*", StartTime: later,
		UpdateTwin: json.RawMessage(`{"etag":"*","tags":{"x":2}}`)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the ended job deleted", func() bool {
		_, err := h.GetJob(ctx, "old")
		return statusOf(err) == http.StatusNotFound
	})
	if rows := deviceJobs(t, h, "WHERE devices.jobs.jobId = 'old'"); len(rows) != 0 {
		t.Errorf("device jobs of a deleted job %v", rows)
	}
	if j, err := h.GetJob(ctx, "pending"); err != nil || j.Done() {
		t.Errorf("the job that has not ended: %+v %v", j, err)
	}
}
