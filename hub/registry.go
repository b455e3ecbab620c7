package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/twinhub/twinhub"
)

// The identity registry: devices and modules, listing and statistics.

// CreateDevice registers a new device with a fresh twin.
// An edge device gets its scope and the $edgeAgent and $edgeHub modules.
func (h *Hub) CreateDevice(ctx context.Context, d twinhub.Device) (*twinhub.Device, error) {
	return h.CreateDeviceWithTwin(ctx, d, nil)
}

// CreateDeviceWithTwin is CreateDevice with a first change to the new
// twin (an import's tags and desired properties), stored in the same
// write; u may be nil.
func (h *Hub) CreateDeviceWithTwin(ctx context.Context, d twinhub.Device, u *twinhub.TwinUpdate) (*twinhub.Device, error) {
	rec, err := h.newDeviceRecord(d)
	if err != nil {
		return nil, err
	}
	if u != nil {
		if err := rec.Twin.Apply(*u, twinhub.Now()); err != nil {
			return nil, err
		}
		rec.SetETags()
	}
	nd := rec.Device
	if nd.DeviceScope, nd.ParentScopes, err = h.scopes(ctx, &d, nil, nd.GenerationID); err != nil {
		return nil, err
	}
	rev, err := h.store.Create(ctx, twinhub.DeviceKey(d.DeviceID), rec)
	if errors.Is(err, twinhub.ErrExists) {
		return nil, twinhub.Errorf(http.StatusConflict, "DeviceAlreadyExists", "A device with ID '%s' is already registered", d.DeviceID)
	} else if err != nil {
		return nil, err
	}
	h.cache.put(twinhub.DeviceKey(d.DeviceID), rec, rev)
	if nd.Capabilities.IoTEdge {
		if err := h.createEdgeModules(ctx, d.DeviceID); err != nil {
			return nil, err
		}
	}
	return rec.DeviceCopy(), nil
}

func (h *Hub) newDeviceRecord(d twinhub.Device) (*twinhub.Record, error) {
	if err := twinhub.ValidateID("device", d.DeviceID); err != nil {
		return nil, err
	}
	if err := twinhub.NormalizeAuth(&d.Authentication, nil); err != nil {
		return nil, err
	}
	if d.Status == "" {
		d.Status = twinhub.StatusEnabled
	}
	if d.Status != twinhub.StatusEnabled && d.Status != twinhub.StatusDisabled {
		return nil, twinhub.ErrInvalid("status must be enabled or disabled, not %q", d.Status)
	}
	now := twinhub.Now()
	rec := &twinhub.Record{
		Device: &twinhub.Device{
			DeviceID:                  d.DeviceID,
			GenerationID:              twinhub.NewGenerationID(),
			ConnectionState:           twinhub.StateDisconnected,
			Status:                    d.Status,
			StatusReason:              d.StatusReason,
			StatusUpdatedTime:         now,
			Authentication:            d.Authentication,
			Capabilities:              d.Capabilities,
			CloudToDeviceMessageCount: 0,
		},
		IdentityVersion: 1,
		Twin:            twinhub.NewTwin(now),
	}
	rec.SetETags()
	return rec, nil
}

// GetDevice reads a device identity.
func (h *Hub) GetDevice(ctx context.Context, id string) (*twinhub.Device, error) {
	rec, err := h.get(ctx, twinhub.DeviceKey(id))
	if err != nil {
		return nil, err
	}
	d := rec.DeviceCopy()
	if err := h.countC2D(ctx, id, []*twinhub.Device{d}); err != nil {
		return nil, err
	}
	return d, nil
}

// countC2D sets the cloudToDeviceMessageCount of devices: the messages
// queued for each, read from the queue (for deviceID, or for all when it
// is ""), since the count changes with every send and settlement, which do
// not write the device's record.
func (h *Hub) countC2D(ctx context.Context, deviceID string, devices []*twinhub.Device) error {
	if h.c2d == nil || len(devices) == 0 {
		return nil
	}
	pending, err := h.c2d.Pending(ctx, deviceID)
	if err != nil {
		return fmt.Errorf("counting cloud-to-device messages: %w", err)
	}
	for _, d := range devices {
		d.CloudToDeviceMessageCount = pending[d.DeviceID]
	}
	return nil
}

