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
	"github.com/twinhub/twinhub/sas"
)

// Cloud-to-device send: the service SDKs attach a sender to
// /messages/devicebound and send each message with to =
// /devices/<id>/messages/devicebound. Each goes into the device's queue
// as a REST send would (hub.SendC2D: same limits, expiry and ack modes);
// the delivery is accepted once the message is stored, or rejected with
// the AMQP condition the SDKs map.

const c2dNode = "messages/devicebound"

// authorizedService reports whether a grant of the connection (a policy
// token put on $cbs, or the policy of SASL PLAIN) allows a service
// operation on resource with one of the rights, as REST would allow it.
func (c *conn) authorizedService(resource string, anyOf ...sas.Permission) error {
	var last error = twinhub.Errorf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "no shared access policy's token was put on $cbs for this connection")
	for _, g := range c.grants.policies {
		if err := c.srv.hub.AuthorizeServiceOn(g.token, resource, anyOf...); err != nil {
			last = err
			continue
		}
		return nil
	}
	return last
}

// sendC2D stores one message of the /messages/devicebound link. It runs
// on the link's worker, without the connection's lock, which it takes to
// read the grants.
func (c *conn) sendC2D(m wire.Message) wire.Described {
	c.mu.Lock()
	err := c.authorizedService("", sas.ServiceConnect)
	c.mu.Unlock()
	if err != nil {
		return rejected(condUnauthorized, twinhub.AsError(err).Message)
	}
	deviceID, ok := deviceOfTo(m.Properties.To)
	if !ok {
		return rejected(condInvalidField, fmt.Sprintf("to %q is not /devices/<id>/messages/devicebound", m.Properties.To))
	}
	msg := &twinhub.C2DMessage{
		MessageID:       idString(m.Properties.MessageID),
		CorrelationID:   idString(m.Properties.CorrelationID),
		UserID:          string(m.Properties.UserID),
		ContentType:     string(m.Properties.ContentType),
		ContentEncoding: string(m.Properties.ContentEncoding),
		Body:            bodyOf(m),
	}
	for _, e := range m.ApplicationProperties {
		k, ok := e.Key.(string)
		if !ok {
			continue
		}
		if strings.EqualFold(k, "iothub-ack") {
			msg.Ack, _ = e.Value.(string)
			continue
		}
		msg.Properties = append(msg.Properties, twinhub.Property{Key: k, Value: textValue(e.Value)})
	}
	// An absolute-expiry-time at or before the epoch means none
	// (amenzhinsky always sets it).
	var ttl time.Duration
	if exp := m.Properties.AbsoluteExpiryTime; exp.After(time.Unix(0, 0)) {
		if ttl = time.Until(exp); ttl <= 0 {
			return rejected(condInvalidField, "the message expired before it was sent")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.srv.hub.SendC2D(ctx, deviceID, msg, ttl); err != nil {
		e := twinhub.AsError(err)
		return rejected(conditionOf(e), e.Message)
	}
	return wire.Accepted
}

// deviceOfTo reads the device of "/devices/<id>/messages/devicebound"
// (the id URL-encoded or not).
func deviceOfTo(to string) (string, bool) {
	rest, ok := strings.CutPrefix(to, "/devices/")
	if !ok {
		return "", false
	}
	id, tail, ok := strings.Cut(rest, "/")
	if !ok || !strings.EqualFold(tail, c2dNode) || id == "" {
		return "", false
	}
	if u, err := url.PathUnescape(id); err == nil {
		id = u
	}
	return id, true
}

// idString is a message-id or correlation-id as C2D messages keep them: a
// string (the SDKs send strings or UUIDs).
func idString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case wire.UUID:
		return fmt.Sprintf("%x-%x-%x-%x-%x", x[0:4], x[4:6], x[6:8], x[8:10], x[10:16])
	case []byte:
		return string(x)
	}
	return fmt.Sprint(v)
}

// conditionOf is the AMQP condition of a hub error, as the SDKs map them
// (AMQP.md; the Node SDK's DeviceNotFoundError comes from amqp:not-found).
func conditionOf(e *twinhub.Error) wire.Symbol {
	switch {
	case e.Status == http.StatusNotFound:
		return condNotFound
	case e.Code == "DeviceMaximumQueueDepthExceeded":
		return condResourceLimit
	case e.Status == http.StatusRequestEntityTooLarge:
		return condMessageSize
	case e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden:
		return condUnauthorized
	case e.Status == http.StatusTooManyRequests:
		return condThrottled
	case e.Status < 500:
		return condInvalidField
	}
	return condInternalError
}

// rejected is the rejected outcome with an error.
func rejected(cond wire.Symbol, desc string) wire.Described {
	return wire.State(wire.CodeRejected, (&wire.Error{Condition: cond, Description: desc}).Field())
}
