// Package httpapi is the service-side REST front end: the identity
// registry, twins and queries, as IoT Hub's service.json describes them,
// over HTTPS. It owns no state; each handler checks the caller's SAS token,
// decodes the request and calls the hub.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/metrics"
	"github.com/twinhub/twinhub/sas"
	"github.com/twinhub/twinhub/throttle"
)

// MaxBodySize bounds every request body. IoT Hub's largest service bodies
// are bulk registry writes of 100 identities and twins of about 72 KB.
const MaxBodySize = 1 << 20

// API serves the REST routes of one hub.
type API struct {
	hub *hub.Hub
	log *slog.Logger
	mux *http.ServeMux
	// limits throttles authorized requests (throttle.go); nil: none.
	limits *throttle.Throttle
	// metrics counts and times the requests; nil: none.
	metrics *metrics.Metrics
	// clusterStatus answers GET /twinhub/cluster; nil: 404.
	clusterStatus func(context.Context) (any, error)
}

// Options configure the REST API.
type Options struct {
	Log *slog.Logger
	// Throttle limits the rate of authorized requests by class (twin
	// reads and updates, registry operations, queries); a request over
	// its rate gets 429 ThrottlingException, as from IoT Hub. It comes
	// after authorization, so that requests without valid credentials
	// cannot use up the rates of the ones with. nil limits nothing.
	Throttle *throttle.Throttle
	// Metrics counts the requests by route and status, and times them;
	// nil records nothing.
	Metrics *metrics.Metrics
	// ClusterStatus is what GET /twinhub/cluster answers (`twinhub
	// cluster status`): the nodes of the hub and its streams' replicas,
	// which only the process that runs the hub knows how to gather.
	ClusterStatus func(context.Context) (any, error)
}