// UpdateDevice changes a device's status, authentication, capabilities
// and scopes, if ifMatch matches its etag. A device that becomes an edge
// device gets the $edgeAgent and $edgeHub modules it lacks.
func (h *Hub) UpdateDevice(ctx context.Context, d twinhub.Device, ifMatch string) (*twinhub.Device, error) {
	disabled, becameEdge := false, false
	rec, err := h.modify(ctx, twinhub.DeviceKey(d.DeviceID), func(rec *twinhub.Record) error {
		// A fresh copy each attempt: an attempt on a stale record must
		// leave nothing (keys, status) to the next.
		d := d
		old := rec.Device
		if !etagMatches(ifMatch, old.ETag) {
			return twinhub.ErrPreconditionFailed("device")
		}
		if d.Status == "" {
			d.Status = old.Status
		}
		if d.Status != twinhub.StatusEnabled && d.Status != twinhub.StatusDisabled {
			return twinhub.ErrInvalid("status must be enabled or disabled, not %q", d.Status)
		}
		if err := twinhub.NormalizeAuth(&d.Authentication, &old.Authentication); err != nil {
			return err
		}
		scope, parents, err := h.scopes(ctx, &d, old, old.GenerationID)
		if err != nil {
			return err
		}
		becameEdge = d.Capabilities.IoTEdge && !old.Capabilities.IoTEdge
		old.DeviceScope, old.ParentScopes = scope, parents
		if d.Status != old.Status {
			old.StatusUpdatedTime = twinhub.Now()
		}
		disabled = d.Status == twinhub.StatusDisabled && old.Status != twinhub.StatusDisabled
		old.Status, old.StatusReason = d.Status, d.StatusReason
		old.Authentication, old.Capabilities = d.Authentication, d.Capabilities
		rec.IdentityVersion++
		return nil
	})
	if err != nil {
		return nil, err
	}
	if disabled {
		// IoT Hub drops the connections of a device it disables.
		h.RevokeConnections(twinhub.DeviceKey(d.DeviceID))
	}
	if becameEdge {
		if err := h.createEdgeModules(ctx, d.DeviceID); err != nil {
			return nil, err
		}
	}
	return rec.rec.DeviceCopy(), nil
}

// DeleteDevice removes a device, its twin and its modules.
func (h *Hub) DeleteDevice(ctx context.Context, id, ifMatch string) error {
	if err := h.deleteRecord(ctx, twinhub.DeviceKey(id), ifMatch); err != nil {
		return err
	}
	// Closes the device's connections and its modules'.
	h.RevokeConnections(twinhub.DeviceKey(id))
	// A device created again under this id must not get the old one's
	// cloud-to-device messages.
	if q := h.c2d; q != nil {
		if _, err := q.Purge(ctx, id); err != nil {
			h.log.Warn("purging the deleted device's cloud-to-device queue", "device", id, "err", err)
		}
	}
	mods, err := h.modulesOf(ctx, id)
	if err != nil {
		return err
	}
	for _, m := range mods {
		err := h.store.Delete(ctx, twinhub.ModuleKey(id, m.ModuleID), 0)
		h.cache.drop(twinhub.ModuleKey(id, m.ModuleID), 0)
		if err != nil && !errors.Is(err, twinhub.ErrNotFound) {
			return err
		}
	}
	return nil
}

// ListDevices returns up to max devices (all when max <= 0) in id order.
func (h *Hub) ListDevices(ctx context.Context, max int) ([]*twinhub.Device, error) {
	if err := h.catchUp(ctx); err != nil {
		return nil, err
	}
	// The index's devices are shared: the count goes on copies.
	devices := h.index.ListDevices(max)
	for i, d := range devices {
		c := *d
		devices[i] = &c
	}
	if err := h.countC2D(ctx, "", devices); err != nil {
		return nil, err
	}
	return devices, nil
}

// Statistics counts devices by status and connection state.
func (h *Hub) Statistics(ctx context.Context) (twinhub.DeviceStatistics, twinhub.ServiceStatistics, error) {
	if err := h.catchUp(ctx); err != nil {
		return twinhub.DeviceStatistics{}, twinhub.ServiceStatistics{}, err
	}
	ds, ss := h.index.Statistics()
	return ds, ss, nil
}

// CreateModule registers a module on an existing device. Ids that begin
// with $ are IoT Edge's: only its two system modules may be created (the
// hub creates them for edge devices; an import or a user may create them
// again).
func (h *Hub) CreateModule(ctx context.Context, m twinhub.Module) (*twinhub.Module, error) {
	return h.CreateModuleWithTwin(ctx, m, nil)
}

