package httpapi

import (
	"encoding/json"
	"net/http"

	"github.com/twinhub/twinhub"
)

func twinKey(r *http.Request) twinhub.Key {
	return twinhub.Key{DeviceID: r.PathValue("id"), ModuleID: r.PathValue("mid")}
}

// getTwin answers with the twin as the hub has rendered it (once per
// revision), instead of a document to encode on every read.
func (a *API) getTwin(r *http.Request) (int, any, error) {
	doc, err := a.hub.TwinJSON(r.Context(), twinKey(r))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, json.RawMessage(doc), nil
}

func (a *API) patchTwin(r *http.Request) (int, any, error) { return a.updateTwin(r, false) }
func (a *API) putTwin(r *http.Request) (int, any, error)   { return a.updateTwin(r, true) }

func (a *API) updateTwin(r *http.Request, replace bool) (int, any, error) {
	body, err := readBody(r)
	if err != nil {
		return 0, nil, err
	}
	u, err := twinhub.ParseTwinUpdate(body, replace)
	if err != nil {
		return 0, nil, err
	}
	doc, err := a.hub.UpdateTwin(r.Context(), twinKey(r), u, r.Header.Get("If-Match"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, json.RawMessage(doc), nil
}
