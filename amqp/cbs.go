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
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/metrics"
	"github.com/twinhub/twinhub/sas"
)

// Claims-based security (the $cbs node): a client proves who it is by
// sending SAS tokens as put-token requests on a link to $cbs, and reads
// the answers on a link from $cbs. Each accepted token is a grant of the
// connection, good until the token expires; clients renew them in place
// with new put-tokens. The links to other nodes check the grants (C2D
// send so far).

// grant is a token the connection put: its audience and who it stands
// for (a policy or a device). The token is checked again, as REST would
// check it, at each use: an expired token grants nothing.
type grant struct {
	audience string
	token    string
	policy   string      // a shared access policy's token
	device   twinhub.Key // a device's or module's token
	// expires is the token's expiry, which the links of devices check
	// at each message (they authenticate the device when they attach).
	expires time.Time
	// cert is how a device's grant was made without a token: by its TLS
	// client certificate (selfSigned, certificateAuthority).
	cert hub.DeviceAuth
	// revoked: the identity was deleted or disabled (grantSet.revoke).
	revoked bool
}

// cbsNode is the address of the CBS node.
const cbsNode = "$cbs"

// asText is v as text when it is one of the forms clients send text in:
// a string, a symbol or (pyamqp) binary.
func asText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case wire.Symbol:
		return string(x), true
	case []byte:
		return string(x), true
	}
	return "", false
}

// textOf is a request's string field (asText); "" when absent (ok
// false) or of another type.
func textOf(v any, ok bool) string {
	if !ok {
		return ""
	}
	s, _ := asText(v)
	return s
}

// statusReply is the answer to a request of a request-response node
// ($cbs, $management): correlated by the request's message-id (in its
// type), with an int status-code, its description, and body as an
// amqp-value when set.
func statusReply(request wire.Message, status int, desc string, body any) wire.Message {
	return wire.Message{
		Properties: wire.Properties{CorrelationID: request.Properties.MessageID},
		ApplicationProperties: wire.Map{
			{Key: "status-code", Value: int32(status)},
			{Key: "status-description", Value: desc},
		},
		Value: body,
	}
}

// The CBS status codes, as HTTP's (AMQP.md: an int, 200 on success).
const (
	cbsOK           = 200
	cbsBadRequest   = 400
	cbsUnauthorized = 401
)

// putToken handles one request to $cbs and answers it on the client's
// $cbs receiver. The delivery itself is accepted: the answer says whether
// the token was.
func (c *conn) putToken(m wire.Message) wire.Described {
	status, desc := c.checkToken(m)
	c.srv.log.Debug("amqp put-token", "principal", c.principal, "status", status)
	c.reply(cbsNode, m.Properties.ReplyTo, statusReply(m, status, desc, nil))
	return wire.Accepted
}

// checkToken checks a put-token request and keeps its grant.
func (c *conn) checkToken(m wire.Message) (int, string) {
	get := func(k string) string { return textOf(m.ApplicationProperties.Get(k)) }
	if op := get("operation"); op != "put-token" {
		return cbsBadRequest, fmt.Sprintf("operation %q is not put-token", op)
	}
	audience, token := get("name"), textOf(m.Value, true)
	if audience == "" || token == "" {
		return cbsBadRequest, "put-token needs a name and a SAS token as the body"
	}
	switch typ := get("type"); typ {
	case "servicebus.windows.net:sastoken", "azure-devices.net:sastoken":
	case "jwt", "servicebus.windows.net:jwt":
		// azure-eventhub 5.11 (pyamqp) sends its SAS tokens as "jwt":
		// the token itself says what it is.
		if !strings.HasPrefix(token, "SharedAccessSignature ") {
			return cbsUnauthorized, "twinhub takes SAS tokens, not Azure AD tokens"
		}
	default:
		return cbsBadRequest, fmt.Sprintf("token type %q is not a SAS token", typ)
	}
	t, err := sas.ParseToken(token)
	if err != nil {
		return cbsUnauthorized, err.Error()
	}
	// A device's or module's own token is for the identity its audience
	// names; a policy's token for what its policy grants.
	var k twinhub.Key
	if t.KeyName == "" {
		var ok bool
		if k, ok = identityOf(audience, c.srv.hub.Host()); !ok {
			return cbsUnauthorized, fmt.Sprintf("audience %q names no device", audience)
		}
	}
	g, err := c.admit(audience, token, k)
	if err != nil {
		return cbsUnauthorized, twinhub.AsError(err).Message
	}
	c.grants.put(g)
	return cbsOK, "OK"
}