// New returns the REST API of hub as an http.Handler.
func New(core *hub.Hub, o Options) *API {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	a := &API{hub: core, log: o.Log, limits: o.Throttle, metrics: o.Metrics, clusterStatus: o.ClusterStatus, mux: http.NewServeMux()}
	read := []sas.Permission{sas.RegistryRead}
	write := []sas.Permission{sas.RegistryWrite}
	twinRead := []sas.Permission{sas.ServiceConnect, sas.RegistryRead}
	twinWrite := []sas.Permission{sas.ServiceConnect, sas.RegistryWrite}

	// Each route names the resource it touches (resources below); a
	// token scoped below the hub passes where its sr covers it.
	a.route("GET /devices", read, allDevices, a.listDevices)
	a.route("GET /devices/{$}", read, allDevices, a.listDevices) // the Node SDK's list() asks for /devices/
	a.route("POST /devices", write, allDevices, a.bulkDevices)
	a.route("GET /devices/{id}", read, "/devices/{id}", a.getDevice)
	a.route("PUT /devices/{id}", write, "/devices/{id}", a.putDevice)
	a.route("DELETE /devices/{id}", write, "/devices/{id}", a.deleteDevice)
	a.route("GET /devices/{id}/modules", read, "/devices/{id}/modules", a.listModules)
	a.route("GET /devices/{id}/modules/{mid}", read, "/devices/{id}/modules/{mid}", a.getModule)
	a.route("PUT /devices/{id}/modules/{mid}", write, "/devices/{id}/modules/{mid}", a.putModule)
	a.route("DELETE /devices/{id}/modules/{mid}", write, "/devices/{id}/modules/{mid}", a.deleteModule)
	a.route("GET /statistics/devices", read, hubWide, a.deviceStatistics)
	a.route("GET /statistics/service", []sas.Permission{sas.ServiceConnect}, hubWide, a.serviceStatistics)
	a.route("GET /twinhub/cluster", read, hubWide, a.getClusterStatus)
	a.route("GET /twins/{id}", twinRead, "/twins/{id}", a.getTwin)
	a.route("PATCH /twins/{id}", twinWrite, "/twins/{id}", a.patchTwin)
	a.route("PUT /twins/{id}", twinWrite, "/twins/{id}", a.putTwin)
	a.route("GET /twins/{id}/modules/{mid}", twinRead, "/twins/{id}/modules/{mid}", a.getTwin)
	a.route("PATCH /twins/{id}/modules/{mid}", twinWrite, "/twins/{id}/modules/{mid}", a.patchTwin)
	a.route("PUT /twins/{id}/modules/{mid}", twinWrite, "/twins/{id}/modules/{mid}", a.putTwin)
	// A query reads every twin, module and job, whatever its path says
	// (and a device may be named "query").
	a.route("POST /devices/query", twinRead, hubWide, a.query)
	service := []sas.Permission{sas.ServiceConnect}
	a.route("POST /twins/{id}/methods", service, "/twins/{id}/methods", a.invokeMethod)
	a.route("POST /twins/{id}/modules/{mid}/methods", service, "/twins/{id}/modules/{mid}/methods", a.invokeMethod)
	// twinhub's own C2D send; IoT Hub's is the hub-level AMQP endpoint
	// /messages/devicebound.
	a.route("POST /twinhub/c2d/{id}", service, hubWide, a.sendC2D)
	a.route("DELETE /devices/{id}/commands", service, "/devices/{id}/commands", a.purgeC2D)
	a.mux.HandleFunc("GET /twinhub/events", a.streamEvents)
	a.route("GET /messages/serviceBound/feedback", service, hubWide, a.receiveFeedback)
	a.route("DELETE /messages/serviceBound/feedback/{lockToken}", service, hubWide, a.completeFeedback)
	a.route("POST /messages/serviceBound/feedback/{lockToken}/abandon", service, hubWide, a.abandonFeedback)
	a.route("GET /messages/serviceBound/filenotifications", service, hubWide, a.receiveFileNotification)
	a.route("DELETE /messages/serviceBound/filenotifications/{lockToken}", service, hubWide, a.completeFileNotification)
	a.route("POST /messages/serviceBound/filenotifications/{lockToken}/abandon", service, hubWide, a.abandonFileNotification)
	// The Event Hubs endpoint's consumer groups: read by the readers of
	// telemetry, managed by those who may write the registry.
	a.route("GET /twinhub/eventhub/consumergroups", []sas.Permission{sas.ServiceConnect, sas.RegistryRead}, hubWide, a.listConsumerGroups)
	a.route("PUT /twinhub/eventhub/consumergroups/{name}", write, hubWide, a.createConsumerGroup)
	a.route("DELETE /twinhub/eventhub/consumergroups/{name}", write, hubWide, a.deleteConsumerGroup)
	// Jobs read and change twins and call methods across the registry.
	a.route("GET /jobs/v2/query", read, hubWide, a.queryJobs)
	a.route("PUT /jobs/v2/{id}", write, hubWide, a.putJob)
	a.route("GET /jobs/v2/{id}", read, hubWide, a.getJob)
	a.route("POST /jobs/v2/{id}/cancel", write, hubWide, a.cancelJob)
	// Import and export jobs read or write the whole registry, keys
	// included.
	a.route("POST /jobs/create", write, hubWide, a.createImportExportJob)
	a.route("GET /jobs", read, hubWide, a.listImportExportJobs)
	a.route("GET /jobs/{$}", read, hubWide, a.listImportExportJobs)
	a.route("GET /jobs/{id}", read, hubWide, a.getImportExportJob)
	a.route("DELETE /jobs/{id}", write, hubWide, a.cancelImportExportJob)
	// Configurations write desired properties across the registry.
	a.route("GET /configurations", read, hubWide, a.listConfigurations)
	a.route("GET /configurations/{$}", read, hubWide, a.listConfigurations)
	a.route("PUT /configurations/{id}", twinWrite, hubWide, a.putConfiguration)
	a.route("GET /configurations/{id}", read, hubWide, a.getConfiguration)
	a.route("DELETE /configurations/{id}", twinWrite, hubWide, a.deleteConfiguration)
	a.route("POST /configurations/testQueries", read, hubWide, a.testConfigurationQueries)
	a.route("POST /devices/{id}/applyConfigurationContent", twinWrite, "/devices/{id}", a.applyConfigurationContent)
	a.deviceRoute("POST /devices/{id}/files", a.requestFileUpload)
	a.deviceRoute("POST /devices/{id}/files/notifications", a.completeFileUpload)
	a.deviceRoute("POST /devices/{id}/files/notifications/{correlationId}", a.completeFileUpload)
	a.deviceRoute("POST /devices/{id}/messages/events", a.deviceEvent)
	a.deviceRoute("POST /devices/{id}/modules/{mid}/messages/events", a.deviceEvent)
	a.deviceRoute("GET /devices/{id}/messages/deviceBound", a.deviceReceive)
	a.deviceRoute("DELETE /devices/{id}/messages/deviceBound/{etag}", a.deviceSettle(twinhub.C2DComplete))
	a.deviceRoute("POST /devices/{id}/messages/deviceBound/{etag}/abandon", a.deviceSettle(twinhub.C2DAbandon))
	// The SDKs' Http transports spell it "devicebound"; IoT Hub takes both.
	a.deviceRoute("GET /devices/{id}/messages/devicebound", a.deviceReceive)
	a.deviceRoute("DELETE /devices/{id}/messages/devicebound/{etag}", a.deviceSettle(twinhub.C2DComplete))
	a.deviceRoute("POST /devices/{id}/messages/devicebound/{etag}/abandon", a.deviceSettle(twinhub.C2DAbandon))
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.writeError(w, r, twinhub.Errorf(http.StatusNotFound, "NotFound", "no such resource: %s %s", r.Method, r.URL.Path))
	})
	return a
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// handler is a route's work once the caller is authorized: it returns the
// status and body to send, or an error.
type handler func(r *http.Request) (status int, body any, err error)

