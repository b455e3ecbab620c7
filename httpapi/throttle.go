package httpapi

import (
	"net/http"
	"strings"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/throttle"
)

// throttle answers 429 when the request's class is over its rate
// (Options.Throttle).
func (a *API) throttle(c throttle.Class) error {
	if a.limits.Allow(c) {
		return nil
	}
	return twinhub.ErrThrottled(c)
}

// routeClass is the throttle class of a route pattern such as
// "PATCH /twins/{id}": twin reads and updates, queries, device telemetry,
// and everything else on the registry. Direct methods and cloud-to-device
// messages have no limit yet.
func routeClass(pattern string) throttle.Class {
	method, path, _ := strings.Cut(pattern, " ")
	switch {
	case strings.HasSuffix(path, "/messages/events"):
		return throttle.Telemetry
	case strings.Contains(strings.ToLower(path), "/messages/devicebound"):
		return throttle.Unlimited
	case path == "/devices/query":
		return throttle.Queries
	case strings.HasPrefix(path, "/twins/") && strings.HasSuffix(path, "/methods"),
		strings.HasPrefix(path, "/messages/"), strings.HasPrefix(path, "/twinhub/"),
		strings.HasSuffix(path, "/commands"):
		return throttle.Unlimited
	case strings.HasPrefix(path, "/twins/") && method == http.MethodGet:
		return throttle.TwinReads
	case strings.HasPrefix(path, "/twins/"):
		return throttle.TwinUpdates
	}
	return throttle.Registry
}
