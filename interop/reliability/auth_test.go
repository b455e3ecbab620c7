package reliability

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/twinhub/twinhub/sas"
)

// credential is one kind of Authorization a caller can present.
type credential struct {
	name  string
	token func() string
}

// restCredentials are the columns of the REST matrix, in its order.
func restCredentials(p *proc, devA, modA device) []credential {
	other, _ := sas.GenerateKey()
	owner := p.Policies["iothubowner"]
	return []credential{
		{"owner", func() string { return p.policyToken("iothubowner") }},
		{"service", func() string { return p.policyToken("service") }},
		{"registryRead", func() string { return p.policyToken("registryRead") }},
		{"registryReadWrite", func() string { return p.policyToken("registryReadWrite") }},
		{"device policy", func() string { return p.policyToken("device") }},
		{"device A's token", func() string { return p.deviceToken(devA.ID, devA.Key) }},
		{"module A/m1's token", func() string {
			return p.tokenFor(p.HostName+"/devices/"+devA.ID+"/modules/m1", "", modA.Key, time.Hour)
		}},
		// SAS tokens carry an expiry and no start time, so there is no
		// "not yet valid" token: one that expires in the future is valid.
		{"expired owner", func() string { return p.tokenFor(p.HostName, "iothubowner", owner.PrimaryKey, -time.Minute) }},
		{"owner, wrong signature", func() string { return p.tokenFor(p.HostName, "iothubowner", other, time.Hour) }},
		{"owner, other hub", func() string { return p.tokenFor("other.example", "iothubowner", owner.PrimaryKey, time.Hour) }},
		// Service tokens scoped below the hub are good for the resources
		// under their sr, by whole segments: a route's resource is its
		// path with the ids filled in (/devices/A, /twins/A/methods), or
		// the hub itself for routes that span devices (lists but for
		// /devices, queries, statistics, the stream, C2D send, feedback).
		{"owner, scoped to device A", func() string {
			return p.tokenFor(p.HostName+"/devices/"+devA.ID, "iothubowner", owner.PrimaryKey, time.Hour)
		}},
		{"owner, scoped to /devices", func() string {
			return p.tokenFor(p.HostName+"/devices", "iothubowner", owner.PrimaryKey, time.Hour)
		}},
		{"owner, scoped to device A's twin", func() string {
			return p.tokenFor(p.HostName+"/twins/"+devA.ID, "iothubowner", owner.PrimaryKey, time.Hour)
		}},
		// "auth-" is a prefix of both device ids, but not a segment of them.
		{"owner, scoped to a prefix of A's id", func() string {
			return p.tokenFor(p.HostName+"/devices/"+devA.ID[:len(devA.ID)-1], "iothubowner", owner.PrimaryKey, time.Hour)
		}},
		{"unknown policy", func() string { return p.tokenFor(p.HostName, "admin", owner.PrimaryKey, time.Hour) }},
		{"malformed", func() string { return "SharedAccessSignature sr=" + p.HostName + "&sig=&se=x" }},
		{"bearer", func() string { return "Bearer " + owner.PrimaryKey }},
		{"none", func() string { return "" }},
	}
}

