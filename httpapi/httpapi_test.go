package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/internal/hubtest"
	"github.com/twinhub/twinhub/sas"
)

type testAPI struct {
	api   *API
	owner string // a SAS token of the owner policy
	read  string // a SAS token of the registryRead policy
}

func newTestAPI(t testing.TB, o ...Options) *testAPI {
	t.Helper()
	h := hubtest.New(t)
	opts := Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if len(o) > 0 {
		opts = o[0]
	}
	return &testAPI{
		api:   New(h.Hub, opts),
		owner: h.ServiceToken("iothubowner"),
		read:  h.ServiceToken("registryRead"),
	}
}

// do sends a request through the API's handler and returns the recorder.
func (ta *testAPI) do(method, path, token, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	ta.api.ServeHTTP(rec, req)
	return rec
}

// checkError asserts IoT Hub's error shape: the status, the iothub-errorcode
// header and "ErrorCode:<code>;<text>" in Message.
func checkError(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	if got := rec.Header().Get("iothub-errorcode"); got != code {
		t.Errorf("iothub-errorcode %q, want %q", got, code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	var body struct{ Message, ExceptionMessage string }
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body is not JSON: %s", rec.Body)
	}
	if !strings.HasPrefix(body.Message, "ErrorCode:"+code+";") || len(body.Message) <= len("ErrorCode:"+code+";") {
		t.Errorf("Message %q does not start with ErrorCode:%s; and a text", body.Message, code)
	}
	if !strings.HasPrefix(body.ExceptionMessage, "Tracking ID:") {
		t.Errorf("ExceptionMessage %q", body.ExceptionMessage)
	}
}

const v = "?api-version=2021-04-12"

func TestErrorsHaveIoTHubShape(t *testing.T) {
	ta := newTestAPI(t)
	tests := []struct {
		name, method, path, token, body string
		status                          int
		code                            string
	}{
		{"no api-version", "GET", "/devices/d1", ta.owner, "", 400, "InvalidProtocolVersion"},
		{"malformed api-version", "GET", "/devices/d1?api-version=latest", ta.owner, "", 400, "InvalidProtocolVersion"},
		{"no token", "GET", "/devices/d1" + v, "", "", 401, "IotHubUnauthorizedAccess"},
		{"garbage token", "GET", "/devices/d1" + v, "Bearer x", "", 401, "IotHubUnauthorizedAccess"},
		{"read policy writing", "PUT", "/devices/d1" + v, ta.read, `{}`, 401, "IotHubUnauthorizedAccess"},
		{"unknown device", "GET", "/devices/d1" + v, ta.owner, "", 404, "DeviceNotFound"},
		{"unknown module", "GET", "/devices/d1/modules/m1" + v, ta.owner, "", 404, "ModuleNotFound"},
		{"unknown twin", "GET", "/twins/d1" + v, ta.owner, "", 404, "DeviceNotFound"},
		{"unknown route", "GET", "/nothing/here" + v, ta.owner, "", 404, "NotFound"},
		{"body not JSON", "PUT", "/devices/d1" + v, ta.owner, `{"deviceId":`, 400, "ArgumentInvalid"},
		{"body of the wrong type", "PUT", "/devices/d1" + v, ta.owner, `{"status":5}`, 400, "ArgumentInvalid"},
		{"id mismatch", "PUT", "/devices/d1" + v, ta.owner, `{"deviceId":"d2"}`, 400, "ArgumentInvalid"},
		{"invalid id", "PUT", "/devices/bad%20id" + v, ta.owner, `{}`, 400, "ArgumentInvalid"},
		{"body too large", "PUT", "/devices/d1" + v, ta.owner, `{"x":"` + strings.Repeat("a", MaxBodySize) + `"}`, 413, "MessageTooLarge"},
		{"query syntax", "POST", "/devices/query" + v, ta.owner, `{"query":"SELECT FROM"}`, 400, "ArgumentInvalid"},
		{"bulk empty", "POST", "/devices" + v, ta.owner, `[]`, 400, "ArgumentInvalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkError(t, ta.do(tc.method, tc.path, tc.token, tc.body), tc.status, tc.code)
		})
	}
}

