package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
)

// The device side of IoT Hub's HTTPS API, authenticated by the device's
// (or module's) own SAS token, or one of a policy with DeviceConnect, in
// the Authorization header, as the SDKs' Http transports do:
//
//	POST   /devices/{id}/messages/events                  send telemetry (204)
//	POST   /devices/{id}/modules/{mid}/messages/events    a module's telemetry
//	GET    /devices/{id}/messages/deviceBound             receive a C2D message (200, or 204 when none)
//	DELETE /devices/{id}/messages/deviceBound/{etag}      complete it (?reject: reject it)
//	POST   /devices/{id}/messages/deviceBound/{etag}/abandon
//
// Message properties travel in headers: iothub-messageid,
// iothub-correlationid, iothub-userid, iothub-to, iothub-contenttype,
// iothub-contentencoding and iothub-app-<name> for application properties
// (names lowercased, as HTTP header names are case-insensitive). A
// received message carries them the same way, with iothub-expiry,
// iothub-enqueuedtime, iothub-sequencenumber, iothub-deliverycount and
// iothub-ack, and its lock token in ETag; it stays hidden from later
// receives for a minute (twinhub.C2DLockTime) unless settled.

// deviceReply is what a device route answers.
type deviceReply struct {
	status int
	header http.Header
	body   []byte
}

// deviceRoute registers a handler for identity k's own requests.
func (a *API) deviceRoute(pattern string, h func(r *http.Request, k twinhub.Key, auth hub.DeviceAuth) (deviceReply, error)) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := checkAPIVersion(r); err != nil {
			a.writeError(w, r, err)
			return
		}
		k := twinKey(r)
		auth, err := a.hub.AuthenticateDevice(r.Context(), r.Header.Get("Authorization"), k)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		if err := a.throttle(routeClass(pattern)); err != nil {
			a.writeError(w, r, err)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, twinhub.MaxTelemetrySize+1)
		ctx, cancel := context.WithTimeout(r.Context(), defaultDeviceRequestTimeout)
		defer cancel()
		rep, err := h(r.WithContext(ctx), k, auth)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		for name, vs := range rep.header {
			w.Header()[name] = vs
		}
		w.WriteHeader(rep.status)
		w.Write(rep.body)
	})
}

// defaultDeviceRequestTimeout bounds one device request in the hub.
const defaultDeviceRequestTimeout = 30 * time.Second

var noContent = deviceReply{status: http.StatusNoContent}

func (a *API) deviceEvent(r *http.Request, k twinhub.Key, auth hub.DeviceAuth) (deviceReply, error) {
	body, err := readBody(r)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return deviceReply{}, twinhub.ErrTooLarge("message is larger than %d bytes", twinhub.MaxTelemetrySize)
		}
		return deviceReply{}, err
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == batchContentType {
		return a.deviceEventBatch(r, k, auth, body)
	}
	e := &twinhub.Event{
		Identity: k, AuthMethod: auth.Method, AuthGenerationID: auth.GenerationID, Body: body,
		MessageID:       r.Header.Get("iothub-messageid"),
		CorrelationID:   r.Header.Get("iothub-correlationid"),
		UserID:          r.Header.Get("iothub-userid"),
		To:              r.Header.Get("iothub-to"),
		ContentType:     r.Header.Get("iothub-contenttype"),
		ContentEncoding: r.Header.Get("iothub-contentencoding"),
	}
	for name, vs := range r.Header {
		if key, ok := cutPrefixFold(name, "iothub-app-"); ok && len(vs) > 0 {
			e.Properties = append(e.Properties, twinhub.Property{Key: key, Value: vs[0]})
		}
	}
	return noContent, a.hub.SendEvent(r.Context(), e)
}

// batchContentType marks a batch of events in one POST, as the SDKs'
// Http transports send sendEventBatch: a JSON array of
// {"body": <base64>, "base64Encoded": true, "properties": {<name>: <value>}}
// where application properties are named iothub-app-<name> and system
// properties iothub-messageid, iothub-correlationid and so on.
const batchContentType = "application/vnd.microsoft.iothub.json"