// The resources service routes touch, as paths below the hub's host for
// Hub.AuthorizeServiceOn. IoT Hub reads a token's sr as the "URI prefix (by
// segment) of the endpoints that can be accessed with this token"
// (iot-hub-dev-guide-sas.md), so a route's resource is its own path with
// the ids filled in ("/devices/{id}", "/twins/{id}/methods"), except where
// the path does not name everything the operation touches: those are
// hubWide, for tokens of the whole hub only. A token for "<host>/devices/d"
// thus reaches d's identity and modules, not d's twin (that is
// "<host>/twins/d"), another device, or a query.
const (
	// hubWide: statistics, queries, the telemetry stream, C2D send and
	// feedback, which span devices or are not named by their path.
	hubWide = ""
	// allDevices is the identity registry as a whole (listing, bulk
	// writes). The docs' example: a registryRead token with sr
	// "<host>/devices" "would grant access to read all device identities".
	allDevices = "/devices"
)

// resourceOf fills the {name} segments of a route's resource template with
// the request's path values. A value that is empty or holds a "/" (sent
// as %2F) would not name one segment: such a request is treated as
// hub-wide, which only the hub's own tokens pass.
func resourceOf(template string, r *http.Request) string {
	if !strings.Contains(template, "{") {
		return template
	}
	segs := strings.Split(template, "/")
	for i, seg := range segs {
		name, ok := strings.CutPrefix(seg, "{")
		if !ok {
			continue
		}
		v := r.PathValue(strings.TrimSuffix(name, "}"))
		if v == "" || strings.Contains(v, "/") {
			return hubWide
		}
		segs[i] = v
	}
	return strings.Join(segs, "/")
}

// route registers a handler behind the checks every service request gets:
// a supported api-version and a SAS token whose policy grants one of rights
// and whose resource covers the route's (a template for resourceOf).
func (a *API) route(pattern string, rights []sas.Permission, resource string, h handler) {
	class := routeClass(pattern)
	a.mux.HandleFunc(pattern, func(rw http.ResponseWriter, r *http.Request) {
		w := rw
		if a.metrics != nil {
			sw := &statusWriter{ResponseWriter: rw, code: http.StatusOK}
			start := time.Now()
			defer func() { a.metrics.ObserveHTTP(pattern, sw.code, time.Since(start)) }()
			w = sw
		}
		if err := checkAPIVersion(r); err != nil {
			a.writeError(w, r, err)
			return
		}
		if err := a.hub.AuthorizeServiceOn(r.Header.Get("Authorization"), resourceOf(resource, r), rights...); err != nil {
			a.writeError(w, r, err)
			return
		}
		if err := a.throttle(class); err != nil {
			a.writeError(w, r, err)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodySize)
		status, body, err := h(r)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		writeJSON(w, status, body)
	})
}

