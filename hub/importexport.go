package hub

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/twinhub/twinhub"
)

// Bulk import and export of the registry: one identity at a time
// (ImportIdentity, for bulk POST /devices and import jobs), and import and
// export jobs (POST /jobs/create) that read devices.txt from, or write it
// to, a blob container the caller names by a SAS URI. A hub runs one such
// job at a time; the node that accepts a job runs it, renewing its lease
// as it goes, and a job whose lease runs out (its node stopped) is failed
// when it is next looked at.

const (
	// importExportLease is how long a job's lease lasts; the runner
	// renews it (and writes its progress) every importExportRenew.
	importExportLease = 30 * time.Second
	importExportRenew = 2 * time.Second
	// importWorkers identities are imported, and exportWorkers records
	// read for an export, at once.
	importWorkers = 16
	exportWorkers = 16
	// maxImportLine bounds a line of devices.txt.
	maxImportLine = 1 << 20
)

// ImportIdentity applies one entry of devices.txt or of a bulk request,
// as its importMode says (mode when it has none): create, createOrUpdate,
// update, updateIfMatchETag, createOrUpdateIfMatchETag, delete,
// deleteIfMatchETag, updateTwin, updateTwinIfMatchETag, in any case (the
// SDKs spell them differently). A new identity is stored with its twin
// in one write.
func (h *Hub) ImportIdentity(ctx context.Context, e *twinhub.ExportImportDevice, mode string) error {
	k := e.Key()
	if e.ImportMode != "" {
		mode = e.ImportMode
	}
	ifMatch := ""
	switch mode := strings.ToLower(mode); mode {
	case "create":
		return h.importCreate(ctx, e)
	case "createorupdate", "createorupdateifmatchetag":
		err := h.importCreate(ctx, e)
		var te *twinhub.Error
		if !errors.As(err, &te) || te.Status != http.StatusConflict {
			return err
		}
		if mode == "createorupdateifmatchetag" {
			ifMatch = e.ETag
		}
		if err := h.importUpdate(ctx, e, ifMatch); err != nil {
			return err
		}
		return h.importTwin(ctx, k, e, "", false)
	case "updatetwinifmatchetag":
		if e.TwinETag == "" {
			return twinhub.ErrInvalid("importMode UpdateTwinIfMatchETag needs twinETag")
		}
		return h.importTwin(ctx, k, e, e.TwinETag, true)
	case "updatetwin":
		return h.importTwin(ctx, k, e, "", true)
	case "updateifmatchetag", "update":
		if mode == "updateifmatchetag" {
			if ifMatch = e.ETag; ifMatch == "" {
				return twinhub.ErrInvalid("importMode updateIfMatchETag needs eTag")
			}
		}
		// Unlike createOrUpdate, update fails for identities that do not
		// exist, as in IoT Hub.
		if err := h.importUpdate(ctx, e, ifMatch); err != nil {
			return err
		}
		return h.importTwin(ctx, k, e, "", false)
	case "deleteifmatchetag", "delete":
		if mode == "deleteifmatchetag" {
			if ifMatch = e.ETag; ifMatch == "" {
				return twinhub.ErrInvalid("importMode deleteIfMatchETag needs eTag")
			}
		}
		if k.ModuleID != "" {
			return h.DeleteModule(ctx, k.DeviceID, k.ModuleID, ifMatch)
		}
		return h.DeleteDevice(ctx, k.DeviceID, ifMatch)
	}
	return twinhub.ErrInvalid("importMode %q is not supported", mode)
}

// importCreate creates an entry's identity with its twin.
func (h *Hub) importCreate(ctx context.Context, e *twinhub.ExportImportDevice) error {
	u, err := e.TwinUpdate()
	if err != nil {
		return err
	}
	if e.ModuleID != "" {
		_, err = h.CreateModuleWithTwin(ctx, e.Module(), u)
	} else {
		_, err = h.CreateDeviceWithTwin(ctx, e.Device(), u)
	}
	return err
}

func (h *Hub) importUpdate(ctx context.Context, e *twinhub.ExportImportDevice, ifMatch string) error {
	var err error
	if e.ModuleID != "" {
		_, err = h.UpdateModule(ctx, e.Module(), ifMatch)
	} else {
		_, err = h.UpdateDevice(ctx, e.Device(), ifMatch)
	}
	return err
}

