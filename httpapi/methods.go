package httpapi

import (
	"net/http"

	"github.com/twinhub/twinhub"
)

// invokeMethod is POST /twins/{id}/methods and
// /twins/{id}/modules/{mid}/methods: the call waits for the device's
// answer (or 404 DeviceNotOnline, 504 GatewayTimeout) and returns it as
// {"status", "payload"} with 200.
func (a *API) invokeMethod(r *http.Request) (int, any, error) {
	var req twinhub.MethodRequest
	if err := readJSON(r, &req); err != nil {
		return 0, nil, err
	}
	res, err := a.hub.InvokeMethod(r.Context(), twinKey(r), req)
	return http.StatusOK, res, err
}