// TestAuthMatrixREST tries every REST route with every kind of credential.
// Each row names the route, the status it answers when authorized, and one
// letter a credential, in the order of restCredentials:
//
//	Y  authorized: the route's status (0: 200 or 204)
//	.  401 IotHubUnauthorizedAccess
//	4  404 (no such route: answered before any credential is looked at)
//
// The routes come from httpapi's sources: one without a row fails.
//
// Every refusal's body and headers are checked for secrets: no policy or
// device key, no signature of the token presented, no token.
func TestAuthMatrixREST(t *testing.T) {
	t.Parallel()
	p := newProc(t, "127.0.0.62")
	c := p.rest()
	devA := c.createDevice(t, "auth-A")
	devB := c.createDevice(t, "auth-B")
	modA := c.createModule(t, devA.ID, "m1")
	creds := restCredentials(p, devA, modA)

	// authJob is a job that touches no device, an hour from now.
	authJob := map[string]any{"type": "scheduleUpdateTwin", "queryCondition": "deviceId = 'none'",
		"updateTwin": map[string]any{"tags": map[string]any{"a": 1}}, "startTime": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}
	// authConfig is a configuration that targets no device.
	authConfig := map[string]any{"content": map[string]any{"deviceContent": map[string]any{"properties.desired.a": 1}}}
	var seq atomic.Int64
	fresh := func(prefix string) string { return fmt.Sprintf("%s-%d", prefix, seq.Add(1)) }
	type req struct {
		method, path string
		body         any
	}
	// The four scoped columns (sA sD sT sP) are the owner's token scoped
	// to device A, to /devices, to device A's twin, and to "auth-".
	const (
		//               owner svc rR rRW devPol devA modA expired badSig otherHub sA sD sT sP unknown malformed bearer none
		read      = "Y.YY.............." // hub-wide registry reads (statistics)
		regRead   = "Y.YY.......Y......" // registry reads under /devices, not A's
		regReadA  = "Y.YY......YY......" // registry reads of device A's resources
		regWrite  = "Y..Y.......Y......" // registry writes under /devices, not A's
		hubWrite  = "Y..Y.............." // hub-wide writes with RegistryWrite (consumer groups)
		twinRead  = "YYYY.............." // queries, device B's twin
		twinReadA = "YYYY........Y....." // device A's (module) twins
		twinWrite = "YY.Y.............."
		twinWA    = "YY.Y........Y....."
		svcOnly   = "YY................" // hub-wide service operations, device B's methods
		svcA      = "YY..........Y....." // methods on device A's twins
		svcDevB   = "YY.........Y......" // device B's C2D queue (/devices/B/commands)
		svcDevA   = "YY........YY......" // device A's C2D queue
		noRoute   = "444444444444444444"
		// Device-side HTTPS routes on device A's resources: its own token,
		// a policy with DeviceConnect (owner, device, and the owner's token
		// scoped to device A or to /devices), nothing else.
		deviceA = "Y...YY....YY......"
		// The same for module m1's: its own token, not device A's.
		moduleA = "Y...Y.Y...YY......"
		// On device B's resources, A's tokens (its own, m1's, the owner's
		// scoped to A) are all refused.
		deviceB = "Y...Y......Y......"
	)
	rows := []struct {
		route  string
		ok     int
		matrix string
		req    func(t *testing.T) req // a request that succeeds when authorized
	}{
		{"GET /devices", 200, regRead, func(*testing.T) req { return req{"GET", "/devices", nil} }},
		{"GET /devices/{$}", 200, regRead, func(*testing.T) req { return req{"GET", "/devices/", nil} }},
		{"POST /devices (bulk)", 200, regWrite, func(*testing.T) req {
			return req{"POST", "/devices", []map[string]any{{"id": fresh("bulk"), "importMode": "create"}}}
		}},
		{"GET /devices/{id}", 200, regRead, func(*testing.T) req { return req{"GET", "/devices/" + devB.ID, nil} }},
		{"GET /devices/{id} (device A)", 200, regReadA, func(*testing.T) req { return req{"GET", "/devices/" + devA.ID, nil} }},
		{"PUT /devices/{id}", 200, regWrite, func(*testing.T) req {
			id := fresh("put")
			return req{"PUT", "/devices/" + id, map[string]any{"deviceId": id}}
		}},
		{"DELETE /devices/{id}", 204, regWrite, func(t *testing.T) req {
			return req{"DELETE", "/devices/" + c.createDevice(t, fresh("del")).ID, nil}
		}},
		{"GET /devices/{id}/modules", 200, regReadA, func(*testing.T) req { return req{"GET", "/devices/" + devA.ID + "/modules", nil} }},
		{"GET /devices/{id}/modules/{mid}", 200, regReadA, func(*testing.T) req {
			return req{"GET", "/devices/" + devA.ID + "/modules/m1", nil}
		}},
		{"PUT /devices/{id}/modules/{mid}", 200, regWrite, func(*testing.T) req {
			return req{"PUT", "/devices/" + devB.ID + "/modules/" + fresh("m"), map[string]any{}}
		}},
		{"DELETE /devices/{id}/modules/{mid}", 204, regWrite, func(t *testing.T) req {
			m := c.createModule(t, devB.ID, fresh("dm"))
			return req{"DELETE", "/devices/" + m.ID[:strings.IndexByte(m.ID, '/')] + "/modules/" + m.ID[strings.IndexByte(m.ID, '/')+1:], nil}
		}},
		{"GET /statistics/devices", 200, read, func(*testing.T) req { return req{"GET", "/statistics/devices", nil} }},
		{"GET /statistics/service", 200, svcOnly, func(*testing.T) req { return req{"GET", "/statistics/service", nil} }},
		{"GET /twinhub/cluster", 200, read, func(*testing.T) req { return req{"GET", "/twinhub/cluster", nil} }},
		{"GET /twins/{id}", 200, twinRead, func(*testing.T) req { return req{"GET", "/twins/" + devB.ID, nil} }},
		{"GET /twins/{id} (device A)", 200, twinReadA, func(*testing.T) req { return req{"GET", "/twins/" + devA.ID, nil} }},
		{"PATCH /twins/{id}", 200, twinWrite, func(*testing.T) req {
			return req{"PATCH", "/twins/" + devB.ID, map[string]any{"tags": map[string]any{"by": fresh("t")}}}
		}},
		{"PUT /twins/{id}", 200, twinWrite, func(*testing.T) req {
			return req{"PUT", "/twins/" + devB.ID, map[string]any{"tags": map[string]any{"by": fresh("t")}}}
		}},
		{"GET /twins/{id}/modules/{mid}", 200, twinReadA, func(*testing.T) req {
			return req{"GET", "/twins/" + devA.ID + "/modules/m1", nil}
		}},
		{"PATCH /twins/{id}/modules/{mid}", 200, twinWA, func(*testing.T) req {
			return req{"PATCH", "/twins/" + devA.ID + "/modules/m1", map[string]any{"properties": map[string]any{"desired": map[string]any{"by": fresh("d")}}}}
		}},
		{"PUT /twins/{id}/modules/{mid}", 200, twinWA, func(*testing.T) req {
			return req{"PUT", "/twins/" + devA.ID + "/modules/m1", map[string]any{"tags": map[string]any{"by": fresh("t")}}}
		}},
		{"POST /devices/query", 200, twinRead, func(*testing.T) req {
			return req{"POST", "/devices/query", map[string]any{"query": "SELECT * FROM devices"}}
		}},
		// Direct methods and cloud-to-device messages (issue 5). A method
		// call to a device that is not connected is 404 DeviceNotOnline
		// once authorized.
		{"POST /twins/{id}/methods", 404, svcOnly, func(*testing.T) req {
			return req{"POST", "/twins/" + devB.ID + "/methods", map[string]any{"methodName": "reboot", "responseTimeoutInSeconds": 5}}
		}},
		{"POST /twins/{id}/modules/{mid}/methods", 404, svcA, func(*testing.T) req {
			return req{"POST", "/twins/" + devA.ID + "/modules/m1/methods", map[string]any{"methodName": "reboot", "responseTimeoutInSeconds": 5}}
		}},
		{"POST /twinhub/c2d/{id}", 200, svcOnly, func(*testing.T) req { return req{"POST", "/twinhub/c2d/" + devB.ID, "hello"} }},
		{"DELETE /devices/{id}/commands", 200, svcDevB, func(*testing.T) req {
			return req{"DELETE", "/devices/" + devB.ID + "/commands", nil}
		}},
		{"DELETE /devices/{id}/commands (device A)", 200, svcDevA, func(*testing.T) req {
			return req{"DELETE", "/devices/" + devA.ID + "/commands", nil}
		}},
		// The telemetry stream answers 200 and then streams: only its
		// headers are awaited.
		{"GET /twinhub/events (stream)", 200, svcOnly, func(*testing.T) req { return req{"GET", "/twinhub/events", nil} }},
		// Delivery feedback: nothing to lock (204); an unknown lock token
		// is 412 DeviceMessageLockLost once authorized.
		{"GET /messages/serviceBound/feedback", 204, svcOnly, func(*testing.T) req {
			return req{"GET", "/messages/serviceBound/feedback", nil}
		}},
		{"DELETE /messages/serviceBound/feedback/{lockToken}", 412, svcOnly, func(*testing.T) req {
			return req{"DELETE", "/messages/serviceBound/feedback/no-such-lock", nil}
		}},
		{"POST /messages/serviceBound/feedback/{lockToken}/abandon", 412, svcOnly, func(*testing.T) req {
			return req{"POST", "/messages/serviceBound/feedback/no-such-lock/abandon", nil}
		}},
		// File-upload notifications: as feedback.
		{"GET /messages/serviceBound/filenotifications", 204, svcOnly, func(*testing.T) req {
			return req{"GET", "/messages/serviceBound/filenotifications", nil}
		}},
		{"DELETE /messages/serviceBound/filenotifications/{lockToken}", 412, svcOnly, func(*testing.T) req {
			return req{"DELETE", "/messages/serviceBound/filenotifications/no-such-lock", nil}
		}},
		{"POST /messages/serviceBound/filenotifications/{lockToken}/abandon", 412, svcOnly, func(*testing.T) req {
			return req{"POST", "/messages/serviceBound/filenotifications/no-such-lock/abandon", nil}
		}},
		// The Event Hubs endpoint's consumer groups: listed by readers of
		// telemetry and of the registry, made and deleted with
		// RegistryWrite.
		{"GET /twinhub/eventhub/consumergroups", 200, twinRead, func(*testing.T) req {
			return req{"GET", "/twinhub/eventhub/consumergroups", nil}
		}},
		{"PUT /twinhub/eventhub/consumergroups/{name}", 200, hubWrite, func(*testing.T) req {
			return req{"PUT", "/twinhub/eventhub/consumergroups/" + fresh("cg"), nil}
		}},
		{"DELETE /twinhub/eventhub/consumergroups/{name}", 204, hubWrite, func(t *testing.T) req {
			name := fresh("cgdel")
			c.owner(t, 200, "PUT", "/twinhub/eventhub/consumergroups/"+name, nil)
			return req{"DELETE", "/twinhub/eventhub/consumergroups/" + name, nil}
		}},
		// Import and export jobs: created and cancelled with
		// RegistryWrite, read with RegistryRead, hub-wide; a job of a
		// type there is not is 400 once authorized (a real one would
		// keep the hub's one job slot), an unknown job 404.
		{"POST /jobs/create", 400, hubWrite, func(*testing.T) req {
			return req{"POST", "/jobs/create", map[string]any{"type": "backup", "outputBlobContainerUri": "https://storage.invalid/c?sig=x"}}
		}},
		{"GET /jobs", 200, read, func(*testing.T) req { return req{"GET", "/jobs", nil} }},
		{"GET /jobs/{$}", 200, read, func(*testing.T) req { return req{"GET", "/jobs/", nil} }},
		{"GET /jobs/{id}", 404, read, func(*testing.T) req { return req{"GET", "/jobs/" + fresh("iej"), nil} }},
		{"DELETE /jobs/{id}", 404, hubWrite, func(*testing.T) req { return req{"DELETE", "/jobs/" + fresh("iej"), nil} }},
		// Jobs: listed and read with RegistryRead, scheduled and cancelled
		// with RegistryWrite, hub-wide.
		{"GET /jobs/v2/query", 200, read, func(*testing.T) req { return req{"GET", "/jobs/v2/query", nil} }},
		{"PUT /jobs/v2/{id}", 200, hubWrite, func(*testing.T) req {
			return req{"PUT", "/jobs/v2/" + fresh("job"), authJob}
		}},
		{"GET /jobs/v2/{id}", 200, read, func(t *testing.T) req {
			id := fresh("jobget")
			c.owner(t, 200, "PUT", "/jobs/v2/"+id, authJob)
			return req{"GET", "/jobs/v2/" + id, nil}
		}},
		{"POST /jobs/v2/{id}/cancel", 200, hubWrite, func(t *testing.T) req {
			id := fresh("jobcancel")
			c.owner(t, 200, "PUT", "/jobs/v2/"+id, authJob)
			return req{"POST", "/jobs/v2/" + id + "/cancel", nil}
		}},
		// Configurations: listed, read and tested with RegistryRead,
		// written (they write desired properties) with ServiceConnect or
		// RegistryWrite, as twins are; applying content to one device
		// (under /devices) also with a token scoped to /devices.
		{"GET /configurations", 200, read, func(*testing.T) req { return req{"GET", "/configurations", nil} }},
		{"GET /configurations/{$}", 200, read, func(*testing.T) req { return req{"GET", "/configurations/", nil} }},
		{"PUT /configurations/{id}", 200, twinWrite, func(*testing.T) req {
			return req{"PUT", "/configurations/" + fresh("cfg"), authConfig}
		}},
		{"GET /configurations/{id}", 200, read, func(t *testing.T) req {
			id := fresh("cfgget")
			c.owner(t, 200, "PUT", "/configurations/"+id, authConfig)
			return req{"GET", "/configurations/" + id, nil}
		}},
		{"DELETE /configurations/{id}", 204, twinWrite, func(t *testing.T) req {
			id := fresh("cfgdel")
			c.owner(t, 200, "PUT", "/configurations/"+id, authConfig)
			return req{"DELETE", "/configurations/" + id, nil}
		}},
		{"POST /configurations/testQueries", 200, read, func(*testing.T) req {
			return req{"POST", "/configurations/testQueries", map[string]any{"targetCondition": "tags.a = 1"}}
		}},
		{"POST /devices/{id}/applyConfigurationContent", 204, "YY.Y.......Y......", func(*testing.T) req {
			return req{"POST", "/devices/" + devB.ID + "/applyConfigurationContent", map[string]any{"deviceContent": map[string]any{"properties.desired.a": 1}}}
		}},
		// File upload, as device A: authorized, it is a 400 on this hub,
		// which has no storage account.
		{"POST /devices/{id}/files", 400, deviceA, func(*testing.T) req {
			return req{"POST", "/devices/" + devA.ID + "/files", map[string]any{"blobName": "a.txt"}}
		}},
		{"POST /devices/{id}/files/notifications", 400, deviceA, func(*testing.T) req {
			return req{"POST", "/devices/" + devA.ID + "/files/notifications", map[string]any{"correlationId": "x", "isSuccess": true}}
		}},
		{"POST /devices/{id}/files/notifications/{correlationId}", 400, deviceA, func(*testing.T) req {
			return req{"POST", "/devices/" + devA.ID + "/files/notifications/x", map[string]any{"isSuccess": true}}
		}},
		// The device side of HTTPS (issue 5), as device A or module m1.
		{"POST /devices/{id}/messages/events", 204, deviceA, func(*testing.T) req {
			return req{"POST", "/devices/" + devA.ID + "/messages/events", "telemetry"}
		}},
		{"POST /devices/{id}/modules/{mid}/messages/events", 204, moduleA, func(*testing.T) req {
			return req{"POST", "/devices/" + devA.ID + "/modules/m1/messages/events", "telemetry"}
		}},
		{"POST /devices/{id}/messages/events (as device B)", 204, deviceB, func(*testing.T) req {
			return req{"POST", "/devices/" + devB.ID + "/messages/events", "telemetry"}
		}},
		{"GET /devices/{id}/messages/deviceBound", 204, deviceA, func(*testing.T) req {
			return req{"GET", "/devices/" + devA.ID + "/messages/deviceBound", nil}
		}},
		// (200 with a message the C2D rows sent B, or 204 once none is left)
		{"GET /devices/{id}/messages/deviceBound (device B's messages)", 0, deviceB, func(*testing.T) req {
			return req{"GET", "/devices/" + devB.ID + "/messages/deviceBound", nil}
		}},
		{"DELETE /devices/{id}/messages/deviceBound/{etag}", 412, deviceA, func(*testing.T) req {
			return req{"DELETE", "/devices/" + devA.ID + "/messages/deviceBound/no-such-lock", nil}
		}},
		{"POST /devices/{id}/messages/deviceBound/{etag}/abandon", 412, deviceA, func(*testing.T) req {
			return req{"POST", "/devices/" + devA.ID + "/messages/deviceBound/no-such-lock/abandon", nil}
		}},
		// The lowercase spelling the SDKs' Http transports use.
		{"GET /devices/{id}/messages/devicebound", 204, deviceA, func(*testing.T) req {
			return req{"GET", "/devices/" + devA.ID + "/messages/devicebound", nil}
		}},
		{"DELETE /devices/{id}/messages/devicebound/{etag}", 412, deviceA, func(*testing.T) req {
			return req{"DELETE", "/devices/" + devA.ID + "/messages/devicebound/no-such-lock", nil}
		}},
		{"POST /devices/{id}/messages/devicebound/{etag}/abandon", 412, deviceA, func(*testing.T) req {
			return req{"POST", "/devices/" + devA.ID + "/messages/devicebound/no-such-lock/abandon", nil}
		}},
		{"GET /no/such/route", 404, noRoute, func(*testing.T) req { return req{"GET", "/no/such/route", nil} }},
	}

	// Every route httpapi registers has a row (a new route fails here
	// until it is added to the matrix).
	var names []string
	for _, row := range rows {
		name, _, _ := strings.Cut(row.route, " (")
		names = append(names, name)
	}
	for _, pattern := range registeredRoutes(t) {
		if pattern != "/" && !slices.Contains(names, pattern) {
			t.Errorf("route %q has no row in the auth matrix", pattern)
		}
	}

	secrets := []string{}
	for _, pol := range p.Policies {
		secrets = append(secrets, pol.PrimaryKey, pol.SecondaryKey)
	}
	secrets = append(secrets, devA.Key, devB.Key, modA.Key)

	cells, refused := 0, 0
	for _, row := range rows {
		if len(row.matrix) != len(creds) {
			t.Fatalf("%s: matrix has %d cells, there are %d credentials", row.route, len(row.matrix), len(creds))
		}
		for i, cred := range creds {
			want := map[byte]int{'Y': row.ok, '.': 401, '4': 404}[row.matrix[i]]
			rq := row.req(t)
			tok := cred.token()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			var r reply
			var err error
			if strings.HasSuffix(row.route, "(stream)") {
				r, err = c.status(ctx, tok, rq.path)
			} else {
				r, err = c.do(ctx, tok, rq.method, rq.path, rq.body)
			}
			cancel()
			cells++
			if err != nil {
				t.Errorf("%s with %s: %v", row.route, cred.name, err)
				continue
			}
			if want == 0 && (r.Status == 200 || r.Status == 204) {
				want = r.Status // ok 0: 200 or 204, whichever the state gives
			}
			if r.Status != want {
				t.Errorf("%s with %s: %d %.300s, want %d", row.route, cred.name, r.Status, r.Body, want)
			}
			if r.Status >= 400 {
				refused++
				checkNoLeak(t, row.route+" with "+cred.name, r, tok, secrets)
				if r.Status == 401 && r.Header.Get("iothub-errorcode") != "IotHubUnauthorizedAccess" {
					t.Errorf("%s with %s: iothub-errorcode %q", row.route, cred.name, r.Header.Get("iothub-errorcode"))
				}
			}
		}
	}
	t.Logf("REST auth matrix: %d routes x %d credentials = %d cells, %d refused, none leaked a secret", len(rows), len(creds), cells, refused)
}

