package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/sas"
)

// Cloud-to-device messages and telemetry, service side. IoT Hub's SDKs
// send cloud-to-device messages and read telemetry over AMQP, which
// twinhub does not speak yet; until it does, these twinhub routes do it
// over HTTPS with the same SAS tokens (ServiceConnect):
//
//	POST   /twinhub/c2d/{id}          send a message (body = payload)
//	DELETE /devices/{id}/commands     purge the device's queue (IoT Hub's own route)
//	GET    /twinhub/events            stream telemetry, one JSON object a line
//	GET    /messages/serviceBound/feedback, DELETE .../{lockToken},
//	POST   .../{lockToken}/abandon    feedback (IoT Hub's own routes)
//
// A message's properties come in headers, as on IoT Hub's device HTTPS
// API: iothub-messageid, iothub-correlationid, iothub-userid, iothub-ack
// (none, positive, negative, full), iothub-app-<name> for application
// properties, Content-Type and Content-Encoding for the message's own;
// ?ttl=<seconds> sets its time to live (default 3600, at most 172800).

// c2dSent is the answer to a send.
type c2dSent struct {
	MessageID     string       `json:"messageId"`
	ExpiryTimeUTC twinhub.Time `json:"expiryTimeUtc"`
}

func (a *API) sendC2D(r *http.Request) (int, any, error) {
	body, err := readBody(r)
	if err != nil {
		return 0, nil, err
	}
	m := &twinhub.C2DMessage{
		MessageID:       r.Header.Get("iothub-messageid"),
		CorrelationID:   r.Header.Get("iothub-correlationid"),
		UserID:          r.Header.Get("iothub-userid"),
		Ack:             r.Header.Get("iothub-ack"),
		ContentType:     r.Header.Get("Content-Type"),
		ContentEncoding: r.Header.Get("Content-Encoding"),
		Body:            body,
	}
	for name, vs := range r.Header {
		if k, ok := cutPrefixFold(name, "iothub-app-"); ok && len(vs) > 0 {
			m.Properties = append(m.Properties, twinhub.Property{Key: k, Value: vs[0]})
		}
	}
	var ttl time.Duration
	if s := r.URL.Query().Get("ttl"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return 0, nil, twinhub.ErrInvalid("ttl must be a whole number of seconds above 0")
		}
		ttl = time.Duration(n) * time.Second
	}
	if err := a.hub.SendC2D(r.Context(), r.PathValue("id"), m, ttl); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, c2dSent{MessageID: m.MessageID, ExpiryTimeUTC: m.Expiry}, nil
}

// cutPrefixFold is strings.CutPrefix ignoring case; Go canonicalizes
// header names (Iothub-App-Color), and the property keeps the case the
// client wrote after the prefix as far as Go lets it.
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return strings.ToLower(s[len(prefix):]), true
}

// purgeResult is IoT Hub's PurgeMessageQueueResult.
type purgeResult struct {
	TotalMessagesPurged int    `json:"totalMessagesPurged"`
	DeviceID            string `json:"deviceId"`
}

func (a *API) purgeC2D(r *http.Request) (int, any, error) {
	id := r.PathValue("id")
	n, err := a.hub.PurgeC2D(r.Context(), id)
	return http.StatusOK, purgeResult{TotalMessagesPurged: n, DeviceID: id}, err
}

// EventLine is one line of GET /twinhub/events.
type EventLine struct {
	DeviceID   string            `json:"deviceId"`
	ModuleID   string            `json:"moduleId,omitempty"`
	Partition  int               `json:"partition"`
	Sequence   uint64            `json:"sequenceNumber"`
	Enqueued   twinhub.Time      `json:"enqueuedTime"`
	System     map[string]string `json:"systemProperties"`
	Properties map[string]string `json:"properties,omitempty"`
	// Body is the payload as text when it is UTF-8, else BodyBase64.
	Body       string `json:"body,omitempty"`
	BodyBase64 []byte `json:"bodyBase64,omitempty"`
}

// NewEventLine renders an event for the stream.
func NewEventLine(e *twinhub.Event) EventLine {
	l := EventLine{
		DeviceID: e.Identity.DeviceID, ModuleID: e.Identity.ModuleID,
		Partition: e.Partition, Sequence: e.Sequence, Enqueued: e.Enqueued,
		System: map[string]string{"iothub-connection-device-id": e.Identity.DeviceID},
	}
	set := func(k, v string) {
		if v != "" {
			l.System[k] = v
		}
	}
	set("iothub-connection-module-id", e.Identity.ModuleID)
	set("iothub-connection-auth-method", e.AuthMethod)
	set("iothub-connection-auth-generation-id", e.AuthGenerationID)
	set("iothub-enqueuedtime", e.Enqueued.String())
	set("message-id", e.MessageID)
	set("correlation-id", e.CorrelationID)
	set("content-type", e.ContentType)
	set("content-encoding", e.ContentEncoding)
	set("user-id", e.UserID)
	if len(e.Properties) > 0 {
		l.Properties = map[string]string{}
		for _, p := range e.Properties {
			l.Properties[p.Key] = p.Value
		}
	}
	if utf8Valid(e.Body) {
		l.Body = string(e.Body)
	} else {
		l.BodyBase64 = e.Body
	}
	return l
}

