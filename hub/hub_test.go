package hub_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/internal/hubtest"
	"github.com/twinhub/twinhub/jetstream"
	"github.com/twinhub/twinhub/sas"
)

const testHost = hubtest.Host

func newTestHub(t testing.TB) (*hub.Hub, []sas.Policy) {
	t.Helper()
	h := hubtest.New(t)
	return h.Hub, h.Policies
}

func statusOf(err error) int {
	var e *twinhub.Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

func TestConcurrentReportedPatchesLoseNothing(t *testing.T) {
	ctx := context.Background()
	h, _ := newTestHub(t)
	if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				patch := map[string]any{fmt.Sprintf("w%d_%d", w, i): float64(i)}
				if _, err := h.UpdateReported(ctx, twinhub.DeviceKey("d1"), patch); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	doc := hubtest.Twin(t, h, twinhub.DeviceKey("d1"))
	reported := doc["properties"].(map[string]any)["reported"].(map[string]any)
	if got := reported["$version"]; got != float64(1+writers*each) {
		t.Errorf("reported $version = %v, want %d", got, 1+writers*each)
	}
	if got := len(reported) - 2; got != writers*each { // less $version and $metadata
		t.Errorf("%d reported properties, want %d", got, writers*each)
	}
	if doc["version"] != float64(1+writers*each) {
		t.Errorf("twin version = %v, want %d", doc["version"], 1+writers*each)
	}
}

// TestConcurrentPatchesOnTwoNodesLoseNothing: writers on two nodes, each
// starting from its node's cached record, which the other node's writes
// keep making stale: compare-and-set must still lose nothing, and either
// node must read every write.
func TestConcurrentPatchesOnTwoNodesLoseNothing(t *testing.T) {
	ctx := context.Background()
	a, b := twoNodes(t)
	if _, err := a.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	k := twinhub.DeviceKey("d1")
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for w := range writers {
		node := []*hub.Hub{a, b}[w%2]
		wg.Go(func() {
			for i := range each {
				var err error
				if i%5 == 4 {
					_, err = node.UpdateTwin(ctx, k, twinhub.TwinUpdate{Tags: map[string]any{fmt.Sprintf("w%d_%d", w, i): float64(i)}}, "*")
				} else {
					_, err = node.UpdateReported(ctx, k, map[string]any{fmt.Sprintf("w%d_%d", w, i): float64(i)})
				}
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	tags, reports := writers*each/5, writers*each*4/5
	for _, node := range []*hub.Hub{a, b} {
		doc := hubtest.Twin(t, node, k)
		reported := doc["properties"].(map[string]any)["reported"].(map[string]any)
		if got := reported["$version"]; got != float64(1+reports) {
			t.Errorf("reported $version = %v, want %d", got, 1+reports)
		}
		if got := len(reported) - 2; got != reports {
			t.Errorf("%d reported properties, want %d", got, reports)
		}
		if got := len(doc["tags"].(map[string]any)); got != tags {
			t.Errorf("%d tags, want %d", got, tags)
		}
		if doc["version"] != float64(1+writers*each) {
			t.Errorf("twin version = %v, want %d", doc["version"], 1+writers*each)
		}
	}
}

// TestReadsSeeWritesOfOtherNodes: a twin read on one node shows a write
// acknowledged by another just before, though the reader has the twin
// cached, and an etag read on one node matches on the other.
func TestReadsSeeWritesOfOtherNodes(t *testing.T) {
	ctx := context.Background()
	a, b := twoNodes(t)
	if _, err := a.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	k := twinhub.DeviceKey("d1")
	for i := range 20 {
		writer, reader := a, b
		if i%2 == 1 {
			writer, reader = b, a
		}
		if _, err := reader.TwinJSON(ctx, k); err != nil { // caches it on the reader
			t.Fatal(err)
		}
		if _, err := writer.UpdateReported(ctx, k, map[string]any{"i": float64(i)}); err != nil {
			t.Fatal(err)
		}
		data, err := reader.TwinJSON(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		if got := doc["properties"].(map[string]any)["reported"].(map[string]any)["i"]; got != float64(i) {
			t.Fatalf("write %d: the other node reads i = %v", i, got)
		}
		dt, err := reader.DeviceTwinJSON(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`"i":%d`, i); !strings.Contains(string(dt), want) {
			t.Fatalf("write %d: the other node's device twin %s lacks %s", i, dt, want)
		}
		etag := doc["etag"].(string)
		if _, err := writer.UpdateTwin(ctx, k, twinhub.TwinUpdate{Tags: map[string]any{"i": float64(i)}}, etag); err != nil {
			t.Fatalf("write %d: an etag read on the other node: %v", i, err)
		}
	}
}

func TestQueryReadsItsWrites(t *testing.T) {
	ctx := context.Background()
	h, _ := newTestHub(t)
	if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		plant := fmt.Sprintf("plant-%d", i)
		u := twinhub.TwinUpdate{Tags: map[string]any{"plant": plant}}
		if _, err := h.UpdateTwin(ctx, twinhub.DeviceKey("d1"), u, "*"); err != nil {
			t.Fatal(err)
		}
		page, err := h.Query(ctx, "SELECT * FROM devices WHERE tags.plant = '"+plant+"'", 100, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Items) != 1 {
			t.Fatalf("write %d: query found %d twins right after the write, want 1", i, len(page.Items))
		}
	}
}

func TestQueryPaging(t *testing.T) {
	ctx := context.Background()
	h, _ := newTestHub(t)
	for i := range 25 {
		if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: fmt.Sprintf("dev%02d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	cont, pages := "", 0
	for {
		page, err := h.Query(ctx, "SELECT * FROM devices", 10, cont)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, it := range page.Items {
			id := it["deviceId"].(string)
			if seen[id] {
				t.Errorf("%s came back twice", id)
			}
			seen[id] = true
		}
		if cont = page.Continuation; cont == "" {
			break
		}
	}
	if pages != 3 || len(seen) != 25 {
		t.Errorf("%d pages, %d devices; want 3 and 25", pages, len(seen))
	}
	if _, err := h.Query(ctx, "SELECT * FROM devices", 10, "garbage"); statusOf(err) != 400 {
		t.Errorf("a forged continuation token: %v, want a 400", err)
	}
	if _, err := h.Query(ctx, "SELECT * FROM", 10, ""); statusOf(err) != 400 {
		t.Errorf("a syntax error: %v, want a 400", err)
	}
}

func TestDeleteDeviceRemovesModules(t *testing.T) {
	ctx := context.Background()
	h, _ := newTestHub(t)
	h.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"})
	for _, m := range []string{"m1", "m2"} {
		if _, err := h.CreateModule(ctx, twinhub.Module{DeviceID: "d1", ModuleID: m}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.CreateModule(ctx, twinhub.Module{DeviceID: "nope", ModuleID: "m"}); statusOf(err) != 404 {
		t.Errorf("a module on a missing device: %v, want 404", err)
	}
	if err := h.DeleteDevice(ctx, "d1", `"*"`); err != nil {
		t.Fatal(err)
	}
	if _, err := h.GetModule(ctx, "d1", "m1"); statusOf(err) != 404 {
		t.Errorf("module after its device was deleted: %v, want 404", err)
	}
	if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	if mods, _ := h.ListModules(ctx, "d1"); len(mods) != 0 {
		t.Errorf("a re-created device has %d modules, want 0", len(mods))
	}
}

func TestETags(t *testing.T) {
	ctx := context.Background()
	h, _ := newTestHub(t)
	d, _ := h.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"})
	d.Status = twinhub.StatusDisabled
	updated, err := h.UpdateDevice(ctx, *d, `"`+d.ETag+`"`)
	if err != nil {
		t.Fatal(err)
	}
	if updated.ETag == d.ETag || updated.Status != twinhub.StatusDisabled {
		t.Errorf("update: etag %s → %s, status %s", d.ETag, updated.ETag, updated.Status)
	}
	if _, err := h.UpdateDevice(ctx, *d, `"`+d.ETag+`"`); statusOf(err) != 412 {
		t.Errorf("update with a stale etag: %v, want 412", err)
	}
	if err := h.DeleteDevice(ctx, "d1", d.ETag); statusOf(err) != 412 {
		t.Errorf("delete with a stale etag: %v, want 412", err)
	}
	twin := hubtest.Twin(t, h, twinhub.DeviceKey("d1"))
	etag := twin["etag"].(string)
	if _, err := h.UpdateTwin(ctx, twinhub.DeviceKey("d1"), twinhub.TwinUpdate{Tags: map[string]any{"a": 1.0}}, etag); err != nil {
		t.Fatal(err)
	}
	if _, err := h.UpdateTwin(ctx, twinhub.DeviceKey("d1"), twinhub.TwinUpdate{Tags: map[string]any{"a": 2.0}}, etag); statusOf(err) != 412 {
		t.Errorf("twin update with a stale etag: %v, want 412", err)
	}
	after := hubtest.Twin(t, h, twinhub.DeviceKey("d1"))
	if after["status"] != "disabled" || after["tags"].(map[string]any)["a"] != 1.0 {
		t.Errorf("a disabled device keeps its twin and shows its status: %v", after)
	}
}

func TestAuthenticateDevice(t *testing.T) {
	ctx := context.Background()
	h, policies := newTestHub(t)
	d1, _ := h.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"})
	d2, _ := h.CreateDevice(ctx, twinhub.Device{DeviceID: "d2"})
	m1, _ := h.CreateModule(ctx, twinhub.Module{DeviceID: "d1", ModuleID: "m1"})
	hour := time.Now().Add(time.Hour)
	tok := func(resource, keyName, key string, exp time.Time) string {
		s, err := sas.NewToken(resource, keyName, key, exp)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var devicePolicy, servicePolicy sas.Policy
	for _, p := range policies {
		switch p.Name {
		case "device":
			devicePolicy = p
		case "service":
			servicePolicy = p
		}
	}
	k1, m1k := d1.Authentication.SymmetricKey, m1.Authentication.SymmetricKey
	tests := []struct {
		name  string
		token string
		as    twinhub.Key
		ok    bool
	}{
		{"own key, own resource", tok(testHost+"/devices/d1", "", k1.PrimaryKey, hour), twinhub.DeviceKey("d1"), true},
		{"secondary key", tok(testHost+"/devices/d1", "", k1.SecondaryKey, hour), twinhub.DeviceKey("d1"), true},
		{"own key, hub-wide resource (Go SDK)", tok(testHost, "", k1.PrimaryKey, hour), twinhub.DeviceKey("d1"), true},
		{"own key, claiming another device", tok(testHost+"/devices/d2", "", k1.PrimaryKey, hour), twinhub.DeviceKey("d2"), false},
		{"own key, resource of another device", tok(testHost+"/devices/d2", "", k1.PrimaryKey, hour), twinhub.DeviceKey("d1"), false},
		{"another device's key", tok(testHost+"/devices/d1", "", d2.Authentication.SymmetricKey.PrimaryKey, hour), twinhub.DeviceKey("d1"), false},
		{"expired", tok(testHost+"/devices/d1", "", k1.PrimaryKey, time.Now().Add(-time.Minute)), twinhub.DeviceKey("d1"), false},
		{"wrong host", tok("other.example/devices/d1", "", k1.PrimaryKey, hour), twinhub.DeviceKey("d1"), false},
		{"unknown device", tok(testHost+"/devices/zz", "", k1.PrimaryKey, hour), twinhub.DeviceKey("zz"), false},
		{"device policy", tok(testHost+"/devices/d2", "device", devicePolicy.PrimaryKey, hour), twinhub.DeviceKey("d2"), true},
		{"service policy cannot connect devices", tok(testHost, "service", servicePolicy.PrimaryKey, hour), twinhub.DeviceKey("d2"), false},
		{"module with its key", tok(testHost+"/devices/d1/modules/m1", "", m1k.PrimaryKey, hour), twinhub.ModuleKey("d1", "m1"), true},
		{"module with its device's key", tok(testHost+"/devices/d1/modules/m1", "", k1.PrimaryKey, hour), twinhub.ModuleKey("d1", "m1"), false},
		{"device with its module's key", tok(testHost+"/devices/d1", "", m1k.PrimaryKey, hour), twinhub.DeviceKey("d1"), false},
		{"malformed", "SharedAccessSignature sr=x", twinhub.DeviceKey("d1"), false},
		{"empty", "", twinhub.DeviceKey("d1"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			auth, err := h.AuthenticateDevice(ctx, tc.token, tc.as)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err == nil && (auth.Method != "sas" || auth.GenerationID == "") {
				t.Errorf("authenticated as %+v, want sas with the identity's generationId", auth)
			}
			if err != nil && statusOf(err) != 401 {
				t.Errorf("refusal %v is not a 401", err)
			}
		})
	}
	d1.Status = twinhub.StatusDisabled
	if _, err := h.UpdateDevice(ctx, *d1, "*"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.AuthenticateDevice(ctx, tok(testHost+"/devices/d1", "", k1.PrimaryKey, hour), twinhub.DeviceKey("d1")); statusOf(err) != 401 {
		t.Errorf("disabled device: %v, want 401", err)
	}
	if _, err := h.AuthenticateDevice(ctx, tok(testHost+"/devices/d1/modules/m1", "", m1k.PrimaryKey, hour), twinhub.ModuleKey("d1", "m1")); statusOf(err) != 401 {
		t.Errorf("module of a disabled device: %v, want 401", err)
	}
}

func TestAuthorizeService(t *testing.T) {
	h, policies := newTestHub(t)
	for _, p := range policies {
		token, err := sas.NewToken(testHost, p.Name, p.PrimaryKey, time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		canRead := h.AuthorizeService(token, sas.RegistryRead) == nil
		canWrite := h.AuthorizeService(token, sas.RegistryWrite) == nil
		canService := h.AuthorizeService(token, sas.ServiceConnect) == nil
		want := map[string][3]bool{
			"iothubowner":       {true, true, true},
			"service":           {false, false, true},
			"device":            {false, false, false},
			"registryRead":      {true, false, false},
			"registryReadWrite": {true, true, false},
		}[p.Name]
		if got := [3]bool{canRead, canWrite, canService}; got != want {
			t.Errorf("%s: read/write/service = %v, want %v", p.Name, got, want)
		}
	}
	bad, _ := sas.NewToken(testHost, "iothubowner", policies[1].PrimaryKey, time.Now().Add(time.Hour))
	if err := h.AuthorizeService(bad, sas.RegistryRead); statusOf(err) != 401 {
		t.Errorf("a token signed with another policy's key: %v, want 401", err)
	}
}

// TestAuthorizeServiceOnScope: a policy token whose resource is below the
// hub is good for the resources under it, by whole path segments, however
// the SDKs encoded it, and for nothing else.
func TestAuthorizeServiceOnScope(t *testing.T) {
	h, policies := newTestHub(t)
	var owner sas.Policy
	for _, p := range policies {
		if p.Name == "iothubowner" {
			owner = p
		}
	}
	// signed signs the sr text exactly as given (already URL-encoded), as
	// each SDK signs what it sends.
	signed := func(rawSR string) string {
		key, err := base64.StdEncoding.DecodeString(owner.PrimaryKey)
		if err != nil {
			t.Fatal(err)
		}
		se := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
		m := hmac.New(sha256.New, key)
		m.Write([]byte(rawSR + "\n" + se))
		sig := base64.StdEncoding.EncodeToString(m.Sum(nil))
		return "SharedAccessSignature sr=" + rawSR + "&sig=" + url.QueryEscape(sig) + "&se=" + se + "&skn=iothubowner"
	}
	tok := func(resource string) string {
		s, err := sas.NewToken(resource, "iothubowner", owner.PrimaryKey, time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	dev1 := tok(testHost + "/devices/dev1")
	tests := []struct {
		name, token, resource string
		ok                    bool
	}{
		{"hub token, hub", tok(testHost), "", true},
		{"hub token, a device", tok(testHost), "/devices/dev1", true},
		{"device token, its device", dev1, "/devices/dev1", true},
		{"device token, its module", dev1, "/devices/dev1/modules/m1", true},
		{"device token, its modules", dev1, "/devices/dev1/modules", true},
		{"device token, its C2D queue", dev1, "/devices/dev1/commands", true},
		{"device token, another device", dev1, "/devices/dev2", false},
		{"device token, an id it prefixes", dev1, "/devices/dev10", false},
		{"device token, an id prefixing it", dev1, "/devices/dev", false},
		{"device token, its twin (another endpoint)", dev1, "/twins/dev1", false},
		{"device token, its methods", dev1, "/twins/dev1/methods", false},
		{"device token, the device list", dev1, "/devices", false},
		{"device token, the hub", dev1, "", false},
		{"twin token, its twin", tok(testHost + "/twins/dev1"), "/twins/dev1", true},
		{"twin token, its module twin's methods", tok(testHost + "/twins/dev1"), "/twins/dev1/modules/m1/methods", true},
		{"twin token, another twin", tok(testHost + "/twins/dev1"), "/twins/dev10", false},
		{"twin token, its device", tok(testHost + "/twins/dev1"), "/devices/dev1", false},
		{"module token, its module", tok(testHost + "/devices/dev1/modules/m1"), "/devices/dev1/modules/m1", true},
		{"module token, its device", tok(testHost + "/devices/dev1/modules/m1"), "/devices/dev1", false},
		{"module token, a module it prefixes", tok(testHost + "/devices/dev1/modules/m1"), "/devices/dev1/modules/m10", false},
		{"registry token, a device", tok(testHost + "/devices"), "/devices/dev1", true},
		{"registry token, the registry", tok(testHost + "/devices"), "/devices", true},
		{"registry token, the hub", tok(testHost + "/devices"), "", false},
		{"registry token, twins", tok(testHost + "/devices"), "/twins/dev1", false},
		{"other hub", tok("other.example/devices/dev1"), "/devices/dev1", false},
		{"id with reserved characters", tok(testHost + "/devices/a#b+c%d"), "/devices/a#b+c%d", true},
		{"id with reserved characters, prefix", tok(testHost + "/devices/a#b"), "/devices/a#b+c", false},
		{"Node encoding (lower-case hex, unescaped host)", signed(testHost + "%2fdevices%2fdev%2a1"), "/devices/dev*1", true},
		{"Node encoding, another device", signed(testHost + "%2fdevices%2fdev%2a1"), "/devices/dev*10", false},
		{"upper-case host, scheme, trailing slash", signed(url.PathEscape("HTTPS://HUB.Example/devices/dev1/")), "/devices/dev1/modules/m1", true},
		{"double-encoded (amenzhinsky/iothub)", signed(url.QueryEscape(url.QueryEscape(testHost + "/devices/dev1"))), "/devices/dev1", true},
		{"double-encoded, prefix-sharing id", signed(url.QueryEscape(url.QueryEscape(testHost + "/devices/dev1"))), "/devices/dev10", false},
		{"path case differs", tok(testHost + "/devices/DEV1"), "/devices/dev1", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := h.AuthorizeServiceOn(tc.token, tc.resource, sas.RegistryRead)
			if (err == nil) != tc.ok {
				t.Fatalf("AuthorizeServiceOn(%q) = %v, want ok=%v", tc.resource, err, tc.ok)
			}
			if err == nil {
				return
			}
			var e *twinhub.Error
			if !errors.As(err, &e) || e.Status != 401 || e.Code != "IotHubUnauthorizedAccess" {
				t.Errorf("refusal %v is not a 401 IotHubUnauthorizedAccess", err)
			}
			if sig := tc.token[strings.Index(tc.token, "sig=")+4:]; strings.Contains(err.Error(), sig[:strings.IndexByte(sig, '&')]) {
				t.Errorf("refusal shows the signature: %v", err)
			}
			if strings.Contains(err.Error(), owner.PrimaryKey) {
				t.Errorf("refusal shows the key: %v", err)
			}
		})
	}
	// Rights are still checked: a device-scoped registryRead token cannot
	// write its device.
	var reader sas.Policy
	for _, p := range policies {
		if p.Name == "registryRead" {
			reader = p
		}
	}
	rt, _ := sas.NewToken(testHost+"/devices/dev1", reader.Name, reader.PrimaryKey, time.Now().Add(time.Hour))
	if err := h.AuthorizeServiceOn(rt, "/devices/dev1", sas.RegistryRead); err != nil {
		t.Errorf("scoped registryRead reading its device: %v", err)
	}
	if err := h.AuthorizeServiceOn(rt, "/devices/dev1", sas.RegistryWrite); statusOf(err) != 401 {
		t.Errorf("scoped registryRead writing its device: %v, want 401", err)
	}
	// AuthorizeService is the hub-wide check.
	if err := h.AuthorizeService(dev1, sas.RegistryRead); statusOf(err) != 401 {
		t.Errorf("AuthorizeService with a device-scoped token: %v, want 401", err)
	}
}

// TestQueryReadsWritesOfOtherNodes: a write acknowledged by one node is
// seen at once by a query on another, because every query first brings
// its node's index up to the store's last revision.
func TestQueryReadsWritesOfOtherNodes(t *testing.T) {
	ctx := context.Background()
	a, b := twoNodes(t)
	if _, err := a.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		plant := fmt.Sprintf("plant-%d", i)
		if _, err := a.UpdateTwin(ctx, twinhub.DeviceKey("d1"), twinhub.TwinUpdate{Tags: map[string]any{"plant": plant}}, "*"); err != nil {
			t.Fatal(err)
		}
		page, err := b.Query(ctx, "SELECT * FROM devices WHERE tags.plant = '"+plant+"'", 100, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Items) != 1 {
			t.Fatalf("write %d on node a: node b's query found %d twins right after it, want 1", i, len(page.Items))
		}
	}
}

// BenchmarkUpdateReported measures reported-property updates of 64
// devices at once through the whole hub and an embedded JetStream, with
// and without the record cache: what one MQTT twin PATCH costs the hub.
func BenchmarkUpdateReported(b *testing.B) {
	for _, c := range []struct {
		name  string
		bytes int
	}{{"cache", 0}, {"nocache", -1}} {
		b.Run(c.name, func(b *testing.B) {
			e, err := jetstream.StartEmbedded(jetstream.EmbeddedOptions{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer func() { cancel(); e.Close() }()
			store, err := jetstream.OpenStore(ctx, e.Conn, jetstream.StoreOptions{})
			if err != nil {
				b.Fatal(err)
			}
			h, err := hub.New(ctx, hub.Config{Host: testHost, Store: store, RecordCacheBytes: c.bytes,
				Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			const devices = 64
			for i := range devices {
				if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: fmt.Sprint("d", i)}); err != nil {
					b.Fatal(err)
				}
			}
			var next atomic.Int64
			b.SetParallelism(devices / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				k := twinhub.DeviceKey(fmt.Sprint("d", next.Add(1)%devices))
				i := 0
				for pb.Next() {
					i++
					if _, err := h.UpdateReported(ctx, k, map[string]any{"temperature": float64(i), "status": "ok"}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// TestTwoNodesWithoutRecordCacheLoseNothing: with no record cache every
// update reads the store and relies on its compare-and-set alone; two
// nodes writing in turn, and at once, lose nothing.
func TestTwoNodesWithoutRecordCacheLoseNothing(t *testing.T) {
	e, err := jetstream.StartEmbedded(jetstream.EmbeddedOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); e.Close() })
	node := func() *hub.Hub {
		store, err := jetstream.OpenStore(ctx, e.Conn, jetstream.StoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		h, err := hub.New(ctx, hub.Config{Host: testHost, Store: store, RecordCacheBytes: -1,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	a, b := node(), node()
	if _, err := a.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	k := twinhub.DeviceKey("d1")
	const turns = 100 // in turn: each write follows one by the other node
	for i := range turns {
		if _, err := []*hub.Hub{a, b}[i%2].UpdateReported(ctx, k, map[string]any{fmt.Sprint("t", i): float64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	const writers, each = 6, 20 // at once
	var wg sync.WaitGroup
	for w := range writers {
		h := []*hub.Hub{a, b}[w%2]
		wg.Go(func() {
			for i := range each {
				if _, err := h.UpdateReported(ctx, k, map[string]any{fmt.Sprintf("w%d_%d", w, i): float64(i)}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	want := turns + writers*each
	for _, h := range []*hub.Hub{a, b} {
		doc := hubtest.Twin(t, h, k)
		reported := doc["properties"].(map[string]any)["reported"].(map[string]any)
		if got := len(reported) - 2; got != want {
			t.Errorf("%d reported properties, want %d", got, want)
		}
		if got := reported["$version"]; got != float64(1+want) {
			t.Errorf("reported $version = %v, want %d", got, 1+want)
		}
	}
}