func TestRegistryStatusCodes(t *testing.T) {
	ta := newTestAPI(t)
	rec := ta.do("PUT", "/devices/d1"+v, ta.owner, `{"deviceId":"d1"}`)
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("create: %d %s", rec.Code, rec.Header())
	}
	var d twinhub.Device
	json.Unmarshal(rec.Body.Bytes(), &d)
	if d.Authentication.Type != "sas" || d.Authentication.SymmetricKey.PrimaryKey == "" || d.ETag == "" {
		t.Errorf("created device: %+v", d)
	}
	checkError(t, ta.do("PUT", "/devices/d1"+v, ta.owner, `{"deviceId":"d1"}`), 409, "DeviceAlreadyExists")
	checkError(t, ta.do("PUT", "/devices/d1"+v, ta.owner, `{"deviceId":"d1","status":"disabled"}`, "If-Match", `"nope"`), 412, "PreconditionFailed")
	if rec := ta.do("GET", "/devices/"+v, ta.owner, ""); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"d1"`) {
		t.Errorf("GET /devices/ (Node's list): %d %s", rec.Code, rec.Body)
	}
	if rec := ta.do("DELETE", "/devices/d1"+v, ta.owner, "", "If-Match", `"*"`); rec.Code != 204 || rec.Body.Len() != 0 {
		t.Errorf("delete: %d %q, want 204 and no body (the Go SDK fails on anything else)", rec.Code, rec.Body)
	}
}

func TestQueryContinuationHeader(t *testing.T) {
	ta := newTestAPI(t)
	for _, id := range []string{"a", "b", "c"} {
		ta.do("PUT", "/devices/"+id+v, ta.owner, `{}`)
	}
	rec := ta.do("POST", "/devices/query"+v, ta.owner, `{"Query":"SELECT * FROM devices"}`, "x-ms-max-item-count", "2")
	cont := rec.Header().Get("x-ms-continuation")
	if rec.Code != 200 || cont == "" || rec.Header().Get("x-ms-item-type") != "Twin" {
		t.Fatalf("first page: %d %v", rec.Code, rec.Header())
	}
	rec = ta.do("POST", "/devices/query"+v, ta.owner, `{"query":"SELECT * FROM devices"}`, "x-ms-max-item-count", "2", "x-ms-continuation", cont)
	var items []map[string]any
	json.Unmarshal(rec.Body.Bytes(), &items)
	if len(items) != 1 || items[0]["deviceId"] != "c" {
		t.Errorf("last page: %s", rec.Body)
	}
	// Node's SDK loops for ever if the last page carries the header at all.
	if _, present := rec.Header()["X-Ms-Continuation"]; present {
		t.Error("the last page carries x-ms-continuation")
	}
}

// FuzzRequestBodies sends arbitrary bodies to every route that reads one:
// the hub must answer with a status below 500 and, for errors, IoT Hub's
// error shape; it must never panic.
func FuzzRequestBodies(f *testing.F) {
	ta := newTestAPI(f)
	ta.do("PUT", "/devices/d1"+v, ta.owner, `{}`)
	routes := []struct{ method, path string }{
		{"PUT", "/devices/d2"},
		{"PUT", "/devices/d1"},
		{"POST", "/devices"},
		{"PATCH", "/twins/d1"},
		{"PUT", "/twins/d1"},
		{"POST", "/devices/query"},
		{"PUT", "/devices/d1/modules/m1"},
	}
	for _, s := range []string{`{}`, `[]`, `{"deviceId":"d2","authentication":{"type":"selfSigned","x509Thumbprint":{"primaryThumbprint":"zz"}}}`,
		`[{"id":"x","importMode":"create"},{"id":"d1","importMode":"delete"}]`, `{"tags":{"a":1}}`, `{"query":"SELECT * FROM devices WHERE x IN [1,2]"}`, `null`, "\xff"} {
		for i := range routes {
			f.Add(uint8(i), []byte(s), false)
			f.Add(uint8(i), []byte(s), true)
		}
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte, ifMatch bool) {
		r := routes[int(route)%len(routes)]
		req := httptest.NewRequest(r.method, r.path+v, bytes.NewReader(body))
		req.Header.Set("Authorization", ta.owner)
		if ifMatch {
			req.Header.Set("If-Match", "*")
		}
		rec := httptest.NewRecorder()
		ta.api.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", r.method, r.path, body, rec.Code, rec.Body)
		}
		// A bulk request whose entries fail answers 400 with the per-entry
		// result rather than an error, as IoT Hub does.
		bulkResult := r.path == "/devices" && strings.Contains(rec.Body.String(), `"isSuccessful":false`)
		if rec.Code >= 400 && rec.Header().Get("iothub-errorcode") == "" && !bulkResult {
			t.Fatalf("%s %s: error %d without iothub-errorcode", r.method, r.path, rec.Code)
		}
	})
}

// TestScopedServiceTokens: a policy token whose resource is below the hub
// is good for the routes whose resource it covers, by whole segments
// (dev1 is not dev10), and refused with IoT Hub's 401 elsewhere: other
// devices, twins (their resource is /twins/{id}), lists, queries,
// statistics.
func TestScopedServiceTokens(t *testing.T) {
	h := hubtest.New(t)
	api := New(h.Hub, Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	owner := h.Policy("iothubowner")
	scoped := func(resource string) string {
		tok, err := sas.NewToken(h.Host()+resource, owner.Name, owner.PrimaryKey, time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	ta := &testAPI{api: api, owner: h.ServiceToken("iothubowner")}
	for _, p := range []string{"/devices/dev1", "/devices/dev10", "/devices/dev2", "/devices/a%23b%2Bc", "/devices/dev1/modules/m1", "/devices/dev10/modules/m1"} {
		if rec := ta.do("PUT", p+v, ta.owner, `{}`); rec.Code != 200 {
			t.Fatalf("PUT %s: %d %s", p, rec.Code, rec.Body)
		}
	}
	dev1, twin1, odd, registry := scoped("/devices/dev1"), scoped("/twins/dev1"), scoped("/devices/a#b+c"), scoped("/devices")
	tests := []struct {
		token, method, path, body string
		want                      int
	}{
		{dev1, "GET", "/devices/dev1", "", 200},
		{dev1, "PUT", "/devices/dev1", `{"deviceId":"dev1","status":"disabled"}`, 200},
		{dev1, "GET", "/devices/dev1/modules", "", 200},
		{dev1, "GET", "/devices/dev1/modules/m1", "", 200},
		{dev1, "DELETE", "/devices/dev1/commands", "", 200},
		{dev1, "GET", "/devices/dev10", "", 401},
		{dev1, "GET", "/devices/dev10/modules/m1", "", 401},
		{dev1, "GET", "/devices/dev2", "", 401},
		{dev1, "GET", "/devices", "", 401},
		{dev1, "GET", "/devices/", "", 401},
		{dev1, "POST", "/devices", `[{"id":"x","importMode":"create"}]`, 401},
		{dev1, "POST", "/devices/query", `{"query":"SELECT * FROM devices"}`, 401},
		{dev1, "GET", "/statistics/devices", "", 401},
		{dev1, "GET", "/statistics/service", "", 401},
		{dev1, "GET", "/twins/dev1", "", 401},
		{dev1, "POST", "/twins/dev1/methods", `{"methodName":"m"}`, 401},
		{dev1, "GET", "/messages/serviceBound/feedback", "", 401},
		// An id sent as %2F-escaped segments is not device dev1's resource.
		{dev1, "GET", "/devices/dev1%2Fmodules%2Fm1", "", 401},
		{twin1, "GET", "/twins/dev1", "", 200},
		{twin1, "PATCH", "/twins/dev1", `{"tags":{"a":1}}`, 200},
		{twin1, "GET", "/twins/dev1/modules/m1", "", 200},
		{twin1, "GET", "/twins/dev10", "", 401},
		{twin1, "GET", "/devices/dev1", "", 401},
		{odd, "GET", "/devices/a%23b%2Bc", "", 200},
		{odd, "GET", "/devices/a%23b%2Bc/modules", "", 200},
		{odd, "GET", "/devices/dev1", "", 401},
		{registry, "GET", "/devices", "", 200},
		{registry, "GET", "/devices/dev10/modules/m1", "", 200},
		{registry, "POST", "/devices/query", `{"query":"SELECT * FROM devices"}`, 401},
		{registry, "GET", "/twins/dev1", "", 401},
	}
	for _, tc := range tests {
		rec := ta.do(tc.method, tc.path+v, tc.token, tc.body, "If-Match", "*")
		if tc.want == 401 && rec.Code == 401 {
			t.Run(tc.method+" "+tc.path, func(t *testing.T) {
				checkError(t, rec, 401, "IotHubUnauthorizedAccess")
				sig := tc.token[strings.Index(tc.token, "sig=")+4:]
				sig = sig[:strings.IndexByte(sig, '&')]
				if strings.Contains(rec.Body.String(), sig) || strings.Contains(rec.Body.String(), owner.PrimaryKey) {
					t.Errorf("the refusal shows a secret: %s", rec.Body)
				}
			})
			continue
		}
		if rec.Code != tc.want {
			t.Errorf("%s %s with a token for %s: %d %s, want %d", tc.method, tc.path, tokenResource(t, tc.token), rec.Code, rec.Body, tc.want)
		}
	}
}

func tokenResource(t *testing.T, token string) string {
	tok, err := sas.ParseToken(token)
	if err != nil {
		t.Fatal(err)
	}
	return tok.Resource
}

// TestClusterStatus: GET /twinhub/cluster answers what ClusterStatus
// gives to a registryRead token, refuses one without rights, and is 404
// on a hub that gives no status; its errors have the IoT Hub shape.
func TestClusterStatus(t *testing.T) {
	checkError(t, newTestAPI(t).do("GET", "/twinhub/cluster"+v, newTestAPI(t).owner, ""), 401, "IotHubUnauthorizedAccess")
	ta := newTestAPI(t)
	checkError(t, ta.do("GET", "/twinhub/cluster"+v, ta.owner, ""), 404, "NotFound")

	calls := 0
	withStatus := newTestAPI(t, Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), ClusterStatus: func(context.Context) (any, error) {
		calls++
		if calls == 2 {
			return nil, twinhub.StoreUnavailable(errors.New("no quorum"))
		}
		return map[string]any{"nodes": []string{"n1", "n2"}}, nil
	}})
	rec := withStatus.do("GET", "/twinhub/cluster"+v, withStatus.read, "")
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"nodes":["n1","n2"]}` {
		t.Errorf("status %d, body %s", rec.Code, rec.Body)
	}
	checkError(t, withStatus.do("GET", "/twinhub/cluster"+v, withStatus.read, ""), 503, "ServiceUnavailable")
	checkError(t, withStatus.do("GET", "/twinhub/cluster"+v, "", ""), 401, "IotHubUnauthorizedAccess")
}
