package goiothub

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// decodeCLI parses the CLI's JSON output, failing the test if it is not.
func decodeCLI[T any](t *testing.T, cmd, out string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%s printed no JSON of the expected shape: %v\n%s", cmd, err, out)
	}
	return v
}

// TestCLI drives the twinhub CLI against a running hub and reads its JSON
// output: device create, twin update --tags, twin show, query, device list,
// device show and delete; an error (a missing device) gives a non-zero
// exit and one clear line on stderr. What the CLI writes, the SDK reads
// back the same.
func TestCLI(t *testing.T) {
	t.Parallel()
	h := startHub(t, "127.0.0.27")
	svc := h.Service(t)
	ctx := testContext(t)

	dev := decodeCLI[map[string]any](t, "device create", h.CLI(t, "device", "create", "cli-1"))
	if dev["deviceId"] != "cli-1" || dev["status"] != "enabled" || dev["etag"] == "" {
		t.Errorf("device create printed %v", dev)
	}
	if at(dev, "authentication", "type") != "sas" {
		t.Errorf("authentication.type = %v, want sas", at(dev, "authentication", "type"))
	}
	primary, _ := at(dev, "authentication", "symmetricKey", "primaryKey").(string)
	secondary, _ := at(dev, "authentication", "symmetricKey", "secondaryKey").(string)
	if primary == "" || secondary == "" || primary == secondary {
		t.Errorf("generated keys %q and %q", primary, secondary)
	}
	sdkDev, err := svc.GetDevice(ctx, "cli-1")
	if err != nil {
		t.Fatalf("the SDK cannot read the device the CLI made: %v", err)
	}
	if keysOf(sdkDev.Authentication).PrimaryKey != primary || sdkDev.ETag != dev["etag"] {
		t.Errorf("SDK sees keys %q etag %q; the CLI printed %q and %v", keysOf(sdkDev.Authentication).PrimaryKey, sdkDev.ETag, primary, dev["etag"])
	}
	cs := strings.TrimSpace(h.CLI(t, "device", "connection-string", "cli-1"))
	if sdkCS, _ := svc.DeviceConnectionString(sdkDev, false); cs != sdkCS {
		t.Errorf("device connection-string printed %q; the SDK builds %q", cs, sdkCS)
	}

	h.CLI(t, "device", "create", "cli-2")
	twin := decodeCLI[map[string]any](t, "twin update --tags",
		h.CLI(t, "twin", "update", "cli-1", "--tags", `{"location":{"region":"US","plant":"Redmond43"}}`))
	if twin["deviceId"] != "cli-1" || at(twin, "tags", "location", "plant") != "Redmond43" || at(twin, "tags", "location", "region") != "US" {
		t.Errorf("twin update printed deviceId %v tags %v", twin["deviceId"], twin["tags"])
	}
	if twin["version"] != 2.0 || at(twin, "properties", "desired", "$version") != 1.0 {
		t.Errorf("after a tags-only update: version %v desired $version %v, want 2 and 1", twin["version"], at(twin, "properties", "desired", "$version"))
	}
	twin = decodeCLI[map[string]any](t, "twin update --desired",
		h.CLI(t, "twin", "update", "cli-1", "--desired", `{"power_level":1}`, "--etag", twin["etag"].(string)))
	if at(twin, "properties", "desired", "power_level") != 1.0 || at(twin, "properties", "desired", "$version") != 2.0 {
		t.Errorf("twin update --desired printed desired %v", at(twin, "properties", "desired"))
	}
	shown := decodeCLI[map[string]any](t, "twin show", h.CLI(t, "twin", "show", "cli-1"))
	if shown["etag"] != twin["etag"] || at(shown, "tags", "location", "plant") != "Redmond43" {
		t.Errorf("twin show printed etag %v tags %v, want etag %v", shown["etag"], shown["tags"], twin["etag"])
	}
	sdkTwin, err := svc.GetDeviceTwin(ctx, "cli-1")
	if err != nil {
		t.Fatal(err)
	}
	if sdkTwin.ETag != twin["etag"] || at(sdkTwin.Tags, "location", "plant") != "Redmond43" || sdkTwin.Properties.Desired["power_level"] != 1.0 {
		t.Errorf("the SDK reads twin etag %q tags %v desired %v", sdkTwin.ETag, sdkTwin.Tags, sdkTwin.Properties.Desired)
	}

	rows := decodeCLI[[]map[string]any](t, "query",
		h.CLI(t, "query", "SELECT * FROM devices WHERE tags.location.plant = 'Redmond43'"))
	if len(rows) != 1 || rows[0]["deviceId"] != "cli-1" || at(rows[0], "properties", "desired", "power_level") != 1.0 {
		t.Errorf("query printed %v, want the twin of cli-1", rows)
	}
	rows = decodeCLI[[]map[string]any](t, "query with small pages",
		h.CLI(t, "query", "SELECT deviceId FROM devices", "--page-size", "1"))
	if len(rows) != 2 || rows[0]["deviceId"] == rows[1]["deviceId"] {
		t.Errorf("query --page-size 1 printed %v, want cli-1 and cli-2 once each", rows)
	}
	list := decodeCLI[[]map[string]any](t, "device list", h.CLI(t, "device", "list"))
	if len(list) != 2 {
		t.Errorf("device list printed %d devices, want 2", len(list))
	}
	shownDev := decodeCLI[map[string]any](t, "device show", h.CLI(t, "device", "show", "cli-2"))
	if shownDev["deviceId"] != "cli-2" {
		t.Errorf("device show printed %v", shownDev)
	}

	t.Run("MissingDevice", func(t *testing.T) {
		stdout, stderr, err := h.RunCLI("device", "show", "cli-missing")
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 {
			t.Fatalf("device show of a missing device: err %v, want a non-zero exit", err)
		}
		if stdout != "" {
			t.Errorf("stdout = %q, want nothing", stdout)
		}
		lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
		if len(lines) != 1 {
			t.Errorf("stderr has %d lines, want one:\n%s", len(lines), stderr)
		}
		if !strings.Contains(stderr, "DeviceNotFound") || !strings.Contains(stderr, "cli-missing") {
			t.Errorf("stderr %q does not say DeviceNotFound for cli-missing", stderr)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		if out := h.CLI(t, "device", "delete", "cli-2"); strings.TrimSpace(out) != "" {
			t.Errorf("device delete printed %q", out)
		}
		_, err := svc.GetDevice(ctx, "cli-2")
		wantStatus(t, "GetDevice after CLI delete", err, 404)
		_, stderr, err := h.RunCLI("device", "delete", "cli-2")
		if err == nil || !strings.Contains(stderr, "DeviceNotFound") {
			t.Errorf("deleting a deleted device: err %v stderr %q, want a failure naming DeviceNotFound", err, stderr)
		}
	})

	// A small IoT Edge hierarchy with device create --edge and --parent:
	// a gateway, an edge device below it and a leaf below that, each with
	// the scopes the registry gives them; a parent that is no edge device
	// is refused with a clear message.
	t.Run("Edge", func(t *testing.T) {
		gw := decodeCLI[map[string]any](t, "device create --edge", h.CLI(t, "device", "create", "gw", "--edge"))
		gwScope, _ := gw["deviceScope"].(string)
		if !strings.HasPrefix(gwScope, "ms-azure-iot-edge://gw-") || at(gw, "capabilities", "iotEdge") != true {
			t.Fatalf("device create --edge printed %v", gw)
		}
		mid := decodeCLI[map[string]any](t, "device create --edge --parent", h.CLI(t, "device", "create", "mid", "--edge", "--parent", "gw"))
		midScope, _ := mid["deviceScope"].(string)
		if !strings.HasPrefix(midScope, "ms-azure-iot-edge://mid-") || fmt.Sprint(mid["parentScopes"]) != "["+gwScope+"]" {
			t.Errorf("an edge device below gw: %v", mid)
		}
		leaf := decodeCLI[map[string]any](t, "device create --parent", h.CLI(t, "device", "create", "leaf", "--parent", "mid"))
		if leaf["deviceScope"] != midScope || fmt.Sprint(leaf["parentScopes"]) != "["+midScope+"]" {
			t.Errorf("a leaf below mid: %v", leaf)
		}
		_, stderr, err := h.RunCLI("device", "create", "leaf2", "--parent", "leaf")
		if err == nil || !strings.Contains(stderr, "not an IoT Edge device") {
			t.Errorf("a leaf below a leaf: err %v, stderr %q", err, stderr)
		}
	})

	// A twin job from the CLI, waited for, changes the twin it matches;
	// job list and job show see it ended.
	t.Run("Job", func(t *testing.T) {
		job := decodeCLI[map[string]any](t, "job update-twin --wait", h.CLI(t, "job", "update-twin", "tag-cli-1",
			"--condition", "deviceId = 'cli-1'", "--tags", `{"job":"done"}`, "--wait"))
		if job["status"] != "completed" || at(job, "deviceJobStatistics", "succeededCount") != 1.0 {
			t.Errorf("job update-twin printed %v", job)
		}
		twin := decodeCLI[map[string]any](t, "twin show", h.CLI(t, "twin", "show", "cli-1"))
		if at(twin, "tags", "job") != "done" {
			t.Errorf("the job's tags are not on the twin: %v", twin["tags"])
		}
		list := decodeCLI[[]map[string]any](t, "job list", h.CLI(t, "job", "list", "--status", "completed"))
		if len(list) != 1 || list[0]["jobId"] != "tag-cli-1" {
			t.Errorf("job list printed %v", list)
		}
		_, stderr, err := h.RunCLI("job", "show", "nope")
		if err == nil || !strings.Contains(stderr, "JobNotFound") {
			t.Errorf("job show of an unknown job: err %v, stderr %q", err, stderr)
		}
	})

	// A configuration from the CLI reaches the twin it targets; show
	// counts it; delete removes the configuration.
	t.Run("Configuration", func(t *testing.T) {
		cfg := decodeCLI[map[string]any](t, "configuration create", h.CLI(t, "configuration", "create", "cli-fw",
			"--target", "deviceId = 'cli-1'", "--priority", "5", "--content", `{"properties.desired.fw":{"version":"2.0"}}`,
			"--metric", "v2=SELECT deviceId FROM devices WHERE properties.desired.fw.version = '2.0'"))
		if cfg["id"] != "cli-fw" || cfg["priority"] != 5.0 {
			t.Errorf("configuration create printed %v", cfg)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			shown := decodeCLI[map[string]any](t, "configuration show", h.CLI(t, "configuration", "show", "cli-fw"))
			if at(shown, "systemMetrics", "results", "appliedCount") == 1.0 && at(shown, "metrics", "results", "v2") == 1.0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the configuration was not applied: %v", shown)
			}
			time.Sleep(100 * time.Millisecond)
		}
		twin := decodeCLI[map[string]any](t, "twin show", h.CLI(t, "twin", "show", "cli-1"))
		if at(twin, "properties", "desired", "fw", "version") != "2.0" {
			t.Errorf("the configuration's content is not on the twin: %v", at(twin, "properties", "desired"))
		}
		if out := h.CLI(t, "configuration", "delete", "cli-fw"); strings.TrimSpace(out) != "" {
			t.Errorf("configuration delete printed %q", out)
		}
		if list := decodeCLI[[]map[string]any](t, "configuration list", h.CLI(t, "configuration", "list")); len(list) != 0 {
			t.Errorf("configuration list after delete: %v", list)
		}
	})

	// device export writes the fleet (the edge hierarchy above, a module,
	// tags and desired properties); deleted and imported again, every
	// identity is back with its keys, scopes and twin.
	t.Run("ExportImport", func(t *testing.T) {
		h.CLI(t, "module", "create", "mid", "probe")
		file := filepath.Join(t.TempDir(), "devices.txt")
		h.CLI(t, "device", "export", file)
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		ids := []string{"cli-1", "gw", "mid", "leaf"}
		before := map[string]map[string]any{}
		for _, id := range ids {
			before[id] = decodeCLI[map[string]any](t, "device show", h.CLI(t, "device", "show", id))
		}
		// 4 devices, the module probe and the system modules of the two
		// edge devices.
		if len(lines) != 4+1+4 {
			t.Fatalf("export wrote %d lines:\n%s", len(lines), data)
		}
		if !strings.Contains(lines[0], `"id":"gw"`) || !strings.Contains(lines[1], `"id":"mid"`) {
			t.Errorf("edge devices are not first, above their children: %s / %s", lines[0], lines[1])
		}
		twinBefore := decodeCLI[map[string]any](t, "twin show", h.CLI(t, "twin", "show", "cli-1"))
		for _, id := range []string{"leaf", "cli-1", "mid", "gw"} {
			h.CLI(t, "device", "delete", id)
		}
		h.CLI(t, "device", "import", file)
		for _, id := range ids {
			after := decodeCLI[map[string]any](t, "device show", h.CLI(t, "device", "show", id))
			for _, path := range [][]string{{"authentication", "symmetricKey", "primaryKey"}, {"deviceScope"}, {"capabilities", "iotEdge"}} {
				if fmt.Sprint(at(after, path...)) != fmt.Sprint(at(before[id], path...)) {
					t.Errorf("%s %v: %v after import, %v before", id, path, at(after, path...), at(before[id], path...))
				}
			}
			if fmt.Sprint(after["parentScopes"]) != fmt.Sprint(before[id]["parentScopes"]) {
				t.Errorf("%s parentScopes: %v after import, %v before", id, after["parentScopes"], before[id]["parentScopes"])
			}
		}
		twinAfter := decodeCLI[map[string]any](t, "twin show", h.CLI(t, "twin", "show", "cli-1"))
		if fmt.Sprint(twinAfter["tags"]) != fmt.Sprint(twinBefore["tags"]) || at(twinAfter, "properties", "desired", "fw", "version") != "2.0" {
			t.Errorf("cli-1's twin after import: tags %v desired %v", twinAfter["tags"], at(twinAfter, "properties", "desired"))
		}
		if m := decodeCLI[map[string]any](t, "module show", h.CLI(t, "module", "show", "mid", "probe")); m["moduleId"] != "probe" {
			t.Errorf("module after import: %v", m)
		}
		bad := filepath.Join(t.TempDir(), "bad.txt")
		os.WriteFile(bad, []byte(`{"id":"ok-1"}`+"\n"+`{"id":"x","deviceScope":"ms-azure-iot-edge://nobody-1"}`+"\n"), 0o644)
		_, stderr, err := h.RunCLI("device", "import", bad)
		if err == nil || !strings.Contains(stderr, "x: ") || !strings.Contains(stderr, "1 identities failed") {
			t.Errorf("an import with a bad line: err %v, stderr %q", err, stderr)
		}
	})
}
