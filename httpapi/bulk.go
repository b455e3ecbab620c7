package httpapi

import (
	"net/http"
	"sync"

	"github.com/twinhub/twinhub"
)

// maxBulkIdentities is IoT Hub's limit on one bulk registry request.
const maxBulkIdentities = 100

// bulkWorkers is how many devices' entries of a bulk request are written
// at once.
const bulkWorkers = 16

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
	errs := make([]error, len(entries))
	// Entries of different devices are independent, and each waits on
	// JetStream round trips: they run bulkWorkers at a time (one after
	// the other, a request of 100 creations took 100 round trips). A
	// device's own entries (the device, then its modules, or the same id
	// twice) keep their order.
	byDevice := map[string][]int{}
	var devices []string
	for i := range entries {
		id := entries[i].ID
		if _, ok := byDevice[id]; !ok {
			devices = append(devices, id)
		}
		byDevice[id] = append(byDevice[id], i)
	}
	// A few workers take the devices in turn, rather than a goroutine
	// a device: storing a record grows a goroutine's stack past 64 KB
	// (the S2 encoder's table is on it), and growing a new goroutine's
	// stack for each device cost 5% of the hub's CPU in a bulk load.
	next := make(chan string)
	var wg sync.WaitGroup
	for range min(bulkWorkers, len(devices)) {
		wg.Go(func() {
			for id := range next {
				for _, i := range byDevice[id] {
					errs[i] = a.hub.ImportIdentity(r.Context(), &entries[i], "create")
				}
			}
		})
	}
	for _, id := range devices {
		next <- id
	}
	close(next)
	wg.Wait()
	res := bulkResult{IsSuccessful: true, Errors: []twinhub.ImportError{}, Warnings: []twinhub.ImportError{}}
	for i, err := range errs {
		e := &entries[i]
		if err != nil {
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
