package amqp

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/amqp/wire"
)

// The device side: devices and modules (azure-iot-device-amqp, the C# and
// Java SDKs' default transport) put their own SAS token, or a policy's
// with DeviceConnect, on $cbs for the audience <host>/devices/<id>[/modules/<m>],
// then attach links to their own addresses:
//
//	/devices/<id>[/modules/<m>]/messages/events   telemetry (device sends)
//
// A link is authenticated when it attaches, as MQTT authenticates a
// CONNECT (the identity exists and is enabled, the token is its own or a
// DeviceConnect policy's); each message then needs the grant it came
// with to be unexpired (renewed in place by a new put-token).

const telemetrySuffix = "messages/events"

// parseDeviceAddress reads "devices/<id>[/modules/<m>]/<rest>" (the ids
// URL-decoded, as the Node SDK encodes them).
func parseDeviceAddress(address string) (k twinhub.Key, rest string, ok bool) {
	parts := strings.SplitN(address, "/", 5)
	if len(parts) < 3 || !strings.EqualFold(parts[0], "devices") || parts[1] == "" {
		return twinhub.Key{}, "", false
	}
	unescape := func(s string) string {
		if u, err := url.PathUnescape(s); err == nil {
			return u
		}
		return s
	}
	if len(parts) >= 5 && strings.EqualFold(parts[2], "modules") && parts[3] != "" {
		return twinhub.ModuleKey(unescape(parts[1]), unescape(parts[3])), parts[4], true
	}
	return twinhub.DeviceKey(unescape(parts[1])), strings.Join(parts[2:], "/"), true
}

// deviceGrant finds a grant that lets the connection act as k: the
// device's (or module's) own token, or a policy's with DeviceConnect,
// authenticated as MQTT authenticates a device; it returns its audience.
func (c *conn) deviceGrant(k twinhub.Key) (string, error) {
	var last error = twinhub.Errorf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "no token of %s was put on $cbs for this connection", k)
	for _, g := range c.grants {
		if g.device != k && g.policy == "" {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.srv.hub.AuthenticateDevice(ctx, g.token, k)
		cancel()
		if err == nil {
			return g.audience, nil
		}
		last = err
	}
	return "", last
}

// grantValid says whether the grant of audience is still there and
// unexpired. Called with mu held.
func (c *conn) grantValid(audience string) bool {
	for _, g := range c.grants {
		if g.audience == audience {
			return time.Now().Before(g.expires)
		}
	}
	return false
}

// attachDevice checks a link to a device's address (the device's grant,
// the direction, the node) and arranges for its messages to be handled.
// It returns the error to refuse the link with.
func (c *conn) attachDevice(l *link, k twinhub.Key, rest string) *wire.Error {
	if !strings.EqualFold(rest, telemetrySuffix) {
		return &wire.Error{Condition: condNotFound, Description: fmt.Sprintf("twinhub serves no device node %q over AMQP yet", rest)}
	}
	if !l.receiving {
		return &wire.Error{Condition: condNotAllowed, Description: "telemetry is sent to /" + l.address + ", not received from it"}
	}
	audience, err := c.deviceGrant(k)
	if err != nil {
		e := twinhub.AsError(err)
		return &wire.Error{Condition: condUnauthorized, Description: e.Message}
	}
	c.startWorker(l, func(m wire.Message) wire.Described { return c.deviceTelemetry(k, audience, m) })
	return nil
}

// deviceTelemetry stores one message of a device's telemetry link, with
// the properties the device gave it. It runs on the link's worker.
func (c *conn) deviceTelemetry(k twinhub.Key, audience string, m wire.Message) wire.Described {
	c.mu.Lock()
	valid := c.grantValid(audience)
	c.mu.Unlock()
	if !valid {
		return rejected(condUnauthorized, fmt.Sprintf("the token of %s on this connection has expired; put a new one on $cbs", k))
	}
	e := &twinhub.Event{
		Identity: k, AuthMethod: "sas",
		MessageID: idString(m.Properties.MessageID), CorrelationID: idString(m.Properties.CorrelationID),
		ContentType: string(m.Properties.ContentType), ContentEncoding: string(m.Properties.ContentEncoding),
		UserID: string(m.Properties.UserID), To: m.Properties.To,
		Body: bodyOf(m),
	}
	for _, p := range m.ApplicationProperties {
		key, ok := p.Key.(string)
		if !ok {
			continue
		}
		e.Properties = append(e.Properties, twinhub.Property{Key: key, Value: textValue(p.Value)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.srv.hub.SendEvent(ctx, e); err != nil {
		te := twinhub.AsError(err)
		return rejected(conditionOf(te), te.Message)
	}
	return wire.State(wire.CodeAccepted)
}

// bodyOf is a message's body as bytes: its data sections, or an
// amqp-value string or binary.
func bodyOf(m wire.Message) []byte {
	if m.Data != nil {
		return m.Data
	}
	switch v := m.Value.(type) {
	case string:
		return []byte(v)
	case []byte:
		return v
	}
	return nil
}

// textValue is an application property's value as the text IoT Hub keeps.
func textValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case wire.Symbol:
		return string(x)
	case []byte:
		return string(x)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}