// statusWriter keeps the status code a handler answered, for metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// checkAPIVersion requires an api-version of the form IoT Hub uses. The
// SDKs send versions from 2016 to now and twinhub answers them alike. It
// runs for every request: it reads the one parameter from the raw query
// and checks its form by hand, where r.URL.Query() built a map of every
// parameter and a regular expression matched it (1.3 µs together, 3.4%
// of the hub's CPU in REST twin reads).
func checkAPIVersion(r *http.Request) error {
	v := queryValue(r.URL.RawQuery, "api-version")
	if v == "" {
		return twinhub.Errorf(http.StatusBadRequest, "InvalidProtocolVersion", "the api-version query parameter is required")
	}
	if !apiVersionForm(v) || v < "2016-02-03" {
		return twinhub.Errorf(http.StatusBadRequest, "InvalidProtocolVersion", "api-version %q is not supported", v)
	}
	return nil
}

// apiVersionForm reports whether v has the form 20YY-MM-DD, with an
// optional "-preview" (the year from 2010, the month's first digit 0 or
// 1, the day's 0 to 3).
func apiVersionForm(v string) bool {
	d, _ := strings.CutSuffix(v, "-preview")
	digit := func(c byte) bool { return c >= '0' && c <= '9' }
	return len(d) == 10 && d[0] == '2' && d[1] == '0' && d[2] >= '1' && d[2] <= '9' && digit(d[3]) &&
		d[4] == '-' && (d[5] == '0' || d[5] == '1') && digit(d[6]) &&
		d[7] == '-' && d[8] >= '0' && d[8] <= '3' && digit(d[9])
}

// queryValue is the first value of key (a name that needs no escaping)
// in the raw query, as url.ParseQuery then Get would give it
// (FuzzQueryValue), without making the map of every parameter.
func queryValue(raw, key string) string {
	for pair := range strings.SplitSeq(raw, "&") {
		if pair == "" || strings.Contains(pair, ";") { // ParseQuery skips these
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if k != key {
			if !strings.ContainsAny(k, "%+") {
				continue
			}
			if u, err := url.QueryUnescape(k); err != nil || u != key {
				continue
			}
		}
		if u, err := url.QueryUnescape(v); err == nil {
			return u
		}
	}
	return ""
}

// withHeaders is a reply body that also sets response headers.
type withHeaders interface {
	setHeaders(http.Header)
	payload() any
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	if wh, ok := body.(withHeaders); ok {
		wh.setHeaders(w.Header())
		body = wh.payload()
	}
	if body == nil {
		w.WriteHeader(status)
		return
	}
	data, ok := body.(json.RawMessage) // already encoded (twins rendered by the hub)
	var err error
	if !ok {
		data, err = json.Marshal(body)
	}
	if err != nil {
		status, data = http.StatusInternalServerError, []byte(`{"Message":"ErrorCode:ServerError;internal server error"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(data)
}

// errorBody is IoT Hub's error shape. The Node.js SDK reads the error code
// from "Message" ("ErrorCode:DeviceNotFound;..."), others from the
// iothub-errorcode header.
type errorBody struct {
	Message          string `json:"Message"`
	ExceptionMessage string `json:"ExceptionMessage"`
}

func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := twinhub.AsError(err)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		e = twinhub.ErrTooLarge("request body is larger than %d bytes", MaxBodySize)
	}
	trackingID := newTrackingID()
	if e.Status >= 500 {
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "tracking", trackingID, "err", err)
	}
	w.Header().Set("iothub-errorcode", e.Code)
	writeJSON(w, e.Status, errorBody{
		Message:          fmt.Sprintf("ErrorCode:%s;%s", e.Code, e.Message),
		ExceptionMessage: fmt.Sprintf("Tracking ID:%s-TimeStamp:%s", trackingID, time.Now().UTC().Format("01/02/2006 15:04:05")),
	})
}

func newTrackingID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// readJSON decodes a request body into v; a body that is not JSON of the
// right shape is a 400 that says why.
func readJSON(r *http.Request, v any) error {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return twinhub.ErrInvalid("request body: %v", err)
	}
	return nil
}

func readBody(r *http.Request) ([]byte, error) {
	return io.ReadAll(r.Body)
}