// importTwin applies the tags and desired properties an entry carries:
// merged into the twin, or with replace (the updateTwin modes) replacing
// the parts the entry names.
func (h *Hub) importTwin(ctx context.Context, k twinhub.Key, e *twinhub.ExportImportDevice, ifMatch string, replace bool) error {
	u, err := e.TwinUpdate()
	if err != nil || u == nil {
		return err
	}
	u.Replace = replace
	_, err = h.UpdateTwin(ctx, k, *u, ifMatch)
	return err
}

// leaseFromNow is a running job's lease, renewed now.
func leaseFromNow() twinhub.Time {
	return twinhub.Time{Time: time.Now().UTC().Add(importExportLease)}
}

// newJobID is a random id in the form of a GUID, as IoT Hub names the jobs
// it creates.
func newJobID() string {
	x := randomHex(16)
	variant := "89ab"[x[16]%4 : x[16]%4+1] // RFC 4122's variant
	return x[:8] + "-" + x[8:12] + "-4" + x[13:16] + "-" + variant + x[17:20] + "-" + x[20:]
}

func errNoImportExport() *twinhub.Error {
	return twinhub.Errorf(http.StatusServiceUnavailable, "ServiceUnavailable", "import and export jobs need the job store and blob access, which this hub was started without")
}

func errImportExportNotFound(id string) *twinhub.Error {
	return twinhub.Errorf(http.StatusNotFound, "JobNotFound", "import/export job %s was not found", id)
}

// CreateImportExportJob checks a job, stores it as the hub's active one
// (ErrImportExportBusy while another is active) and starts it on this
// node. It answers the job as enqueued.
func (h *Hub) CreateImportExportJob(ctx context.Context, j twinhub.ImportExportJob) (*twinhub.ImportExportJob, error) {
	if h.ieJobs == nil || h.containers == nil {
		return nil, errNoImportExport()
	}
	if err := twinhub.ValidateImportExportJob(&j); err != nil {
		return nil, err
	}
	var in twinhub.BlobContainer
	if j.Type == twinhub.ImportExportImport {
		c, err := h.containers.Open(j.InputBlobContainerURI)
		if err != nil {
			return nil, twinhub.ErrInvalid("inputBlobContainerUri: %v", err)
		}
		in = c
	}
	out, err := h.containers.Open(j.OutputBlobContainerURI)
	if err != nil {
		return nil, twinhub.ErrInvalid("outputBlobContainerUri: %v", err)
	}
	// A job left active by a node that stopped is failed first.
	if _, err := h.ImportExportJobs(ctx); err != nil {
		return nil, err
	}
	j.JobID = newJobID()
	j.Lease = leaseFromNow()
	if err := h.ieJobs.CreateImportExportJob(ctx, &j); err != nil {
		return nil, twinhub.AsError(err)
	}
	created := j
	go h.runImportExportJob(h.life, j.JobID, in, out)
	return &created, nil
}

// GetImportExportJob reads a job.
func (h *Hub) GetImportExportJob(ctx context.Context, id string) (*twinhub.ImportExportJob, error) {
	if h.ieJobs == nil {
		return nil, errNoImportExport()
	}
	j, rev, err := h.ieJobs.ImportExportJob(ctx, id)
	if errors.Is(err, twinhub.ErrNotFound) {
		return nil, errImportExportNotFound(id)
	} else if err != nil {
		return nil, err
	}
	return h.expireImportExportJob(ctx, j, rev)
}

// ImportExportJobs lists every import and export job, oldest first.
func (h *Hub) ImportExportJobs(ctx context.Context) ([]*twinhub.ImportExportJob, error) {
	if h.ieJobs == nil {
		return nil, errNoImportExport()
	}
	jobs, err := h.ieJobs.ImportExportJobs(ctx)
	if err != nil {
		return nil, err
	}
	for i, j := range jobs {
		if !j.Done() && time.Now().After(j.Lease.Time) {
			if jobs[i], err = h.GetImportExportJob(ctx, j.JobID); err != nil {
				return nil, err
			}
		}
	}
	return jobs, nil
}