// routePattern finds the patterns that package httpapi registers, with
// a.route or directly on its mux.
var routePattern = regexp.MustCompile(`a\.(?:route|deviceRoute|mux\.HandleFunc)\("([^"]+)"`)

// registeredRoutes reads httpapi's sources for its route patterns.
func registeredRoutes(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "httpapi", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("httpapi sources: %v", err)
	}
	var out []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range routePattern.FindAllSubmatch(data, -1) {
			out = append(out, string(m[1]))
		}
	}
	if len(out) < 20 {
		t.Fatalf("found only %d routes in httpapi's sources", len(out))
	}
	return out
}

// checkNoLeak fails if a refusal shows a key, the token or its signature.
func checkNoLeak(t *testing.T, what string, r reply, token string, secrets []string) {
	t.Helper()
	var hdr strings.Builder
	for k, vs := range r.Header {
		hdr.WriteString(k + ": " + strings.Join(vs, ",") + "\n")
	}
	text := string(r.Body) + hdr.String()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("%s: the refusal shows a key", what)
		}
	}
	if tk, err := sas.ParseToken(token); err == nil && tk.Signature != "" {
		for _, s := range []string{tk.Signature, url.QueryEscape(tk.Signature)} {
			if strings.Contains(text, s) {
				t.Errorf("%s: the refusal shows the token's signature", what)
			}
		}
	}
	if token != "" && len(token) > 24 && strings.Contains(text, token) {
		t.Errorf("%s: the refusal shows the token", what)
	}
}

