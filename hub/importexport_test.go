package hub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/internal/hubtest"
	"github.com/twinhub/twinhub/jetstream"
)

// memContainers are blob containers in memory, named by their URI, for
// the hub's side of import and export jobs (interop/node runs them
// against Azurite). A container's gate, when set, holds its writes until
// it is closed.
type memContainers struct {
	mu    sync.Mutex
	blobs map[string][]byte // uri + "/" + name
	gate  chan struct{}
}

func newMemContainers() *memContainers { return &memContainers{blobs: map[string][]byte{}} }

func (m *memContainers) Open(uri string) (twinhub.BlobContainer, error) {
	if !strings.HasPrefix(uri, "https://") || !strings.Contains(uri, "sig=") {
		return nil, errors.New("not a container SAS URI")
	}
	return &memContainer{m: m, uri: uri}, nil
}

func (m *memContainers) blob(uri, name string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.blobs[uri+"/"+name]
}

func (m *memContainers) put(uri, name string, b []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.blobs[uri+"/"+name] = b
}

type memContainer struct {
	m   *memContainers
	uri string
}

func (c *memContainer) Read(_ context.Context, name string) (io.ReadCloser, error) {
	b := c.m.blob(c.uri, name)
	if b == nil {
		return nil, twinhub.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (c *memContainer) Write(ctx context.Context, name string, r io.Reader) error {
	c.m.mu.Lock()
	gate := c.m.gate
	c.m.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	c.m.put(c.uri, name, b)
	return nil
}

// ieHub is a test hub whose import and export jobs use blobs.
func ieHub(t *testing.T, blobs *memContainers) *hubtest.Hub {
	return hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) { c.Containers = blobs }))
}

// waitImportExport polls a job until it has ended.
func waitImportExport(t *testing.T, h *hubtest.Hub, id string) *twinhub.ImportExportJob {
	t.Helper()
	var j *twinhub.ImportExportJob
	eventually(t, "import/export job "+id+" ended", func() bool {
		var err error
		if j, err = h.GetImportExportJob(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		return j.Done()
	})
	return j
}

// lines reads a blob of JSON lines.
func lines[T any](t *testing.T, b []byte) []T {
	t.Helper()
	var out []T
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l == "" {
			continue
		}
		var v T
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		out = append(out, v)
	}
	return out
}