// expireImportExportJob fails a job that is not done and whose lease ran
// out: the node that ran it stopped. It returns the job as it now is.
func (h *Hub) expireImportExportJob(ctx context.Context, j *twinhub.ImportExportJob, rev uint64) (*twinhub.ImportExportJob, error) {
	if j.Done() || !time.Now().After(j.Lease.Time) {
		return j, nil
	}
	return h.changeImportExportJob(ctx, j.JobID, func(j *twinhub.ImportExportJob) bool {
		if j.Done() || !time.Now().After(j.Lease.Time) {
			return false
		}
		h.endImportExportJob(j, twinhub.ImportExportFailed, "the hub node that ran the job stopped before it ended; create the job again")
		return true
	})
}

// CancelImportExportJob cancels a job that has not ended; its runner
// stops at its next lease renewal. A job that has ended is answered as
// it is.
func (h *Hub) CancelImportExportJob(ctx context.Context, id string) (*twinhub.ImportExportJob, error) {
	if _, err := h.GetImportExportJob(ctx, id); err != nil {
		return nil, err
	}
	return h.changeImportExportJob(ctx, id, func(j *twinhub.ImportExportJob) bool {
		if j.Done() {
			return false
		}
		h.endImportExportJob(j, twinhub.ImportExportCancelled, "")
		return true
	})
}

// endImportExportJob sets a job's final status.
func (h *Hub) endImportExportJob(j *twinhub.ImportExportJob, status, reason string) {
	now := twinhub.Now()
	j.Status, j.EndTimeUTC = status, &now
	if reason != "" {
		j.FailureReason = &reason
	}
	if status == twinhub.ImportExportCompleted {
		j.Progress = 100
	}
}

// changeImportExportJob applies change to the stored job, from a fresh
// read on a conflict; change returns false to leave it as it is.
func (h *Hub) changeImportExportJob(ctx context.Context, id string, change func(*twinhub.ImportExportJob) bool) (*twinhub.ImportExportJob, error) {
	for {
		j, rev, err := h.ieJobs.ImportExportJob(ctx, id)
		if errors.Is(err, twinhub.ErrNotFound) {
			return nil, errImportExportNotFound(id)
		} else if err != nil {
			return nil, err
		}
		if !change(j) {
			return j, nil
		}
		if _, err := h.ieJobs.UpdateImportExportJob(ctx, j, rev); errors.Is(err, twinhub.ErrConflict) {
			continue
		} else if err != nil {
			return nil, err
		}
		return j, nil
	}
}

// ieProgress is what a running job has done, counted by its workers.
type ieProgress struct {
	mu          sync.Mutex
	done, total int
}

func (p *ieProgress) setTotal(n int) {
	p.mu.Lock()
	p.total = n
	p.mu.Unlock()
}

func (p *ieProgress) add(n int) {
	p.mu.Lock()
	p.done += n
	p.mu.Unlock()
}

func (p *ieProgress) percent() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.total == 0 {
		return 0
	}
	return min(99, p.done*100/p.total)
}

// runImportExportJob runs a job this node created: running, then the
// import or export, renewing the lease with the progress meanwhile, and
// its end (completed, failed with the reason, or left cancelled).
func (h *Hub) runImportExportJob(ctx context.Context, id string, in, out twinhub.BlobContainer) {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var progress ieProgress
	j, err := h.changeImportExportJob(ctx, id, func(j *twinhub.ImportExportJob) bool {
		if j.Status != twinhub.ImportExportEnqueued {
			return false
		}
		now := twinhub.Now()
		j.Status, j.StartTimeUTC, j.Lease = twinhub.ImportExportRunning, &now, leaseFromNow()
		return true
	})
	if err != nil || j.Status != twinhub.ImportExportRunning {
		if err != nil && ctx.Err() == nil {
			h.log.Warn("starting an import/export job", "job", id, "err", err)
		}
		return
	}
	// Renew the lease and write the progress; stop when the job was
	// cancelled meanwhile.
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		every(ctx, importExportRenew, func() bool {
			j, err := h.changeImportExportJob(ctx, id, func(j *twinhub.ImportExportJob) bool {
				if j.Done() {
					return false
				}
				j.Progress, j.Lease = progress.percent(), leaseFromNow()
				return true
			})
			if err == nil && j.Done() {
				stop() // cancelled
				return false
			}
			return true
		})
	}()
	if j.Type == twinhub.ImportExportExport {
		err = h.exportJob(ctx, j, out, &progress)
	} else {
		err = h.importJob(ctx, j, in, out, &progress)
	}
	stop()
	<-renewed
	end := context.WithoutCancel(ctx)
	_, cerr := h.changeImportExportJob(end, id, func(j *twinhub.ImportExportJob) bool {
		if j.Done() {
			return false // cancelled
		}
		switch {
		case h.life.Err() != nil:
			h.endImportExportJob(j, twinhub.ImportExportFailed, "the hub node that ran the job stopped before it ended; create the job again")
		case err != nil:
			h.endImportExportJob(j, twinhub.ImportExportFailed, err.Error())
		default:
			h.endImportExportJob(j, twinhub.ImportExportCompleted, "")
		}
		return true
	})
	if cerr != nil {
		h.log.Warn("ending an import/export job", "job", id, "err", cerr)
	}
}

