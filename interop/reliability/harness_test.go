package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twinhub/twinhub/internal/servetest"
	"github.com/twinhub/twinhub/sas"
)

// long reports whether the long variants run (TWINHUB_LONG=1).
func long() bool { return os.Getenv("TWINHUB_LONG") == "1" }

// pick is short in the default run and long with TWINHUB_LONG=1.
func pick[T any](short, long_ T) T {
	if long() {
		return long_
	}
	return short
}

const apiVersion = "2021-04-12"

func TestMain(m *testing.M) { servetest.Main(m) }

// proc is a twinhub process on one address and data folder, which the
// tests start, kill and start again (see servetest.Hub); its HostName is
// the address.
type proc struct {
	*servetest.Hub
	t testing.TB
}

// newProc starts `twinhub serve` on addr (HTTPS :443, MQTT :8883) with a
// fresh data folder and extra flags; it is stopped with SIGTERM when the
// test ends (a non-zero exit then fails the test) and its log printed if
// the test failed.
func newProc(t testing.TB, addr string, args ...string) *proc {
	t.Helper()
	return &proc{Hub: servetest.Start(t, addr, args...), t: t}
}

// --- credentials ---

// policyToken is an hour-long token of a policy for the whole hub.
func (p *proc) policyToken(name string) string {
	return p.tokenFor(p.HostName, name, p.Policies[name].PrimaryKey, time.Hour)
}

func (p *proc) tokenFor(resource, keyName, key string, ttl time.Duration) string {
	tok, err := sas.NewToken(resource, keyName, key, time.Now().Add(ttl))
	if err != nil {
		p.t.Fatal(err)
	}
	return tok
}

// deviceToken is an hour-long device token signed with key.
func (p *proc) deviceToken(id, key string) string {
	return p.tokenFor(p.HostName+"/devices/"+url.PathEscape(id), "", key, time.Hour)
}

// --- REST ---

// rest is a REST client that sends what it is given, token included.
type rest struct {
	p  *proc
	hc *http.Client
}

func (p *proc) rest() *rest {
	tr := &http.Transport{TLSClientConfig: p.TLSConfig(), MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}
	p.t.Cleanup(tr.CloseIdleConnections)
	return &rest{p: p, hc: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

// reply is a REST answer.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r reply) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("reply %d is not a JSON object: %v: %.300s", r.Status, err, r.Body)
	}
	return m
}

// do sends method path (with api-version unless the path has a query) and
// body (marshalled unless []byte or string) with an Authorization header
// of token, unless token is "".
func (c *rest) do(ctx context.Context, token, method, path string, body any, hdr ...string) (reply, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return reply{}, err
		}
		rd = bytes.NewReader(data)
	}
	u := "https://" + c.p.Addr + path
	if !strings.Contains(path, "?") {
		u += "?api-version=" + apiVersion
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return reply{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: data}, err
}

// status sends a GET for a streaming route and returns its status and
// error body once the headers are in, without waiting for the stream.
func (c *rest) status(ctx context.Context, token, path string) (reply, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "https://"+c.p.Addr+path+"?api-version="+apiVersion, nil)
	if err != nil {
		return reply{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	r := reply{Status: resp.StatusCode, Header: resp.Header}
	if resp.StatusCode != http.StatusOK {
		r.Body, err = io.ReadAll(resp.Body)
	}
	return r, err
}

// owner sends a request as iothubowner and fails the test on a transport
// error or an unexpected status.
func (c *rest) owner(t testing.TB, want int, method, path string, body any, hdr ...string) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := c.do(ctx, c.p.policyToken("iothubowner"), method, path, body, hdr...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if want != 0 && r.Status != want {
		t.Fatalf("%s %s: %d %.500s, want %d", method, path, r.Status, r.Body, want)
	}
	return r
}

// device is a registered device with its primary key.
type device struct {
	ID, Key string
}

// createDevice registers a device with generated keys.
func (c *rest) createDevice(t testing.TB, id string) device {
	t.Helper()
	m := c.owner(t, 200, "PUT", "/devices/"+url.PathEscape(id), map[string]any{"deviceId": id}).json(t)
	key, _ := m["authentication"].(map[string]any)["symmetricKey"].(map[string]any)["primaryKey"].(string)
	if key == "" {
		t.Fatalf("device %s has no primary key: %v", id, m)
	}
	return device{ID: id, Key: key}
}

// createModule registers a module and returns it as a device whose ID is
// "device/module" for MQTT.
func (c *rest) createModule(t testing.TB, id, mid string) device {
	t.Helper()
	m := c.owner(t, 200, "PUT", "/devices/"+url.PathEscape(id)+"/modules/"+url.PathEscape(mid), map[string]any{"deviceId": id, "moduleId": mid}).json(t)
	key, _ := m["authentication"].(map[string]any)["symmetricKey"].(map[string]any)["primaryKey"].(string)
	if key == "" {
		t.Fatalf("module %s/%s has no primary key: %v", id, mid, m)
	}
	return device{ID: id + "/" + mid, Key: key}
}