// TestImportExportJobs: an export job writes every device (edge devices
// before their children) and module, with keys, tags, desired and
// reported properties, to devices.txt; an import job into another hub
// recreates them, identically, and logs the lines it could not apply to
// importErrors.log; without keys, authentication is null.
func TestImportExportJobs(t *testing.T) {
	ctx := context.Background()
	blobs := newMemContainers()
	src := ieHub(t, blobs)
	edge := twinhub.Capabilities{IoTEdge: true}
	gw, err := src.CreateDevice(ctx, twinhub.Device{DeviceID: "gw", Capabilities: edge})
	if err != nil {
		t.Fatal(err)
	}
	reason := "stolen"
	if _, err := src.CreateDevice(ctx, twinhub.Device{DeviceID: "leaf", DeviceScope: gw.DeviceScope, Status: "disabled", StatusReason: &reason}); err != nil {
		t.Fatal(err)
	}
	d1, err := src.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.CreateModule(ctx, twinhub.Module{DeviceID: "d1", ModuleID: "m1"}); err != nil {
		t.Fatal(err)
	}
	u, err := twinhub.ParseTwinUpdate([]byte(`{"tags":{"plant":"Redmond43"},"properties":{"desired":{"rate":5}}}`), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.UpdateTwin(ctx, twinhub.DeviceKey("d1"), u, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := src.UpdateReported(ctx, twinhub.DeviceKey("d1"), map[string]any{"connectivity": "cellular"}); err != nil {
		t.Fatal(err)
	}

	const out = "https://account.example/export?sig=x"
	j, err := src.CreateImportExportJob(ctx, twinhub.ImportExportJob{Type: "export", OutputBlobContainerURI: out, JobID: "ignored", Status: "unknown"})
	if err != nil {
		t.Fatal(err)
	}
	if j.JobID == "ignored" || j.Status != twinhub.ImportExportEnqueued || j.OutputBlobName != twinhub.DevicesBlobName {
		t.Errorf("created job %+v", j)
	}
	if j = waitImportExport(t, src, j.JobID); j.Status != twinhub.ImportExportCompleted || j.Progress != 100 || j.StartTimeUTC == nil || j.EndTimeUTC == nil || j.FailureReason != nil {
		t.Fatalf("export job ended %+v", j)
	}
	exported := lines[twinhub.ExportImportDevice](t, blobs.blob(out, twinhub.DevicesBlobName))
	var order []string
	byKey := map[twinhub.Key]twinhub.ExportImportDevice{}
	for _, e := range exported {
		order = append(order, e.Key().String())
		byKey[e.Key()] = e
	}
	// gw (an edge device) before leaf, devices before modules; gw has
	// its $edgeAgent and $edgeHub.
	if len(exported) != 6 || order[0] != "gw" || byKey[twinhub.DeviceKey("leaf")].ID == "" || byKey[twinhub.ModuleKey("gw", "$edgeAgent")].ID == "" {
		t.Fatalf("exported %v", order)
	}
	for i, k := range order {
		if strings.Contains(k, "/") && i < 3 {
			t.Errorf("a module before a device: %v", order)
		}
	}
	e1 := byKey[twinhub.DeviceKey("d1")]
	if e1.Authentication == nil || e1.Authentication.SymmetricKey.PrimaryKey != d1.Authentication.SymmetricKey.PrimaryKey {
		t.Errorf("d1's keys %+v", e1.Authentication)
	}
	if string(e1.Tags) != `{"plant":"Redmond43"}` || !strings.Contains(string(e1.Properties), `"rate":5`) || !strings.Contains(string(e1.Properties), `"connectivity":"cellular"`) || strings.Contains(string(e1.Properties), "$metadata") {
		t.Errorf("d1's twin in the export: tags %s properties %s", e1.Tags, e1.Properties)
	}

	// Without keys.
	const bare = "https://account.example/bare?sig=x"
	j, err = src.CreateImportExportJob(ctx, twinhub.ImportExportJob{Type: "Export", OutputBlobContainerURI: bare, ExcludeKeysInExport: true})
	if err != nil {
		t.Fatal(err)
	}
	waitImportExport(t, src, j.JobID)
	for _, e := range lines[twinhub.ExportImportDevice](t, blobs.blob(bare, twinhub.DevicesBlobName)) {
		if e.Authentication != nil {
			t.Errorf("%s exported with authentication %+v", e.Key(), e.Authentication)
		}
	}

	// Import into another hub, with two lines it cannot apply.
	dst := ieHub(t, blobs)
	if _, err := dst.CreateDevice(ctx, twinhub.Device{DeviceID: "taken"}); err != nil {
		t.Fatal(err)
	}
	input := append(blobs.blob(out, twinhub.DevicesBlobName), []byte("not json\r\n{\"id\":\"taken\",\"importMode\":\"create\"}\r\n")...)
	const in, logs = "https://account.example/in?sig=x", "https://account.example/logs?sig=x"
	blobs.put(in, twinhub.DevicesBlobName, input)
	j, err = dst.CreateImportExportJob(ctx, twinhub.ImportExportJob{Type: "import", InputBlobContainerURI: in, OutputBlobContainerURI: logs})
	if err != nil {
		t.Fatal(err)
	}
	if j = waitImportExport(t, dst, j.JobID); j.Status != twinhub.ImportExportCompleted {
		t.Fatalf("import job ended %+v", j)
	}
	for k, e := range byKey {
		var got *twinhub.Record
		if k.ModuleID != "" {
			m, err := dst.GetModule(ctx, k.DeviceID, k.ModuleID)
			if err != nil {
				t.Errorf("%s after the import: %v", k, err)
				continue
			}
			got = &twinhub.Record{Module: m}
		} else {
			d, err := dst.GetDevice(ctx, k.DeviceID)
			if err != nil {
				t.Errorf("%s after the import: %v", k, err)
				continue
			}
			got = &twinhub.Record{Device: d}
			if d.Status != e.Status || (e.DeviceScope != nil) != (d.DeviceScope != nil) || d.Capabilities != *e.Capabilities {
				t.Errorf("%s imported as %+v, exported %+v", k, d, e)
			}
		}
		if got.Auth().SymmetricKey != e.Authentication.SymmetricKey {
			t.Errorf("%s's keys after the import", k)
		}
	}
	twin := hubtest.Twin(t, dst, twinhub.DeviceKey("d1"))
	props := twin["properties"].(map[string]any)
	if twin["tags"].(map[string]any)["plant"] != "Redmond43" || props["desired"].(map[string]any)["rate"] != 5.0 || props["reported"].(map[string]any)["connectivity"] != nil {
		t.Errorf("d1's twin after the import (reported properties are the device's, not imported): %v", twin)
	}
	errs := lines[twinhub.ImportError](t, blobs.blob(logs, twinhub.ImportErrorsBlobName))
	if len(errs) != 2 || errs[0].ErrorCode != 400004 || errs[0].DeviceID != "" || errs[1].DeviceID != "taken" || errs[1].ErrorCode != 409001 {
		t.Errorf("importErrors.log %+v", errs)
	}

	// Listed, oldest first.
	jobs, err := src.ImportExportJobs(ctx)
	if err != nil || len(jobs) != 2 || jobs[0].OutputBlobContainerURI != out {
		t.Errorf("jobs %+v, %v", jobs, err)
	}
}

// TestImportExportJobRefusals: what a job request gets wrong is a 400; a
// second job while one runs is 403 JobQuotaExceeded; a cancelled job
// stops and lets the next one start; a job whose node stopped (its lease
// ran out) is failed when looked at, and no longer holds the next one
// back.
func TestImportExportJobRefusals(t *testing.T) {
	ctx := context.Background()
	blobs := newMemContainers()
	h := ieHub(t, blobs)
	const out = "https://account.example/out?sig=x"
	for _, c := range []struct {
		name string
		j    twinhub.ImportExportJob
	}{
		{"no type", twinhub.ImportExportJob{OutputBlobContainerURI: out}},
		{"another type", twinhub.ImportExportJob{Type: "backup", OutputBlobContainerURI: out}},
		{"no output", twinhub.ImportExportJob{Type: "export"}},
		{"import without input", twinhub.ImportExportJob{Type: "import", OutputBlobContainerURI: out}},
		{"not a SAS URI", twinhub.ImportExportJob{Type: "export", OutputBlobContainerURI: "ftp://x/y"}},
		{"identity based", twinhub.ImportExportJob{Type: "export", OutputBlobContainerURI: out, StorageAuthenticationType: "IdentityBased"}},
	} {
		_, err := h.CreateImportExportJob(ctx, c.j)
		if te := twinhub.AsError(err); err == nil || te.Status != http.StatusBadRequest {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if _, err := h.GetImportExportJob(ctx, "nope"); twinhub.AsError(err).Status != http.StatusNotFound {
		t.Errorf("an unknown job: %v", err)
	}

	// A job held at its write: the next one is refused; cancelled, it
	// ends, and the next one starts.
	blobs.gate = make(chan struct{})
	held, err := h.CreateImportExportJob(ctx, twinhub.ImportExportJob{Type: "export", OutputBlobContainerURI: out})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.CreateImportExportJob(ctx, twinhub.ImportExportJob{Type: "export", OutputBlobContainerURI: out})
	if te := twinhub.AsError(err); err == nil || te.Status != http.StatusForbidden || te.Code != "JobQuotaExceeded" {
		t.Fatalf("a second job while one runs: %v", err)
	}
	j, err := h.CancelImportExportJob(ctx, held.JobID)
	if err != nil || j.Status != twinhub.ImportExportCancelled {
		t.Fatalf("cancel: %+v %v", j, err)
	}
	blobs.mu.Lock()
	blobs.gate = nil
	blobs.mu.Unlock()
	next, err := h.CreateImportExportJob(ctx, twinhub.ImportExportJob{Type: "export", OutputBlobContainerURI: out})
	if err != nil {
		t.Fatalf("a job after the cancelled one: %v", err)
	}
	if j := waitImportExport(t, h, next.JobID); j.Status != twinhub.ImportExportCompleted {
		t.Errorf("the next job %+v", j)
	}
	if j, _ := h.GetImportExportJob(ctx, held.JobID); j.Status != twinhub.ImportExportCancelled {
		t.Errorf("the cancelled job ended as %+v", j)
	}

	// A job left running by a node that stopped: written as such.
	store, err := jetstream.OpenJobs(ctx, h.Conn, 1)
	if err != nil {
		t.Fatal(err)
	}
	past := twinhub.Time{Time: time.Now().Add(-time.Minute)}
	orphan := &twinhub.ImportExportJob{JobID: "orphan", Type: "export", Status: twinhub.ImportExportRunning, OutputBlobContainerURI: out, Lease: past}
	if err := store.CreateImportExportJob(ctx, orphan); err != nil {
		t.Fatal(err)
	}
	j, err = h.GetImportExportJob(ctx, "orphan")
	if err != nil || j.Status != twinhub.ImportExportFailed || j.FailureReason == nil || j.EndTimeUTC == nil {
		t.Fatalf("a job whose lease ran out: %+v %v", j, err)
	}
	if _, err := h.CreateImportExportJob(ctx, twinhub.ImportExportJob{Type: "export", OutputBlobContainerURI: out}); err != nil {
		t.Errorf("a job after one whose node stopped: %v", err)
	}
}

// TestImportExportJobRetention: an import or export job that ended is
// kept JobRetention, then deleted.
func TestImportExportJobRetention(t *testing.T) {
	ctx := context.Background()
	blobs := newMemContainers()
	h := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) { c.Containers, c.JobRetention = blobs, 300*time.Millisecond }))
	j, err := h.CreateImportExportJob(ctx, twinhub.ImportExportJob{Type: "export", OutputBlobContainerURI: "https://account.example/out?sig=x"})
	if err != nil {
		t.Fatal(err)
	}
	waitImportExport(t, h, j.JobID)
	eventually(t, "the ended job deleted", func() bool {
		_, err := h.GetImportExportJob(ctx, j.JobID)
		return twinhub.AsError(err).Status == http.StatusNotFound
	})
}