// exportJob writes every device (parents before their children) and then
// every module, as devices.txt lines, to the output blob; with
// includeConfigurations, every configuration to its blob too.
func (h *Hub) exportJob(ctx context.Context, j *twinhub.ImportExportJob, out twinhub.BlobContainer, progress *ieProgress) error {
	if err := h.catchUp(ctx); err != nil {
		return err
	}
	devices := h.index.ListDevices(0)
	lines := make([]twinhub.ExportImportDevice, len(devices))
	for i, d := range devices {
		lines[i] = twinhub.ExportImportDevice{ID: d.DeviceID, Capabilities: &d.Capabilities, DeviceScope: d.DeviceScope, ParentScopes: d.ParentScopes}
	}
	var keys []twinhub.Key
	for _, phase := range twinhub.ImportOrder(lines) {
		for _, i := range phase {
			keys = append(keys, twinhub.DeviceKey(lines[i].ID))
		}
	}
	for _, d := range devices {
		for _, m := range h.index.ListModules(d.DeviceID) {
			keys = append(keys, twinhub.ModuleKey(m.DeviceID, m.ModuleID))
		}
	}
	progress.setTotal(len(keys))
	err := h.writeBlob(ctx, out, j.OutputBlobName, func(w *bufio.Writer) error {
		// Records are read exportWorkers at once, a chunk at a time, and
		// written in order.
		const chunk = 1024
		recs := make([]*twinhub.Record, chunk)
		for start := 0; start < len(keys); start += chunk {
			part := keys[start:min(len(keys), start+chunk)]
			if err := h.forEachKey(ctx, part, exportWorkers, func(i int, k twinhub.Key) error {
				// From the store, not through the record cache: an export
				// reads every record once and would push out the hot ones.
				rec, _, err := h.store.Get(ctx, k)
				if errors.Is(err, twinhub.ErrNotFound) {
					recs[i] = nil // deleted meanwhile
					return nil
				} else if err != nil {
					return err
				}
				recs[i] = rec
				return nil
			}); err != nil {
				return err
			}
			for i := range part {
				if recs[i] == nil {
					continue
				}
				line, err := recs[i].ExportLine(j.ExcludeKeysInExport)
				if err != nil {
					return err
				}
				if err := writeJSONLine(w, line); err != nil {
					return err
				}
			}
			progress.add(len(part))
		}
		return nil
	})
	if err != nil || !j.IncludeConfigurations {
		return err
	}
	configs, err := h.ListConfigurations(ctx, 0)
	if err != nil {
		return err
	}
	return h.writeBlob(ctx, out, j.ConfigurationsBlobName, func(w *bufio.Writer) error {
		for _, c := range configs {
			if err := writeJSONLine(w, c); err != nil {
				return err
			}
		}
		return nil
	})
}

