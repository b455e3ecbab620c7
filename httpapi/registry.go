package httpapi

import (
	"net/http"
	"strconv"

	"github.com/twinhub/twinhub"
)

func (a *API) getDevice(r *http.Request) (int, any, error) {
	d, err := a.hub.GetDevice(r.Context(), r.PathValue("id"))
	return http.StatusOK, d, err
}

// putDevice creates a device, or with If-Match updates it, as IoT Hub's
// PUT /devices/{id} does.
func (a *API) putDevice(r *http.Request) (int, any, error) {
	var d twinhub.Device
	if err := readJSON(r, &d); err != nil {
		return 0, nil, err
	}
	id := r.PathValue("id")
	if d.DeviceID != "" && d.DeviceID != id {
		return 0, nil, twinhub.ErrInvalid("deviceId %q in the body does not match %q in the path", d.DeviceID, id)
	}
	d.DeviceID = id
	if ifMatch := r.Header.Get("If-Match"); ifMatch != "" {
		out, err := a.hub.UpdateDevice(r.Context(), d, ifMatch)
		return http.StatusOK, out, err
	}
	out, err := a.hub.CreateDevice(r.Context(), d)
	return http.StatusOK, out, err
}

func (a *API) deleteDevice(r *http.Request) (int, any, error) {
	return http.StatusNoContent, nil, a.hub.DeleteDevice(r.Context(), r.PathValue("id"), r.Header.Get("If-Match"))
}

// listDevices is the deprecated GET /devices?top=n that SDKs still call.
func (a *API) listDevices(r *http.Request) (int, any, error) {
	top := 1000
	if s := r.URL.Query().Get("top"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return 0, nil, twinhub.ErrInvalid("top must be a whole number from 1 to 1000")
		}
		top = n
	}
	devices, err := a.hub.ListDevices(r.Context(), top)
	return http.StatusOK, devices, err
}

func (a *API) getModule(r *http.Request) (int, any, error) {
	m, err := a.hub.GetModule(r.Context(), r.PathValue("id"), r.PathValue("mid"))
	return http.StatusOK, m, err
}

func (a *API) putModule(r *http.Request) (int, any, error) {
	var m twinhub.Module
	if err := readJSON(r, &m); err != nil {
		return 0, nil, err
	}
	id, mid := r.PathValue("id"), r.PathValue("mid")
	if (m.DeviceID != "" && m.DeviceID != id) || (m.ModuleID != "" && m.ModuleID != mid) {
		return 0, nil, twinhub.ErrInvalid("deviceId and moduleId in the body must match the path")
	}
	m.DeviceID, m.ModuleID = id, mid
	if ifMatch := r.Header.Get("If-Match"); ifMatch != "" {
		out, err := a.hub.UpdateModule(r.Context(), m, ifMatch)
		return http.StatusOK, out, err
	}
	out, err := a.hub.CreateModule(r.Context(), m)
	return http.StatusOK, out, err
}

func (a *API) deleteModule(r *http.Request) (int, any, error) {
	return http.StatusNoContent, nil, a.hub.DeleteModule(r.Context(), r.PathValue("id"), r.PathValue("mid"), r.Header.Get("If-Match"))
}

func (a *API) listModules(r *http.Request) (int, any, error) {
	mods, err := a.hub.ListModules(r.Context(), r.PathValue("id"))
	return http.StatusOK, mods, err
}

func (a *API) deviceStatistics(r *http.Request) (int, any, error) {
	ds, _, err := a.hub.Statistics(r.Context())
	return http.StatusOK, ds, err
}

// getClusterStatus is GET /twinhub/cluster: twinhub's own, for `twinhub
// cluster status`.
func (a *API) getClusterStatus(r *http.Request) (int, any, error) {
	if a.clusterStatus == nil {
		return 0, nil, twinhub.Errorf(http.StatusNotFound, "NotFound", "this hub reports no cluster status")
	}
	status, err := a.clusterStatus(r.Context())
	return http.StatusOK, status, err
}

func (a *API) serviceStatistics(r *http.Request) (int, any, error) {
	_, ss, err := a.hub.Statistics(r.Context())
	return http.StatusOK, ss, err
}
