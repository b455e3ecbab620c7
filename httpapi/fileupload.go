package httpapi

import (
	"encoding/json"
	"net/http"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
)

// File upload, as a device asks for it (devices only: IoT Hub gives
// modules no file upload).

func (a *API) requestFileUpload(r *http.Request, k twinhub.Key, _ hub.DeviceAuth) (deviceReply, error) {
	var req twinhub.FileUploadRequest
	if err := readJSON(r, &req); err != nil {
		return deviceReply{}, err
	}
	sas, err := a.hub.RequestFileUpload(r.Context(), k.DeviceID, req)
	if err != nil {
		return deviceReply{}, err
	}
	body, err := json.Marshal(sas)
	if err != nil {
		return deviceReply{}, err
	}
	return deviceReply{status: http.StatusOK, header: http.Header{"Content-Type": {"application/json; charset=utf-8"}}, body: body}, nil
}

// completeFileUpload takes the correlation id from the body, or from the
// path as the Node.js SDK sends it (.../files/notifications/{correlationId}).
func (a *API) completeFileUpload(r *http.Request, k twinhub.Key, _ hub.DeviceAuth) (deviceReply, error) {
	var res twinhub.FileUploadResult
	if err := readJSON(r, &res); err != nil {
		return deviceReply{}, err
	}
	if c := r.PathValue("correlationId"); c != "" {
		res.CorrelationID = c
	}
	if err := a.hub.CompleteFileUpload(r.Context(), k.DeviceID, res); err != nil {
		return deviceReply{}, err
	}
	return deviceReply{status: http.StatusNoContent}, nil
}
