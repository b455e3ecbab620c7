package hub

import (
	"context"
	"errors"
	"net/http"

	"github.com/twinhub/twinhub"
)

// IoT Edge identities in the registry: the scopes of edge devices and of
// the devices below them, and the system modules of an edge device.

// maxScopeDepth bounds the walk up a chain of parents that looks for a
// cycle. IoT Edge supports five layers below the top; the chain of a
// registry that holds a longer one is still walked this far.
const maxScopeDepth = 16

// scopes works out a device's deviceScope and parentScopes for a registry
// write: req is what the write asks, old the stored device (nil when the
// write creates it) and generationID the device's. An edge device keeps
// the scope it was given (IoT Hub's is immutable; made from its id and
// generation id, or, when it is created with an edge scope of its own id,
// that one) and names its parent in parentScopes; a leaf device names its parent in deviceScope, which the
// hub copies into parentScopes. A write that names neither keeps the
// stored parent; an empty deviceScope or parentScopes removes it. A new
// parent must be an edge device, and not the device itself or one below it.
func (h *Hub) scopes(ctx context.Context, req, old *twinhub.Device, generationID string) (*string, twinhub.Scopes, error) {
	parent, err := requestedParent(req, old)
	if err != nil {
		return nil, nil, err
	}
	if old == nil || parent != old.Parent() {
		if err := h.checkParent(ctx, req.DeviceID, parent, req.Capabilities.IoTEdge); err != nil {
			return nil, nil, err
		}
	}
	var parents twinhub.Scopes
	if parent != "" {
		parents = twinhub.Scopes{parent}
	}
	if req.Capabilities.IoTEdge {
		own := twinhub.EdgeScope(req.DeviceID, generationID)
		switch {
		case old != nil && old.Capabilities.IoTEdge && old.DeviceScope != nil:
			own = *old.DeviceScope
		case old == nil && req.DeviceScope != nil && twinhub.IsEdgeScopeOf(*req.DeviceScope, req.DeviceID):
			// A device created with a scope of its own, as an import of
			// an export (from twinhub or IoT Hub) creates it: its
			// children name that scope.
			own = *req.DeviceScope
		}
		return &own, parents, nil
	}
	if parent == "" {
		return nil, parents, nil
	}
	return &parent, parents, nil
}

// requestedParent is the parent scope a registry write asks for ("" for
// none), as scopes describes.
func requestedParent(req, old *twinhub.Device) (string, error) {
	kept := ""
	if old != nil {
		kept = old.Parent()
	}
	if req.Capabilities.IoTEdge || req.DeviceScope == nil {
		// The parent is in parentScopes: an edge device's, whose own
		// deviceScope cannot be set (a value sent is ignored, as the CLI
		// sends back the one it read), or a leaf's that sends only that.
		switch n := len(req.ParentScopes); {
		case n > 1:
			return "", twinhub.ErrInvalid("parentScopes holds %d scopes; a device has one parent at most", n)
		case n == 1:
			return req.ParentScopes[0], nil
		case req.ParentScopes != nil && req.Capabilities.IoTEdge:
			return "", nil // [] takes an edge device to the top
		}
		return kept, nil
	}
	if old != nil && old.Capabilities.IoTEdge && old.DeviceScope != nil && *req.DeviceScope == *old.DeviceScope {
		// An edge device turned into a leaf, with its own old scope sent
		// back: it stays below the parent it had.
		return kept, nil
	}
	return *req.DeviceScope, nil
}

// checkParent checks that scope ("" for none) can be the parent of device
// id: the scope of an existing edge device, not id itself, and for an
// edge device id, not one below id.
func (h *Hub) checkParent(ctx context.Context, id, scope string, edge bool) error {
	if scope == "" {
		return nil
	}
	for depth := 0; scope != "" && depth < maxScopeDepth; depth++ {
		pid, ok := twinhub.ScopeDeviceID(scope)
		if !ok {
			return twinhub.ErrInvalid("%q is not the scope of an IoT Edge device", scope)
		}
		if pid == id {
			if depth == 0 {
				return twinhub.ErrInvalid("device '%s' cannot be its own parent", id)
			}
			return twinhub.ErrInvalid("device '%s' is above '%s' already: the parent %q would make a cycle", id, pid, scope)
		}
		rec, err := h.get(ctx, twinhub.DeviceKey(pid))
		var te *twinhub.Error
		if errors.As(err, &te) && te.Status == http.StatusNotFound {
			if depth > 0 {
				return nil // an ancestor was deleted: the chain ends there
			}
			return twinhub.ErrInvalid("no IoT Edge device has the scope %q", scope)
		} else if err != nil {
			return err
		}
		d := rec.Device
		if depth == 0 && (!d.Capabilities.IoTEdge || d.DeviceScope == nil || *d.DeviceScope != scope) {
			return twinhub.ErrInvalid("no IoT Edge device has the scope %q", scope)
		}
		if !edge {
			return nil // a leaf has no device below it
		}
		scope = d.Parent()
	}
	return nil
}

// createEdgeModules creates the module identities IoT Hub gives every
// edge device, $edgeAgent and $edgeHub, without credentials: the IoT
// Edge runtime sets its own keys on them. Ones that exist stay as they are.
func (h *Hub) createEdgeModules(ctx context.Context, id string) error {
	for _, mid := range []string{twinhub.EdgeAgentModule, twinhub.EdgeHubModule} {
		_, err := h.createModule(ctx, twinhub.Module{DeviceID: id, ModuleID: mid, Authentication: twinhub.Authentication{Type: twinhub.AuthNone}}, nil)
		var te *twinhub.Error
		if err != nil && !(errors.As(err, &te) && te.Status == http.StatusConflict) {
			return err
		}
	}
	return nil
}