func utf8Valid(b []byte) bool { return strings.ToValidUTF8(string(b), "\uFFFD") == string(b) }

// streamEvents is GET /twinhub/events?consumerGroup=G&from=start|now
// [&deviceId=D[&moduleId=M]][&max=N]: events as they arrive, one JSON
// object (EventLine) a line, until the client goes away or N events have
// been sent. The group's position moves past an event once its line is
// written to the connection, so a client that dies may lose the events
// written just before; with max the stream ends exactly after N.
func (a *API) streamEvents(w http.ResponseWriter, r *http.Request) {
	if err := checkAPIVersion(r); err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := a.hub.AuthorizeService(r.Header.Get("Authorization"), sas.ServiceConnect); err != nil {
		a.writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	f := twinhub.EventFilter{Group: q.Get("consumerGroup"), DeviceID: q.Get("deviceId"), ModuleID: q.Get("moduleId")}
	switch q.Get("from") {
	case "", "now":
	case "start":
		f.FromStart = true
	default:
		a.writeError(w, r, twinhub.ErrInvalid("from must be start or now"))
		return
	}
	if f.ModuleID != "" && f.DeviceID == "" {
		a.writeError(w, r, twinhub.ErrInvalid("moduleId needs deviceId"))
		return
	}
	limit := 0
	if s := q.Get("max"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			a.writeError(w, r, twinhub.ErrInvalid("max must be a whole number above 0"))
			return
		}
		limit = n
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	sent := 0
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	if flusher != nil {
		flusher.Flush()
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	err := a.hub.ReadEvents(ctx, f, func(e *twinhub.Event) error {
		if err := enc.Encode(NewEventLine(e)); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		if sent++; sent == limit {
			cancel() // this event counts as read; the stream ends
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		a.log.Warn("telemetry stream ended", "err", err)
	}
}

// Feedback, as in IoT Hub's service.json: GET
// /messages/serviceBound/feedback locks the available records and returns
// them (204 when there are none) with the lock token in the ETag header;
// DELETE /messages/serviceBound/feedback/{lockToken} completes them and
// POST .../{lockToken}/abandon gives them back.

type feedbackBatch struct {
	lockToken string
	records   []twinhub.FeedbackRecord
}

func (b feedbackBatch) setHeaders(h http.Header) { h.Set("ETag", `"`+b.lockToken+`"`) }
func (b feedbackBatch) payload() any             { return b.records }

func (a *API) receiveFeedback(r *http.Request) (int, any, error) {
	token, recs, err := a.hub.ReceiveFeedback(r.Context())
	if errors.Is(err, twinhub.ErrNotFound) {
		return http.StatusNoContent, nil, nil
	}
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, feedbackBatch{lockToken: token, records: recs}, nil
}

func (a *API) completeFeedback(r *http.Request) (int, any, error) {
	return http.StatusNoContent, nil, a.hub.CompleteFeedback(r.Context(), strings.Trim(r.PathValue("lockToken"), `"`))
}

func (a *API) abandonFeedback(r *http.Request) (int, any, error) {
	return http.StatusNoContent, nil, a.hub.AbandonFeedback(r.Context(), strings.Trim(r.PathValue("lockToken"), `"`))
}

// File-upload notifications, as in IoT Hub's service.json: GET
// /messages/serviceBound/filenotifications locks the next notification
// and returns it (204 when there is none) with the lock token in the ETag
// header; DELETE .../{lockToken} completes it, POST
// .../{lockToken}/abandon gives it back.

type lockedNotification struct {
	lockToken string
	n         twinhub.FileNotification
}

func (b lockedNotification) setHeaders(h http.Header) { h.Set("ETag", `"`+b.lockToken+`"`) }
func (b lockedNotification) payload() any             { return b.n }

func (a *API) receiveFileNotification(r *http.Request) (int, any, error) {
	token, n, err := a.hub.ReceiveFileNotification(r.Context())
	if errors.Is(err, twinhub.ErrNotFound) {
		return http.StatusNoContent, nil, nil
	}
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, lockedNotification{lockToken: token, n: n}, nil
}

func (a *API) completeFileNotification(r *http.Request) (int, any, error) {
	return http.StatusNoContent, nil, a.hub.CompleteFileNotification(r.Context(), strings.Trim(r.PathValue("lockToken"), `"`))
}

func (a *API) abandonFileNotification(r *http.Request) (int, any, error) {
	return http.StatusNoContent, nil, a.hub.AbandonFileNotification(r.Context(), strings.Trim(r.PathValue("lockToken"), `"`))
}
