package httpapi

import (
	"testing"

	"github.com/twinhub/twinhub/throttle"
)

func TestRouteClass(t *testing.T) {
	for pattern, want := range map[string]throttle.Class{
		"GET /twins/{id}":                                        throttle.TwinReads,
		"GET /twins/{id}/modules/{mid}":                          throttle.TwinReads,
		"PATCH /twins/{id}":                                      throttle.TwinUpdates,
		"PUT /twins/{id}/modules/{mid}":                          throttle.TwinUpdates,
		"POST /devices/query":                                    throttle.Queries,
		"GET /devices/{id}":                                      throttle.Registry,
		"POST /devices":                                          throttle.Registry,
		"GET /statistics/devices":                                throttle.Registry,
		"POST /twins/{id}/methods":                               throttle.Unlimited,
		"POST /twins/{id}/modules/{mid}/methods":                 throttle.Unlimited,
		"DELETE /devices/{id}/commands":                          throttle.Unlimited,
		"POST /devices/{id}/messages/events":                     throttle.Telemetry,
		"POST /devices/{id}/modules/{mid}/messages/events":       throttle.Telemetry,
		"GET /devices/{id}/messages/deviceBound":                 throttle.Unlimited,
		"POST /devices/{id}/messages/deviceBound/{etag}/abandon": throttle.Unlimited,
	} {
		if got := routeClass(pattern); got != want {
			t.Errorf("routeClass(%q) = %v, want %v", pattern, got, want)
		}
	}
}

// TestThrottled: over the rate, an authorized request gets 429
// ThrottlingException; an unauthorized one still gets 401 and uses up
// nothing; other classes are served.
func TestThrottled(t *testing.T) {
	ta := newTestAPI(t, Options{Throttle: throttle.New(throttle.Limits{TwinReads: throttle.Limit{PerSecond: 0.001, Burst: 2}})})
	ta.do("PUT", "/devices/d1?api-version=2021-04-12", ta.owner, `{}`)
	for range 5 {
		checkError(t, ta.do("GET", "/twins/d1?api-version=2021-04-12", "", ""), 401, "IotHubUnauthorizedAccess")
	}
	for i := range 2 {
		if rec := ta.do("GET", "/twins/d1?api-version=2021-04-12", ta.owner, ""); rec.Code != 200 {
			t.Fatalf("read %d within the burst: %d %s", i, rec.Code, rec.Body)
		}
	}
	checkError(t, ta.do("GET", "/twins/d1?api-version=2021-04-12", ta.owner, ""), 429, "ThrottlingException")
	if rec := ta.do("GET", "/devices/d1?api-version=2021-04-12", ta.owner, ""); rec.Code != 200 {
		t.Errorf("registry read while twin reads are throttled: %d %s", rec.Code, rec.Body)
	}
}