// admit checks a SAS token as REST would, whether SASL PLAIN or CBS
// brought it: as device k's token when k is set (k's own key, or a
// policy with DeviceConnect), else as a policy's token, good for what
// the policy grants. It returns the grant the token makes for audience.
func (c *conn) admit(audience, token string, k twinhub.Key) (grant, error) {
	t, err := sas.ParseToken(token)
	if err != nil {
		if k != (twinhub.Key{}) {
			c.srv.opts.Metrics.DeviceConnect(metricsTransport, metrics.ConnectCredentials)
		}
		return grant{}, err
	}
	g := grant{audience: audience, token: token, expires: t.Expiry}
	if k == (twinhub.Key{}) {
		resource, err := resourceOf(audience, c.srv.hub.Host())
		if err != nil {
			return grant{}, err
		}
		if err := c.srv.hub.AuthorizeServiceOn(token, resource, sas.ServiceConnect, sas.RegistryRead, sas.RegistryWrite, sas.DeviceConnect); err != nil {
			return grant{}, err
		}
		g.policy = t.KeyName
		return g, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.srv.hub.AuthenticateDevice(ctx, token, k); err != nil {
		// A device's refused token is a refused connection, as over MQTT;
		// an accepted one counts when the device's first link opens.
		c.srv.opts.Metrics.DeviceConnect(metricsTransport, metrics.ConnectRefusal(twinhub.AsError(err).Status))
		return grant{}, err
	}
	g.device = k
	return g, nil
}

// resourceOf is a policy token's audience as the path below the hub's
// host that it is for: "" for the hub itself ("<host>", "https://<host>",
// "sb://<host>/"), "/<entity>/ConsumerGroups/..." for an Event Hubs
// reader's.
func resourceOf(audience, host string) (string, error) {
	a := audience
	if i := strings.Index(a, "://"); i >= 0 {
		a = a[i+3:]
	}
	h, path, _ := strings.Cut(strings.TrimRight(a, "/"), "/")
	if !strings.EqualFold(h, host) {
		return "", twinhub.Errorf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "audience %q is not of this hub, %s", audience, host)
	}
	if path == "" {
		return "", nil
	}
	return "/" + path, nil
}

// identityOf reads the device (or module) of a CBS audience
// "<host>/devices/<id>[/modules/<m>]", as the device SDKs send it (the
// Node SDK URL-encodes it).
func identityOf(audience, host string) (twinhub.Key, bool) {
	if a, err := url.PathUnescape(audience); err == nil {
		audience = a
	}
	audience = strings.TrimPrefix(strings.TrimPrefix(audience, "amqps://"), "https://")
	rest, ok := strings.CutPrefix(strings.ToLower(audience[:min(len(audience), len(host))]), strings.ToLower(host))
	if !ok || rest != "" {
		return twinhub.Key{}, false
	}
	parts := strings.Split(strings.Trim(audience[len(host):], "/"), "/")
	switch {
	case len(parts) == 2 && parts[0] == "devices" && parts[1] != "":
		return twinhub.DeviceKey(parts[1]), true
	case len(parts) == 4 && parts[0] == "devices" && parts[2] == "modules" && parts[1] != "" && parts[3] != "":
		return twinhub.ModuleKey(parts[1], parts[3]), true
	}
	return twinhub.Key{}, false
}
