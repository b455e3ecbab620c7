package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/twinhub/twinhub"
)

// maxBulkIdentities is IoT Hub's limit on one bulk registry request.
const maxBulkIdentities = 100

// importIdentity is one entry of POST /devices (ExportImportDevice in
// service.json): a device, or a module when moduleId is set.
type importIdentity struct {
	ID             string                 `json:"id"`
	ModuleID       string                 `json:"moduleId"`
	ETag           string                 `json:"eTag"`
	ImportMode     string                 `json:"importMode"`
	Status         string                 `json:"status"`
	StatusReason   *string                `json:"statusReason"`
	Authentication twinhub.Authentication `json:"authentication"`
	TwinETag       string                 `json:"twinETag"`
	Tags           json.RawMessage        `json:"tags"`
	Properties     json.RawMessage        `json:"properties"`
	Capabilities   twinhub.Capabilities   `json:"capabilities"`
	DeviceScope    *string                `json:"deviceScope"`
	ParentScopes   twinhub.Scopes         `json:"parentScopes"`
}

// device is the device identity an entry asks for.
func (e importIdentity) device() twinhub.Device {
	return twinhub.Device{DeviceID: e.ID, Status: e.Status, StatusReason: e.StatusReason, Authentication: e.Authentication,
		Capabilities: e.Capabilities, DeviceScope: e.DeviceScope, ParentScopes: e.ParentScopes}
}

type bulkError struct {
	DeviceID     string `json:"deviceId"`
	ModuleID     string `json:"moduleId,omitempty"`
	ErrorCode    int    `json:"errorCode"`
	ErrorStatus  string `json:"errorStatus"`
	OperationKey string `json:"operationKey,omitempty"`
}

type bulkResult struct {
	IsSuccessful bool        `json:"isSuccessful"`
	Errors       []bulkError `json:"errors"`
	Warnings     []bulkError `json:"warnings"`
}

// bulkDevices applies up to 100 registry writes. Each entry succeeds or
// fails on its own, as in IoT Hub; the reply lists the failures and is a
// 400 when there are any.
func (a *API) bulkDevices(r *http.Request) (int, any, error) {
	var entries []importIdentity
	if err := readJSON(r, &entries); err != nil {
		return 0, nil, err
	}
	if len(entries) == 0 || len(entries) > maxBulkIdentities {
		return 0, nil, twinhub.ErrInvalid("a bulk request holds 1 to %d identities, not %d", maxBulkIdentities, len(entries))
	}
	res := bulkResult{IsSuccessful: true, Errors: []bulkError{}, Warnings: []bulkError{}}
	for _, e := range entries {
		if err := a.importOne(r, e); err != nil {
			te := twinhub.AsError(err)
			res.IsSuccessful = false
			res.Errors = append(res.Errors, bulkError{DeviceID: e.ID, ModuleID: e.ModuleID, ErrorCode: te.Number(), ErrorStatus: te.Code + ": " + te.Message})
		}
	}
	if !res.IsSuccessful {
		return http.StatusBadRequest, res, nil
	}
	return http.StatusOK, res, nil
}

func (a *API) importOne(r *http.Request, e importIdentity) error {
	ctx := r.Context()
	k := twinhub.Key{DeviceID: e.ID, ModuleID: e.ModuleID}
	ifMatch := ""
	// The SDKs spell modes differently (Node and Go send "Update", the
	// REST reference "update"): IoT Hub takes them in any case.
	switch strings.ToLower(e.ImportMode) {
	case "create", "":
		// A new identity is stored with its twin in one write.
		return a.createIdentity(r, e)
	case "createorupdate", "createorupdateifmatchetag":
		// Create the identity, or update it when it exists.
		err := a.createIdentity(r, e)
		var te *twinhub.Error
		if !errors.As(err, &te) || te.Status != http.StatusConflict {
			return err
		}
		if strings.HasSuffix(strings.ToLower(e.ImportMode), "ifmatchetag") {
			ifMatch = e.ETag
		}
		if err := a.updateIdentity(r, e, ifMatch); err != nil {
			return err
		}
		return a.importTwin(r, k, e, "", false)
	case "updatetwinifmatchetag":
		if e.TwinETag == "" {
			return twinhub.ErrInvalid("importMode UpdateTwinIfMatchETag needs twinETag")
		}
		return a.importTwin(r, k, e, e.TwinETag, true)
	case "updatetwin":
		return a.importTwin(r, k, e, "", true)
	case "updateifmatchetag":
		ifMatch = e.ETag
		if ifMatch == "" {
			return twinhub.ErrInvalid("importMode updateIfMatchETag needs eTag")
		}
		fallthrough
	case "update":
		// Unlike createOrUpdate, update fails for identities that do not
		// exist, as in IoT Hub.
		if err := a.updateIdentity(r, e, ifMatch); err != nil {
			return err
		}
		return a.importTwin(r, k, e, "", false)
	case "deleteifmatchetag":
		if e.ETag == "" {
			return twinhub.ErrInvalid("importMode deleteIfMatchETag needs eTag")
		}
		ifMatch = e.ETag
		fallthrough
	case "delete":
		if k.ModuleID != "" {
			return a.hub.DeleteModule(ctx, e.ID, e.ModuleID, ifMatch)
		}
		return a.hub.DeleteDevice(ctx, e.ID, ifMatch)
	}
	return twinhub.ErrInvalid("importMode %q is not supported", e.ImportMode)
}

// createIdentity creates an entry's identity with its twin.
func (a *API) createIdentity(r *http.Request, e importIdentity) error {
	u, err := e.twin()
	if err != nil {
		return err
	}
	if e.ModuleID != "" {
		_, err := a.hub.CreateModuleWithTwin(r.Context(), twinhub.Module{DeviceID: e.ID, ModuleID: e.ModuleID, Authentication: e.Authentication}, u)
		return err
	}
	_, err = a.hub.CreateDeviceWithTwin(r.Context(), e.device(), u)
	return err
}

func (a *API) updateIdentity(r *http.Request, e importIdentity, ifMatch string) error {
	var err error
	if e.ModuleID != "" {
		_, err = a.hub.UpdateModule(r.Context(), twinhub.Module{DeviceID: e.ID, ModuleID: e.ModuleID, Authentication: e.Authentication}, ifMatch)
	} else {
		_, err = a.hub.UpdateDevice(r.Context(), e.device(), ifMatch)
	}
	return err
}

// importTwin applies the tags and desired properties an entry carries:
// merged into the twin, or with replace (the updateTwin modes) replacing
// the parts the entry names.
func (a *API) importTwin(r *http.Request, k twinhub.Key, e importIdentity, ifMatch string, replace bool) error {
	u, err := e.twin()
	if err != nil || u == nil {
		return err
	}
	u.Replace = replace
	_, err = a.hub.UpdateTwin(r.Context(), k, *u, ifMatch)
	return err
}

// twin is the change an entry makes to its twin (tags and desired
// properties, checked as a twin PATCH), nil when it names none.
func (e importIdentity) twin() (*twinhub.TwinUpdate, error) {
	if len(e.Tags) == 0 && len(e.Properties) == 0 {
		return nil, nil
	}
	doc := map[string]json.RawMessage{}
	if len(e.Tags) > 0 {
		doc["tags"] = e.Tags
	}
	if len(e.Properties) > 0 {
		doc["properties"] = e.Properties
	}
	body, _ := json.Marshal(doc)
	u, err := twinhub.ParseTwinUpdate(body, false)
	if err != nil {
		return nil, err
	}
	return &u, nil
}
