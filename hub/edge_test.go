package hub_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/twinhub/twinhub"
)

func scopeOf(t *testing.T, d *twinhub.Device) string {
	t.Helper()
	if d.DeviceScope == nil {
		t.Fatalf("%s has no deviceScope", d.DeviceID)
	}
	return *d.DeviceScope
}

func ptr(s string) *string { return &s }

// TestEdgeScopes goes through IoT Edge's parent and child rules as the
// registry enforces them: scopes given to edge devices, leaf and nested
// children, what a write that leaves the scopes out keeps, and the
// parents refused.
func TestEdgeScopes(t *testing.T) {
	h, _ := newTestHub(t)
	ctx := context.Background()
	edge := twinhub.Capabilities{IoTEdge: true}

	root, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: "root", Capabilities: edge, DeviceScope: ptr("ignored")})
	if err != nil {
		t.Fatal(err)
	}
	rootScope := scopeOf(t, root)
	if want := "ms-azure-iot-edge://root-" + root.GenerationID; rootScope != want {
		t.Errorf("edge scope %q, want %q", rootScope, want)
	}
	if b, _ := json.Marshal(root); !strings.Contains(string(b), `"parentScopes":[]`) {
		t.Errorf("a top edge device: %s, want parentScopes []", b)
	}
	mods, err := h.ListModules(ctx, "root")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range mods {
		names = append(names, m.ModuleID)
		if m.Authentication.Type != twinhub.AuthNone {
			t.Errorf("%s authentication %q, want none", m.ModuleID, m.Authentication.Type)
		}
	}
	if want := []string{"$edgeAgent", "$edgeHub"}; !slices.Equal(names, want) {
		t.Errorf("modules of an edge device %v, want %v", names, want)
	}

	// A nested edge device names its parent in parentScopes and keeps a
	// scope of its own.
	mid, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: "mid", Capabilities: edge, ParentScopes: twinhub.Scopes{rootScope}})
	if err != nil {
		t.Fatal(err)
	}
	midScope := scopeOf(t, mid)
	if midScope == rootScope || !slices.Equal(mid.ParentScopes, []string{rootScope}) {
		t.Errorf("nested edge device: scope %q, parents %v", midScope, mid.ParentScopes)
	}
	// A leaf names its parent in deviceScope; the hub copies it.
	leaf, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: "leaf", DeviceScope: &midScope})
	if err != nil {
		t.Fatal(err)
	}
	if scopeOf(t, leaf) != midScope || !slices.Equal(leaf.ParentScopes, []string{midScope}) {
		t.Errorf("leaf: scope %v, parents %v", leaf.DeviceScope, leaf.ParentScopes)
	}
	plain, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: "plain"})
	if err != nil {
		t.Fatal(err)
	}
	if plain.DeviceScope != nil || len(plain.ParentScopes) != 0 {
		t.Errorf("plain device: scope %v, parents %v", plain.DeviceScope, plain.ParentScopes)
	}
	b, _ := json.Marshal(plain)
	if !strings.Contains(string(b), `"deviceScope":null,"parentScopes":[]`) {
		t.Errorf("plain device JSON %s", b)
	}

	// Writes that leave the scopes out keep them; an edge device's own
	// scope cannot be changed.
	leaf, err = h.UpdateDevice(ctx, twinhub.Device{DeviceID: "leaf", Status: twinhub.StatusDisabled}, "*")
	if err != nil || leaf.DeviceScope == nil || *leaf.DeviceScope != midScope {
		t.Fatalf("leaf updated without scopes: %v, %v", leaf, err)
	}
	mid, err = h.UpdateDevice(ctx, twinhub.Device{DeviceID: "mid", Capabilities: edge, DeviceScope: ptr("ms-azure-iot-edge://other-1")}, "*")
	if err != nil || scopeOf(t, mid) != midScope || !slices.Equal(mid.ParentScopes, []string{rootScope}) {
		t.Fatalf("edge device updated with another scope: %v, %v", mid, err)
	}

	refused := map[string]twinhub.Device{
		"a scope of no device":         {DeviceID: "leaf", DeviceScope: ptr("ms-azure-iot-edge://nobody-123")},
		"a string that is not a scope": {DeviceID: "leaf", DeviceScope: ptr("9b2c4a4e-0d6c-4a53-9d3c-2f5e1f0e8a11")},
		"a device that is not edge":    {DeviceID: "leaf", DeviceScope: ptr(twinhub.EdgeScope("plain", plain.GenerationID))},
		"a stale generation":           {DeviceID: "leaf", DeviceScope: ptr(twinhub.EdgeScope("root", "111111111111111111"))},
		"two parents":                  {DeviceID: "mid", Capabilities: edge, ParentScopes: twinhub.Scopes{rootScope, midScope}},
		"itself":                       {DeviceID: "mid", Capabilities: edge, ParentScopes: twinhub.Scopes{midScope}},
		"a device below it (a cycle)":  {DeviceID: "root", Capabilities: edge, ParentScopes: twinhub.Scopes{midScope}},
	}
	for name, d := range refused {
		before, _ := h.GetDevice(ctx, d.DeviceID)
		_, err := h.UpdateDevice(ctx, d, "*")
		if statusOf(err) != http.StatusBadRequest {
			t.Errorf("parent %s: %v, want a 400", name, err)
		}
		after, _ := h.GetDevice(ctx, d.DeviceID)
		if after.ETag != before.ETag {
			t.Errorf("parent %s: the refused write changed %s", name, d.DeviceID)
		}
	}
	if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: "orphan", DeviceScope: ptr("ms-azure-iot-edge://nobody-123")}); statusOf(err) != http.StatusBadRequest {
		t.Errorf("create below a scope of no device: %v, want a 400", err)
	}
	if _, err := h.GetDevice(ctx, "orphan"); statusOf(err) != http.StatusNotFound {
		t.Errorf("the refused device exists: %v", err)
	}

	// Queries see the scopes.
	page, err := h.Query(ctx, "SELECT deviceId FROM devices WHERE ARRAY_CONTAINS(parentScopes, '"+midScope+"')", 100, "")
	if err != nil || len(page.Items) != 1 || page.Items[0]["deviceId"] != "leaf" {
		t.Errorf("children of mid: %v, %v", page, err)
	}
	page, err = h.Query(ctx, "SELECT deviceId, deviceScope FROM devices WHERE deviceScope = '"+rootScope+"'", 100, "")
	if err != nil || len(page.Items) != 1 || page.Items[0]["deviceId"] != "root" {
		t.Errorf("deviceScope = root's: %v, %v", page, err)
	}
	twin, err := h.TwinJSON(ctx, twinhub.DeviceKey("leaf"))
	if err != nil || !strings.Contains(string(twin), `"deviceScope":"`+midScope+`"`) || !strings.Contains(string(twin), `"parentScopes":["`+midScope+`"]`) {
		t.Errorf("leaf twin %s, %v", twin, err)
	}

	// An empty deviceScope removes a leaf's parent.
	leaf, err = h.UpdateDevice(ctx, twinhub.Device{DeviceID: "leaf", DeviceScope: ptr("")}, "*")
	if err != nil || leaf.DeviceScope != nil || len(leaf.ParentScopes) != 0 {
		t.Fatalf("leaf without parent: %v, %v", leaf, err)
	}
	// An edge device turned into a leaf, its old scope sent back as the
	// CLI does, stays below its parent; its children are its no more.
	mid, err = h.UpdateDevice(ctx, twinhub.Device{DeviceID: "mid", DeviceScope: &midScope}, "*")
	if err != nil || scopeOf(t, mid) != rootScope || !slices.Equal(mid.ParentScopes, []string{rootScope}) {
		t.Fatalf("edge device turned leaf: %v, %v", mid, err)
	}
	// A device that becomes an edge device gets a scope and the system
	// modules; the deleted edge device's children may stay.
	plain, err = h.UpdateDevice(ctx, twinhub.Device{DeviceID: "plain", Capabilities: edge}, "*")
	if err != nil || scopeOf(t, plain) != twinhub.EdgeScope("plain", plain.GenerationID) {
		t.Fatalf("plain turned edge: %v, %v", plain, err)
	}
	if mods, err := h.ListModules(ctx, "plain"); err != nil || len(mods) != 2 {
		t.Errorf("modules of a device turned edge: %v, %v", mods, err)
	}
	if err := h.DeleteDevice(ctx, "root", "*"); err != nil {
		t.Errorf("deleting a parent: %v", err)
	}

	// An edge device created with an edge scope of its own id (an import
	// of an export) keeps it; one of another id is not taken.
	kept := "ms-azure-iot-edge://imported-637002575398722524"
	if d, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: "imported", Capabilities: edge, DeviceScope: &kept}); err != nil || scopeOf(t, d) != kept {
		t.Errorf("an imported edge device: %v, %v", d, err)
	}
	if d, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: "other", Capabilities: edge, DeviceScope: &kept}); err != nil || scopeOf(t, d) == kept {
		t.Errorf("an edge device created with another's scope: %v, %v", d, err)
	}

	// Only IoT Edge's two system modules have ids that begin with $.
	if _, err := h.CreateModule(ctx, twinhub.Module{DeviceID: "plain", ModuleID: "$custom"}); statusOf(err) != http.StatusBadRequest {
		t.Errorf("a $ module: %v, want a 400", err)
	}
	if _, err := h.CreateModule(ctx, twinhub.Module{DeviceID: "plain", ModuleID: "$edgeHub"}); statusOf(err) != http.StatusConflict {
		t.Errorf("$edgeHub again: %v, want a 409", err)
	}
}