// CreateModuleWithTwin is CreateModule with a first change to the new
// twin, stored in the same write; u may be nil.
func (h *Hub) CreateModuleWithTwin(ctx context.Context, m twinhub.Module, u *twinhub.TwinUpdate) (*twinhub.Module, error) {
	if twinhub.IsSystemModule(m.ModuleID) && m.ModuleID != twinhub.EdgeAgentModule && m.ModuleID != twinhub.EdgeHubModule {
		return nil, twinhub.ErrInvalid("module id '%s': ids that begin with $ are reserved for IoT Edge's %s and %s", m.ModuleID, twinhub.EdgeAgentModule, twinhub.EdgeHubModule)
	}
	return h.createModule(ctx, m, u)
}

func (h *Hub) createModule(ctx context.Context, m twinhub.Module, u *twinhub.TwinUpdate) (*twinhub.Module, error) {
	if err := twinhub.ValidateID("device", m.DeviceID); err != nil {
		return nil, err
	}
	if err := twinhub.ValidateID("module", m.ModuleID); err != nil {
		return nil, err
	}
	if _, err := h.get(ctx, twinhub.DeviceKey(m.DeviceID)); err != nil {
		return nil, err
	}
	if err := twinhub.NormalizeAuth(&m.Authentication, nil); err != nil {
		return nil, err
	}
	now := twinhub.Now()
	rec := &twinhub.Record{
		Module: &twinhub.Module{
			ModuleID:        m.ModuleID,
			DeviceID:        m.DeviceID,
			ManagedBy:       m.ManagedBy,
			GenerationID:    twinhub.NewGenerationID(),
			ConnectionState: twinhub.StateDisconnected,
			Authentication:  m.Authentication,
		},
		IdentityVersion: 1,
		Twin:            twinhub.NewTwin(now),
	}
	if u != nil {
		if err := rec.Twin.Apply(*u, now); err != nil {
			return nil, err
		}
	}
	rec.SetETags()
	rev, err := h.store.Create(ctx, twinhub.ModuleKey(m.DeviceID, m.ModuleID), rec)
	if errors.Is(err, twinhub.ErrExists) {
		return nil, twinhub.Errorf(http.StatusConflict, "ModuleAlreadyExistsOnDevice", "A module with ID '%s' is already registered on device '%s'", m.ModuleID, m.DeviceID)
	} else if err != nil {
		return nil, err
	}
	h.cache.put(twinhub.ModuleKey(m.DeviceID, m.ModuleID), rec, rev)
	return rec.ModuleCopy(), nil
}

// GetModule reads a module identity.
func (h *Hub) GetModule(ctx context.Context, id, mid string) (*twinhub.Module, error) {
	rec, err := h.get(ctx, twinhub.ModuleKey(id, mid))
	if err != nil {
		return nil, err
	}
	return rec.ModuleCopy(), nil
}

// UpdateModule changes a module's authentication, if ifMatch matches.
func (h *Hub) UpdateModule(ctx context.Context, m twinhub.Module, ifMatch string) (*twinhub.Module, error) {
	rec, err := h.modify(ctx, twinhub.ModuleKey(m.DeviceID, m.ModuleID), func(rec *twinhub.Record) error {
		m := m // as in UpdateDevice
		old := rec.Module
		if !etagMatches(ifMatch, old.ETag) {
			return twinhub.ErrPreconditionFailed("module")
		}
		if err := twinhub.NormalizeAuth(&m.Authentication, &old.Authentication); err != nil {
			return err
		}
		old.Authentication = m.Authentication
		if m.ManagedBy != "" {
			old.ManagedBy = m.ManagedBy
		}
		rec.IdentityVersion++
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rec.rec.ModuleCopy(), nil
}

// DeleteModule removes a module and its twin.
func (h *Hub) DeleteModule(ctx context.Context, id, mid, ifMatch string) error {
	if err := h.deleteRecord(ctx, twinhub.ModuleKey(id, mid), ifMatch); err != nil {
		return err
	}
	h.RevokeConnections(twinhub.ModuleKey(id, mid))
	return nil
}

// ListModules returns the modules of a device (404 if the device is unknown).
func (h *Hub) ListModules(ctx context.Context, id string) ([]*twinhub.Module, error) {
	if _, err := h.get(ctx, twinhub.DeviceKey(id)); err != nil {
		return nil, err
	}
	return h.modulesOf(ctx, id)
}

// modulesOf returns the modules the index has of device id, once it has
// caught up with the store; the device itself may be gone.
func (h *Hub) modulesOf(ctx context.Context, id string) ([]*twinhub.Module, error) {
	if err := h.catchUp(ctx); err != nil {
		return nil, err
	}
	return h.index.ListModules(id), nil
}
