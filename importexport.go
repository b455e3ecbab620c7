package twinhub

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
)

// Bulk import and export of the identity registry: IoT Hub's devices.txt
// (one ExportImportDevice a line), read and written by bulk POST /devices,
// by `twinhub device import|export`, and by import and export jobs
// (POST /jobs/create), which take it from and put it in a blob container
// the caller names by a SAS URI.

// ExportImportDevice is one identity of devices.txt and of a bulk
// registry request: a device, or a module when ModuleID is set.
type ExportImportDevice struct {
	ID           string  `json:"id"`
	ModuleID     string  `json:"moduleId,omitempty"`
	ETag         string  `json:"eTag,omitempty"`
	ImportMode   string  `json:"importMode,omitempty"`
	Status       string  `json:"status,omitempty"`
	StatusReason *string `json:"statusReason,omitempty"`
	// Authentication is null in an export without keys.
	Authentication *Authentication `json:"authentication"`
	TwinETag       string          `json:"twinETag,omitempty"`
	// Tags and Properties ({"desired": ..., "reported": ...}) are the
	// twin's, as JSON.
	Tags         json.RawMessage `json:"tags,omitempty"`
	Properties   json.RawMessage `json:"properties,omitempty"`
	Capabilities *Capabilities   `json:"capabilities,omitempty"`
	DeviceScope  *string         `json:"deviceScope,omitempty"`
	ParentScopes Scopes          `json:"parentScopes,omitempty"`
}

// ExportLine is the record as a line of an export: the identity with its
// keys (authentication null when excludeKeys), and its twin's tags,
// desired and reported properties with their $version, without metadata.
func (r *Record) ExportLine(excludeKeys bool) (ExportImportDevice, error) {
	k := r.Key()
	e := ExportImportDevice{ID: k.DeviceID, ModuleID: k.ModuleID, ETag: IdentityETag(r.IdentityVersion), TwinETag: TwinETag(r.Twin.Version)}
	var auth Authentication
	if d := r.DeviceCopy(); d != nil {
		e.Status, e.StatusReason, auth = d.Status, d.StatusReason, d.Authentication
		e.Capabilities, e.DeviceScope, e.ParentScopes = &d.Capabilities, d.DeviceScope, d.ParentScopes
		if e.StatusReason == nil {
			e.StatusReason = new(string) // IoT Hub writes "" for none
		}
	} else {
		auth = r.ModuleCopy().Authentication
	}
	if !excludeKeys {
		e.Authentication = &auth
	}
	tags := r.Twin.Tags
	if tags == nil {
		tags = map[string]any{}
	}
	var err error
	if e.Tags, err = MarshalNoHTML(tags); err != nil {
		return e, err
	}
	e.Properties, err = MarshalNoHTML(r.DeviceTwinDoc())
	return e, err
}

// Key names the identity.
func (e *ExportImportDevice) Key() Key { return Key{DeviceID: e.ID, ModuleID: e.ModuleID} }

// Device is the device identity the entry asks for.
func (e *ExportImportDevice) Device() Device {
	d := Device{DeviceID: e.ID, Status: e.Status, StatusReason: e.StatusReason, DeviceScope: e.DeviceScope, ParentScopes: e.ParentScopes}
	if e.Authentication != nil {
		d.Authentication = *e.Authentication
	}
	if e.Capabilities != nil {
		d.Capabilities = *e.Capabilities
	}
	return d
}

// Module is the module identity the entry asks for.
func (e *ExportImportDevice) Module() Module {
	m := Module{DeviceID: e.ID, ModuleID: e.ModuleID}
	if e.Authentication != nil {
		m.Authentication = *e.Authentication
	}
	return m
}