// TestAuthMatrixMQTT connects over MQTT as a device and as a module with
// every kind of credential and checks the CONNACK code IoT Hub gives: 0
// accepted, 4 bad user name or password (not a SAS token; a user name for
// another identity), 5 not authorized. Then a connected device tries to
// act as another one.
func TestAuthMatrixMQTT(t *testing.T) {
	t.Parallel()
	p := newProc(t, "127.0.0.63")
	c := p.rest()
	devA := c.createDevice(t, "mauth-A")
	devB := c.createDevice(t, "mauth-B")
	modA := c.createModule(t, devA.ID, "m1")
	c.createModule(t, devA.ID, "m2")
	disabled := c.createDevice(t, "mauth-off")
	c.owner(t, 200, "PUT", "/devices/"+disabled.ID, map[string]any{"deviceId": disabled.ID, "status": "disabled"}, "If-Match", "*")
	other, _ := sas.GenerateKey()
	owner := p.Policies["iothubowner"]
	modResource := p.HostName + "/devices/" + devA.ID + "/modules/m1"

	tokA := p.deviceToken(devA.ID, devA.Key)
	tokMod := p.tokenFor(modResource, "", modA.Key, time.Hour)
	cases := []struct {
		client, password string
		user             string // default: the SDKs' user name for client
		want             int
		why              string
	}{
		{devA.ID, tokA, "", 0, "device A with its own token"},
		{devB.ID, tokA, "", 5, "device A's token as device B"},
		{devA.ID, p.deviceToken(devB.ID, devB.Key), "", 5, "device B's token as device A"},
		{devA.ID + "/m1", tokA, "", 5, "device A's token as its module m1"},
		{devA.ID + "/m1", tokMod, "", 0, "module m1 with its own token"},
		{devA.ID, tokMod, "", 5, "module m1's token as its device"},
		{devA.ID + "/m2", tokMod, "", 5, "module m1's token as module m2"},
		{devA.ID, p.policyToken("device"), "", 0, "device policy (DeviceConnect) as device A"},
		{devA.ID + "/m1", p.policyToken("device"), "", 0, "device policy as module m1"},
		{devA.ID, p.policyToken("iothubowner"), "", 0, "owner policy (has DeviceConnect)"},
		{devA.ID, p.policyToken("service"), "", 5, "service policy (no DeviceConnect)"},
		{devA.ID, p.policyToken("registryRead"), "", 5, "registryRead policy"},
		{devA.ID, p.policyToken("registryReadWrite"), "", 5, "registryReadWrite policy"},
		{devA.ID, p.tokenFor(p.HostName+"/devices/"+devA.ID, "", devA.Key, -time.Minute), "", 5, "expired token"},
		{devA.ID, p.tokenFor(p.HostName+"/devices/"+devA.ID, "", other, time.Hour), "", 5, "wrong signature"},
		{devA.ID, p.tokenFor("other.example/devices/"+devA.ID, "", devA.Key, time.Hour), "", 5, "token for another hub"},
		{devA.ID, p.tokenFor(p.HostName, "iothubowner", other, time.Hour), "", 5, "owner policy, wrong signature"},
		{devA.ID, "not a token", "", 4, "malformed password"},
		{devA.ID, "", "", 5, "no password, no certificate"},
		{devA.ID, tokA, p.HostName + "/" + devB.ID + "/?api-version=" + apiVersion, 4, "user name of another device"},
		{devA.ID, tokA, "other.example/" + devA.ID + "/?api-version=" + apiVersion, 4, "user name of another hub"},
		{"ghost", p.deviceToken("ghost", other), "", 5, "unregistered device"},
		{disabled.ID, p.deviceToken(disabled.ID, disabled.Key), "", 5, "disabled device"},
	}
	secrets := []string{devA.Key, devB.Key, modA.Key, owner.PrimaryKey, owner.SecondaryKey}
	for _, tc := range cases {
		user := tc.user
		if user == "" {
			user = p.username(tc.client)
		}
		r := p.dialMQTT(t)
		code, err := r.connack(tc.client, user, tc.password)
		if code != tc.want {
			t.Errorf("%s: CONNACK %d (%v), want %d", tc.why, code, err, tc.want)
		}
		if code != 0 {
			// A refused client gets its CONNACK and then nothing.
			r.closed(t, 10*time.Second)
		}
		r.nc.Close()
	}
	t.Logf("MQTT CONNECT matrix: %d cases", len(cases))

	// Connected as device A, it may not use device B's topics.
	r := p.dialMQTT(t)
	if code, err := r.connack(devA.ID, p.username(devA.ID), tokA); code != 0 {
		t.Fatalf("connect A: %d %v", code, err)
	}
	r.send(packetBytes(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "devices/" + devB.ID + "/messages/devicebound/#", Qos: 1}, {Filter: "$iothub/twin/res/#"}}}))
	pk, err := r.read(10 * time.Second)
	if err != nil || pk.FixedHeader.Type != packets.Suback || len(pk.ReasonCodes) != 2 || pk.ReasonCodes[0] != 0x80 || pk.ReasonCodes[1] != 0 {
		t.Errorf("A subscribing to B's C2D topic and its own twin: %v %v, want SUBACK [0x80 0]", pk.ReasonCodes, err)
	}
	r.send(packetBytes(publishPacket("devices/"+devB.ID+"/messages/events/", 1, 2, []byte("{}"))))
	got := r.closed(t, 10*time.Second)
	for _, pk := range got {
		if pk.FixedHeader.Type == packets.Puback {
			t.Error("A's telemetry as B was acknowledged")
		}
		for _, s := range secrets {
			if strings.Contains(string(pk.Payload), s) {
				t.Error("a packet shows a key")
			}
		}
	}
}
