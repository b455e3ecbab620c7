package httpapi

import (
	"net/http"

	"github.com/twinhub/twinhub"
)

// maxBulkIdentities is IoT Hub's limit on one bulk registry request.
const maxBulkIdentities = 100

type bulkResult struct {
	IsSuccessful bool                  `json:"isSuccessful"`
	Errors       []twinhub.ImportError `json:"errors"`
	Warnings     []twinhub.ImportError `json:"warnings"`
}

// bulkDevices applies up to 100 registry writes (ExportImportDevice
// entries, create when one names no importMode). Each entry succeeds or
// fails on its own, as in IoT Hub; the reply lists the failures and is a
// 400 when there are any.
func (a *API) bulkDevices(r *http.Request) (int, any, error) {
	var entries []twinhub.ExportImportDevice
	if err := readJSON(r, &entries); err != nil {
		return 0, nil, err
	}
	if len(entries) == 0 || len(entries) > maxBulkIdentities {
		return 0, nil, twinhub.ErrInvalid("a bulk request holds 1 to %d identities, not %d", maxBulkIdentities, len(entries))
	}
	res := bulkResult{IsSuccessful: true, Errors: []twinhub.ImportError{}, Warnings: []twinhub.ImportError{}}
	for i := range entries {
		e := &entries[i]
		if err := a.hub.ImportIdentity(r.Context(), e, "create"); err != nil {
			te := twinhub.AsError(err)
			res.IsSuccessful = false
			res.Errors = append(res.Errors, twinhub.ImportError{DeviceID: e.ID, ModuleID: e.ModuleID, ErrorCode: te.Number(), ErrorStatus: te.Code + ": " + te.Message})
		}
	}
	if !res.IsSuccessful {
		return http.StatusBadRequest, res, nil
	}
	return http.StatusOK, res, nil
}
