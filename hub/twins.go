package hub

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/twinhub/twinhub"
)

// Twins: reads served as rendered bytes, the one function that changes a
// twin (writeTwin), and the fan-out of desired-property changes to the
// nodes that hold the identity's connections.

// TwinJSON is the twin of a device or module as GET /twins/{id} shows
// it (Record.TwinDoc encoded as json.Marshal encodes it), rendered once
// per revision of the twin. The slice is shared: do not change it.
func (h *Hub) TwinJSON(ctx context.Context, k twinhub.Key) (twin []byte, err error) {
	defer func() { h.metrics.TwinRead("service", resultOf(err)) }()
	e, err := h.getEntry(ctx, k)
	if err != nil {
		return nil, err
	}
	return e.twin()
}

// UpdateTwin makes a back end's change to a twin (PATCH, PUT, bulk
// import, jobs) if ifMatch matches the twin's etag, and returns the new
// twin as TwinJSON does.
func (h *Hub) UpdateTwin(ctx context.Context, k twinhub.Key, u twinhub.TwinUpdate, ifMatch string) ([]byte, error) {
	e, err := h.writeTwin(ctx, k, u, ifMatch)
	h.metrics.TwinUpdate("service", resultOf(err))
	if err != nil {
		return nil, err
	}
	return e.twin()
}

// UpdateReported merges a device's reported-properties patch and returns
// the new reported $version.
func (h *Hub) UpdateReported(ctx context.Context, k twinhub.Key, patch map[string]any) (int64, error) {
	e, err := h.writeTwin(ctx, k, twinhub.TwinUpdate{Reported: patch}, "")
	h.metrics.TwinUpdate("device", resultOf(err))
	if err != nil {
		return 0, err
	}
	return e.rec.Twin.Reported.Version, nil
}

// writeTwin is the one function that changes a twin, whoever asks: it
// checks ifMatch against the twin's etag, applies u (Twin.Apply: the
// limits, versions and metadata), stores the record with compare-and-set
// (modify), and then tells the identity's connections, on every node,
// about a desired change.
func (h *Hub) writeTwin(ctx context.Context, k twinhub.Key, u twinhub.TwinUpdate, ifMatch string) (*cachedRecord, error) {
	var cleared map[string]any
	e, err := h.modifyShallow(ctx, k, func(rec *twinhub.Record) error {
		if !etagMatches(ifMatch, twinhub.TwinETag(rec.Twin.Version)) {
			return twinhub.ErrPreconditionFailed("twin")
		}
		if u.ClearDesired {
			// Devices learn of a cleared section as a patch that
			// removes each of its properties.
			cleared = make(map[string]any, len(rec.Twin.Desired.Values))
			for name := range rec.Twin.Desired.Values {
				cleared[name] = nil
			}
		}
		return rec.Twin.Apply(u, twinhub.Now())
	})
	if err != nil {
		return nil, err
	}
	switch {
	case u.ClearDesired:
		h.publishDesired(k, e.rec.Twin.Desired.Version, cleared)
	case u.Desired != nil:
		patch := u.Desired
		if u.Replace {
			patch = e.rec.Twin.Desired.Values
		}
		h.publishDesired(k, e.rec.Twin.Desired.Version, patch)
	}
	return e, nil
}

// DeviceTwinJSON is the twin as a device reads it over MQTT: desired and
// reported with their versions, without tags or metadata, encoded without
// HTML escaping (MarshalNoHTML) and rendered once per revision of the
// twin. The slice is shared: do not change it.
func (h *Hub) DeviceTwinJSON(ctx context.Context, k twinhub.Key) ([]byte, error) {
	e, err := h.read(ctx, k)
	h.metrics.TwinRead("device", resultOf(err))
	if err != nil {
		return nil, err
	}
	return e.deviceTwin()
}

const desiredSubject = "twinhub.desired."

// DesiredPatch is a desired-property change as devices receive it.
type DesiredPatch struct {
	Version int64          `json:"version"`
	Patch   map[string]any `json:"patch"`
}

// DeviceJSON is the change as devices get it (over MQTT or AMQP): the
// patch with its $version.
func (p DesiredPatch) DeviceJSON() ([]byte, error) {
	body := make(map[string]any, len(p.Patch)+1)
	for k, v := range p.Patch {
		body[k] = v
	}
	body["$version"] = p.Version
	return twinhub.MarshalNoHTML(body)
}

// publishDesired sends a change to every node, which hands it to the
// identity's connections there. A failure is logged, not returned: the
// twin is written, and a device that misses an event reads the twin again
// when it reconnects, as with IoT Hub.
func (h *Hub) publishDesired(k twinhub.Key, version int64, patch map[string]any) {
	if h.bus == nil {
		return
	}
	data, err := json.Marshal(DesiredPatch{Version: version, Patch: patch})
	if err == nil {
		err = h.bus.Publish(desiredSubject+twinhub.EncodeKey(k), data)
	}
	if err != nil {
		h.log.Error("publishing desired-property change", "identity", k.String(), "err", err)
	}
}

func (h *Hub) deliverDesired(subject string, data []byte) {
	k, err := twinhub.DecodeKey(strings.TrimPrefix(subject, desiredSubject))
	if err != nil {
		return
	}
	var p DesiredPatch
	if err := json.Unmarshal(data, &p); err != nil {
		h.log.Error("bad desired-property event", "subject", subject, "err", err)
		return
	}
	h.desired.send(k, p)
}

// SubscribeDesired calls fn with every desired-property change of k as it
// arrives, until cancel is called. fn must not block. Changes made by
// different requests or nodes may arrive out of version order (and, the
// bus delivering at most once, one may be missing): the subscriber puts
// them back in order (mqtt's desiredFeed).
func (h *Hub) SubscribeDesired(k twinhub.Key, fn func(DesiredPatch)) (cancel func()) {
	return h.desired.add(k, fn)
}