func (a *API) deviceEventBatch(r *http.Request, k twinhub.Key, auth hub.DeviceAuth, body []byte) (deviceReply, error) {
	var batch []struct {
		Body          string            `json:"body"`
		Base64Encoded *bool             `json:"base64Encoded"`
		Properties    map[string]string `json:"properties"`
	}
	if err := json.Unmarshal(body, &batch); err != nil {
		return deviceReply{}, twinhub.Errorf(http.StatusBadRequest, "ArgumentInvalid", "the batch is not a JSON array of messages: %v", err)
	}
	events := make([]*twinhub.Event, 0, len(batch))
	for i, m := range batch {
		data := []byte(m.Body)
		if m.Base64Encoded == nil || *m.Base64Encoded {
			var err error
			if data, err = base64.StdEncoding.DecodeString(m.Body); err != nil {
				return deviceReply{}, twinhub.Errorf(http.StatusBadRequest, "ArgumentInvalid", "message %d of the batch: body is not base64", i)
			}
		}
		e := &twinhub.Event{Identity: k, AuthMethod: auth.Method, AuthGenerationID: auth.GenerationID, Body: data}
		for name, v := range m.Properties {
			if key, ok := cutPrefixFold(name, "iothub-app-"); ok {
				e.Properties = append(e.Properties, twinhub.Property{Key: key, Value: v})
				continue
			}
			switch strings.ToLower(name) {
			case "iothub-messageid":
				e.MessageID = v
			case "iothub-correlationid":
				e.CorrelationID = v
			case "iothub-userid":
				e.UserID = v
			case "iothub-contenttype":
				e.ContentType = v
			case "iothub-contentencoding":
				e.ContentEncoding = v
			}
		}
		events = append(events, e)
	}
	for _, e := range events {
		if err := a.hub.SendEvent(r.Context(), e); err != nil {
			return deviceReply{}, err
		}
	}
	return noContent, nil
}

func (a *API) deviceReceive(r *http.Request, k twinhub.Key, _ hub.DeviceAuth) (deviceReply, error) {
	m, err := a.hub.ReceiveC2D(r.Context(), k.DeviceID)
	if errors.Is(err, twinhub.ErrNotFound) {
		return noContent, nil
	}
	if err != nil {
		return deviceReply{}, err
	}
	h := http.Header{}
	set := func(k, v string) {
		if v != "" {
			h.Set(k, v)
		}
	}
	h.Set("ETag", `"`+strconv.FormatUint(m.Seq, 10)+`"`)
	set("iothub-messageid", m.MessageID)
	set("iothub-correlationid", m.CorrelationID)
	set("iothub-userid", m.UserID)
	set("iothub-to", m.To)
	set("iothub-ack", m.Ack)
	set("iothub-expiry", m.Expiry.String())
	set("iothub-enqueuedtime", m.Enqueued.String())
	set("iothub-sequencenumber", strconv.FormatUint(m.Seq, 10))
	set("iothub-deliverycount", strconv.Itoa(m.Deliveries)) // this delivery included: 1 the first time
	set("Content-Type", m.ContentType)
	set("Content-Encoding", m.ContentEncoding)
	for _, p := range m.Properties {
		h.Set("iothub-app-"+p.Key, p.Value)
	}
	return deviceReply{status: http.StatusOK, header: h, body: m.Body}, nil
}

func lockToken(r *http.Request) (uint64, error) {
	t := strings.Trim(r.PathValue("etag"), `"`)
	seq, err := strconv.ParseUint(t, 10, 64)
	if err != nil {
		return 0, twinhub.Errorf(http.StatusPreconditionFailed, "DeviceMessageLockLost", "lock token %q is not one twinhub gave out", t)
	}
	return seq, nil
}

func (a *API) deviceSettle(outcome string) func(*http.Request, twinhub.Key, hub.DeviceAuth) (deviceReply, error) {
	return func(r *http.Request, k twinhub.Key, _ hub.DeviceAuth) (deviceReply, error) {
		seq, err := lockToken(r)
		if err != nil {
			return deviceReply{}, err
		}
		o := outcome
		if o == twinhub.C2DComplete && r.URL.Query().Has("reject") {
			o = twinhub.C2DReject
		}
		return noContent, a.hub.SettleC2D(r.Context(), k.DeviceID, seq, o)
	}
}