// importJob applies the lines of the input blob in ImportOrder's phases
// (createOrUpdate where a line names no mode), importWorkers at once, and
// writes the lines that failed to importErrors.log in the output
// container (an empty log when none did): the job completes either way,
// as on IoT Hub. With includeConfigurations, the configurations blob is
// put too (created, or replaced).
func (h *Hub) importJob(ctx context.Context, j *twinhub.ImportExportJob, in, out twinhub.BlobContainer, progress *ieProgress) error {
	r, err := in.Read(ctx, j.InputBlobName)
	if errors.Is(err, twinhub.ErrNotFound) {
		return fmt.Errorf("the input container has no blob %s", j.InputBlobName)
	} else if err != nil {
		return err
	}
	var entries []twinhub.ExportImportDevice
	var failures []twinhub.ImportError
	err = readLines(r, func(n int, line []byte) {
		var e twinhub.ExportImportDevice
		if err := json.Unmarshal(line, &e); err != nil || e.ID == "" {
			why := "not a JSON object with an id"
			if err != nil {
				why = err.Error()
			}
			failures = append(failures, twinhub.ImportError{ErrorCode: 400004, ErrorStatus: fmt.Sprintf("Invalid device format in line %d: %s", n, why)})
			return
		}
		entries = append(entries, e)
	})
	r.Close()
	if err != nil {
		return fmt.Errorf("reading %s: %w", j.InputBlobName, err)
	}
	progress.setTotal(len(entries))
	var mu sync.Mutex
	for _, phase := range twinhub.ImportOrder(entries) {
		keys := make([]twinhub.Key, len(phase))
		for i, p := range phase {
			keys[i] = entries[p].Key()
		}
		err := h.forEachKey(ctx, keys, importWorkers, func(i int, _ twinhub.Key) error {
			e := &entries[phase[i]]
			if err := h.ImportIdentity(ctx, e, "createOrUpdate"); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				te := twinhub.AsError(err)
				mu.Lock()
				failures = append(failures, twinhub.ImportError{DeviceID: e.ID, ModuleID: e.ModuleID, ErrorCode: te.Number(), ErrorStatus: te.Code + ": " + te.Message})
				mu.Unlock()
			}
			progress.add(1)
			return nil
		})
		if err != nil {
			return err
		}
	}
	err = h.writeBlob(ctx, out, twinhub.ImportErrorsBlobName, func(w *bufio.Writer) error {
		for _, f := range failures {
			if err := writeJSONLine(w, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || !j.IncludeConfigurations {
		return err
	}
	return h.importConfigurations(ctx, in, j.ConfigurationsBlobName)
}

// importConfigurations puts every configuration of the blob (one JSON a
// line): created, or updated where one of its id exists (whose content
// cannot change, as over REST); a blob that is not there imports none.
func (h *Hub) importConfigurations(ctx context.Context, in twinhub.BlobContainer, name string) error {
	r, err := in.Read(ctx, name)
	if errors.Is(err, twinhub.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	defer r.Close()
	var configs []twinhub.Configuration
	var bad error
	err = readLines(r, func(n int, line []byte) {
		var c twinhub.Configuration
		if err := json.Unmarshal(line, &c); err != nil && bad == nil {
			bad = fmt.Errorf("%s line %d: %v", name, n, err)
		}
		configs = append(configs, c)
	})
	if err == nil {
		err = bad
	}
	if err != nil {
		return err
	}
	for _, c := range configs {
		_, err := h.PutConfiguration(ctx, c, "")
		if te := twinhub.AsError(err); err != nil && te.Status == http.StatusConflict {
			_, err = h.PutConfiguration(ctx, c, "*")
		}
		if err != nil {
			return fmt.Errorf("configuration %s: %v", c.ID, twinhub.AsError(err).Message)
		}
	}
	return nil
}

// readLines calls fn with each line of r that is not blank (numbered
// from 1), without its line end (\n or \r\n).
func readLines(r io.Reader, fn func(n int, line []byte)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxImportLine)
	for n := 1; sc.Scan(); n++ {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			fn(n, line)
		}
	}
	return sc.Err()
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(w *bufio.Writer, v any) error {
	b, err := twinhub.MarshalNoHTML(v)
	if err != nil {
		return err
	}
	w.Write(b)
	return w.WriteByte('\n')
}

// writeBlob stores what write writes as blob name of c, streamed.
func (h *Hub) writeBlob(ctx context.Context, c twinhub.BlobContainer, name string, write func(w *bufio.Writer) error) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := c.Write(ctx, name, pr)
		pr.CloseWithError(err) // unblocks the writer if the upload failed
		done <- err
	}()
	w := bufio.NewWriterSize(pw, 64<<10)
	err := write(w)
	if err == nil {
		err = w.Flush()
	}
	pw.CloseWithError(err)
	if uerr := <-done; uerr != nil {
		return fmt.Errorf("writing %s: %w", name, uerr)
	}
	return err
}