// TwinUpdate is the change the entry makes to its twin (tags and desired
// properties, checked as a twin PATCH; reported properties are the
// device's and are not imported), nil when it names none.
func (e *ExportImportDevice) TwinUpdate() (*TwinUpdate, error) {
	if len(e.Tags) == 0 && len(e.Properties) == 0 {
		return nil, nil
	}
	doc := map[string]json.RawMessage{}
	if len(e.Tags) > 0 {
		doc["tags"] = e.Tags
	}
	if len(e.Properties) > 0 {
		var props map[string]json.RawMessage
		if err := json.Unmarshal(e.Properties, &props); err != nil {
			return nil, ErrInvalid("properties of %s: %v", e.Key(), err)
		}
		delete(props, "reported")
		if len(props) > 0 {
			doc["properties"], _ = json.Marshal(props)
		}
	}
	if len(doc) == 0 {
		return nil, nil
	}
	body, _ := json.Marshal(doc)
	u, err := ParseTwinUpdate(body, false)
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// ImportOrder groups entries (by index) into the phases an import runs
// one after the other, each entry's parent or device being in an earlier
// phase: edge devices by their depth below the top of their hierarchy,
// then the other devices, then the modules. Export writes lines in the
// same order.
func ImportOrder(entries []ExportImportDevice) [][]int {
	const leaves, modules = maxEdgeDepth + 1, maxEdgeDepth + 2
	byScope := map[string]int{}
	for i, e := range entries {
		if e.ModuleID == "" && e.Capabilities != nil && e.Capabilities.IoTEdge && e.DeviceScope != nil {
			byScope[*e.DeviceScope] = i
		}
	}
	phase := make([]int, len(entries))
	for i, e := range entries {
		switch {
		case e.ModuleID != "":
			phase[i] = modules
		case e.Capabilities == nil || !e.Capabilities.IoTEdge:
			phase[i] = leaves
		default:
			for p := e; len(p.ParentScopes) > 0 && phase[i] < maxEdgeDepth; phase[i]++ {
				j, ok := byScope[p.ParentScopes[0]]
				if !ok {
					break
				}
				p = entries[j]
			}
		}
	}
	groups := map[int][]int{}
	for i, p := range phase {
		groups[p] = append(groups[p], i)
	}
	keys := make([]int, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([][]int, len(keys))
	for i, k := range keys {
		out[i] = groups[k]
	}
	return out
}

// maxEdgeDepth bounds the depth ImportOrder follows parents to (IoT Edge
// nests five levels; a cycle in a file stops here).
const maxEdgeDepth = 16

// Import and export jobs (JobProperties of /jobs/create).
const (
	ImportExportExport = "export"
	ImportExportImport = "import"

	// The statuses of an import or export job.
	ImportExportEnqueued  = "enqueued"
	ImportExportRunning   = "running"
	ImportExportCompleted = "completed" // every line was handled; failed ones are in importErrors.log
	ImportExportFailed    = "failed"    // the job itself could not finish: failureReason
	ImportExportCancelled = "cancelled"

	// The blobs' default names.
	DevicesBlobName        = "devices.txt"
	ConfigurationsBlobName = "configurations.txt"
	ImportErrorsBlobName   = "importErrors.log"
)

// ImportExportJob is an import or export job as POST /jobs/create, GET
// /jobs[/{id}] and DELETE /jobs/{id} show it.
type ImportExportJob struct {
	JobID                     string  `json:"jobId"`
	StartTimeUTC              *Time   `json:"startTimeUtc,omitempty"`
	EndTimeUTC                *Time   `json:"endTimeUtc,omitempty"`
	Type                      string  `json:"type"`
	Status                    string  `json:"status"`
	Progress                  int     `json:"progress"`
	InputBlobContainerURI     string  `json:"inputBlobContainerUri,omitempty"`
	InputBlobName             string  `json:"inputBlobName,omitempty"`
	OutputBlobContainerURI    string  `json:"outputBlobContainerUri"`
	OutputBlobName            string  `json:"outputBlobName,omitempty"`
	ExcludeKeysInExport       bool    `json:"excludeKeysInExport"`
	StorageAuthenticationType string  `json:"storageAuthenticationType,omitempty"`
	FailureReason             *string `json:"failureReason"`
	IncludeConfigurations     bool    `json:"includeConfigurations"`
	ConfigurationsBlobName    string  `json:"configurationsBlobName,omitempty"`
	// Lease is until when the node running the job is known to be at
	// it (it renews it as it goes): an active job whose lease has run
	// out was left by a node that stopped, and is failed. Kept by the
	// store, not shown.
	Lease Time `json:"-"`
}

// Done says whether the job has ended, one way or another.
func (j *ImportExportJob) Done() bool {
	return j.Status == ImportExportCompleted || j.Status == ImportExportFailed || j.Status == ImportExportCancelled
}

// ValidateImportExportJob checks a new job as IoT Hub does and fills in
// the defaults. What the SDKs send for the hub to fill (jobId, status,
// progress, times) is ignored.
func ValidateImportExportJob(j *ImportExportJob) error {
	j.JobID, j.Status, j.Progress, j.StartTimeUTC, j.EndTimeUTC, j.FailureReason = "", ImportExportEnqueued, 0, nil, nil, nil
	j.Type = strings.ToLower(j.Type)
	switch j.Type {
	case ImportExportExport:
		j.InputBlobContainerURI, j.InputBlobName = "", ""
	case ImportExportImport:
		if j.InputBlobContainerURI == "" {
			return ErrInvalid("an import job needs inputBlobContainerUri")
		}
		if j.InputBlobName == "" {
			j.InputBlobName = DevicesBlobName
		}
		j.ExcludeKeysInExport = false
	case "":
		return ErrInvalid("the job's type is missing: export or import")
	default:
		return ErrInvalid("jobs of type %q are not supported by /jobs/create: export or import", j.Type)
	}
	if j.OutputBlobContainerURI == "" {
		return ErrInvalid("%s jobs need outputBlobContainerUri", j.Type)
	}
	if j.OutputBlobName == "" && j.Type == ImportExportExport {
		j.OutputBlobName = DevicesBlobName
	}
	switch strings.ToLower(j.StorageAuthenticationType) {
	case "", "keybased":
		j.StorageAuthenticationType = "keyBased"
	case "identitybased":
		return Errorf(http.StatusBadRequest, "ArgumentInvalid", "storageAuthenticationType identityBased needs a managed identity, which twinhub has not: give the containers' SAS URIs (keyBased)")
	default:
		return ErrInvalid("storageAuthenticationType %q: keyBased or identityBased", j.StorageAuthenticationType)
	}
	if j.IncludeConfigurations && j.ConfigurationsBlobName == "" {
		j.ConfigurationsBlobName = ConfigurationsBlobName
	}
	return nil
}

// ErrImportExportBusy is IoT Hub's answer to a second import or export
// job while one is active: one at a time for a hub.
func ErrImportExportBusy(active string) *Error {
	return Errorf(http.StatusForbidden, "JobQuotaExceeded", "import or export job %s is active: a hub runs one at a time", active)
}

// ImportError is one line of importErrors.log: an identity that an
// import job could not apply (DeviceID empty for a line that is not one).
type ImportError struct {
	DeviceID    string `json:"deviceId,omitempty"`
	ModuleID    string `json:"moduleId,omitempty"`
	ErrorCode   int    `json:"errorCode"`
	ErrorStatus string `json:"errorStatus"`
}

// BlobContainer is a blob container that an import or export job reads
// from or writes to, reached by the SAS URI the job names.
type BlobContainer interface {
	// Read opens blob name: ErrNotFound when it does not exist.
	Read(ctx context.Context, name string) (io.ReadCloser, error)
	// Write stores what r gives as blob name, replacing it.
	Write(ctx context.Context, name string, r io.Reader) error
}

// BlobContainers opens the container of a SAS URI; an error says why the
// URI is not one (the hub answers it as a 400).
type BlobContainers interface {
	Open(uri string) (BlobContainer, error)
}

// ImportExportJobStore keeps import and export jobs, and which one is
// active.
type ImportExportJobStore interface {
	// CreateImportExportJob stores a new job as the active one, unless a
	// job is active already (ErrImportExportBusy with its id). A job
	// stays active until it is done.
	CreateImportExportJob(ctx context.Context, j *ImportExportJob) error
	// ImportExportJob reads a job and its revision: ErrNotFound when
	// there is none.
	ImportExportJob(ctx context.Context, id string) (*ImportExportJob, uint64, error)
	// UpdateImportExportJob replaces the job if its revision is still
	// rev (ErrConflict otherwise) and returns the new revision; once
	// the job is done it is no longer the active one.
	UpdateImportExportJob(ctx context.Context, j *ImportExportJob, rev uint64) (uint64, error)
	// ImportExportJobs returns every job, oldest first.
	ImportExportJobs(ctx context.Context) ([]*ImportExportJob, error)
	// DeleteImportExportJob removes a job that is done.
	DeleteImportExportJob(ctx context.Context, id string) error
}
