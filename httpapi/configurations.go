package httpapi

import (
	"net/http"
	"strconv"

	"github.com/twinhub/twinhub"
)

// Automatic device and module configurations.

func (a *API) putConfiguration(r *http.Request) (int, any, error) {
	var c twinhub.Configuration
	if err := readJSON(r, &c); err != nil {
		return 0, nil, err
	}
	id := r.PathValue("id")
	if c.ID != "" && c.ID != id {
		return 0, nil, twinhub.ErrInvalid("id %q in the body does not match %q in the path", c.ID, id)
	}
	c.ID = id
	out, err := a.hub.PutConfiguration(r.Context(), c, r.Header.Get("If-Match"))
	return http.StatusOK, out, err
}

func (a *API) getConfiguration(r *http.Request) (int, any, error) {
	c, err := a.hub.GetConfiguration(r.Context(), r.PathValue("id"))
	return http.StatusOK, c, err
}

func (a *API) deleteConfiguration(r *http.Request) (int, any, error) {
	return http.StatusNoContent, nil, a.hub.DeleteConfiguration(r.Context(), r.PathValue("id"), r.Header.Get("If-Match"))
}

// listConfigurations is GET /configurations[?top=n]: every configuration
// unless top says fewer.
func (a *API) listConfigurations(r *http.Request) (int, any, error) {
	top := 0
	if s := r.URL.Query().Get("top"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return 0, nil, twinhub.ErrInvalid("top must be a positive whole number")
		}
		top = n
	}
	all, err := a.hub.ListConfigurations(r.Context(), top)
	if all == nil {
		all = []*twinhub.Configuration{}
	}
	return http.StatusOK, all, err
}

type testQueriesRequest struct {
	TargetCondition     string            `json:"targetCondition"`
	CustomMetricQueries map[string]string `json:"customMetricQueries"`
}

type testQueriesReply struct {
	TargetConditionError    string            `json:"targetConditionError"`
	CustomMetricQueryErrors map[string]string `json:"customMetricQueryErrors"`
}

func (a *API) testConfigurationQueries(r *http.Request) (int, any, error) {
	var req testQueriesRequest
	if err := readJSON(r, &req); err != nil {
		return 0, nil, err
	}
	target, metrics := a.hub.TestConfigurationQueries(req.TargetCondition, req.CustomMetricQueries)
	return http.StatusOK, testQueriesReply{target, metrics}, nil
}

func (a *API) applyConfigurationContent(r *http.Request) (int, any, error) {
	var c twinhub.ConfigurationContent
	if err := readJSON(r, &c); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, a.hub.ApplyConfigurationContent(r.Context(), r.PathValue("id"), c)
}
