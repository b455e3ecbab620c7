package mqtt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/metrics"
	"github.com/twinhub/twinhub/sas"
	"github.com/twinhub/twinhub/throttle"
)

// CONNACK return codes of MQTT 3.1.1.
const (
	connAccepted            byte = 0
	connBadProtocolVersion  byte = 1
	connIdentifierRejected  byte = 2
	connServerUnavailable   byte = 3
	connBadUsernamePassword byte = 4
	connNotAuthorized       byte = 5
)

// metricsTransport is the transport the metrics count MQTT connections
// under, over TLS and WebSocket alike.
const metricsTransport = "mqtt"

// refusal is a CONNECT that gets a CONNACK with a non-zero return code.
type refusal struct {
	code   byte
	reason string
	// result is what the metrics count it as (metrics.Connect*).
	result string
}

func (r *refusal) Error() string { return fmt.Sprintf("CONNACK %d: %s", r.code, r.reason) }

func refuse(code byte, format string, args ...any) *refusal {
	result := metrics.ConnectUnauthorized
	switch code {
	case connBadProtocolVersion:
		result = metrics.ConnectProtocol
	case connIdentifierRejected:
		result = metrics.ConnectIdentifier
	case connServerUnavailable:
		result = metrics.ConnectUnavailable
	case connBadUsernamePassword:
		result = metrics.ConnectCredentials
	}
	return &refusal{code: code, reason: fmt.Sprintf(format, args...), result: result}
}

// refuseConnect answers a CONNECT that err refuses: a refusal gets its
// CONNACK, anything else (a protocol error) a closed connection.
func (c *conn) refuseConnect(err error) error {
	var r *refusal
	if errors.As(err, &r) {
		c.srv.opts.Metrics.DeviceConnect(metricsTransport, r.result)
		c.writeNow(encode(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: r.code}))
		return fmt.Errorf("%w: %v", errConnectRefused, r)
	}
	c.srv.opts.Metrics.DeviceConnect(metricsTransport, metrics.ConnectProtocol)
	return err
}

// loadSession is the session a CONNECT starts with. CleanSession=1 starts
// afresh and forgets any saved session; CleanSession=0 resumes the saved
// one, wherever it was saved (another node, before a restart), with
// session present set. An unreadable saved session is started afresh.
func (c *conn) loadSession() (subs subscriptions, present bool, err error) {
	ctx, cancel := c.requestContext()
	defer cancel()
	data, found, err := c.srv.sessions.LoadSession(ctx, c.key)
	switch {
	case err != nil:
		return subs, false, err
	case !found:
		return subs, false, nil
	case c.clean:
		return subs, false, c.srv.sessions.DeleteSession(ctx, c.key)
	}
	if subs, err = decodeSession(data); err != nil {
		c.log.Warn("starting afresh: the saved session is unreadable", "identity", c.key.String(), "err", err)
		return subscriptions{}, false, nil
	}
	return subs, true, nil
}

// saveSession saves the subscriptions of a connection with
// CleanSession=0. It is bounded by the request timeout, not by the
// connection, so that it also runs as the connection ends.
func (c *conn) saveSession(subs subscriptions) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.opts.RequestTimeout)
	defer cancel()
	return c.srv.sessions.SaveSession(ctx, c.key, subs.encode())
}

// refreshSession saves the session of a device connected for half the
// session expiry, and again every half of it, so that a store whose
// entries expire that long after their last save keeps it (for when this
// node dies without saving it as the device leaves).
func (c *conn) refreshSession() {
	if err := c.saveSession(c.snapshot()); err != nil && c.ctx.Err() == nil {
		c.log.Warn("saving the session of a connected device", "err", err)
	}
	c.mu.Lock()
	if c.refresh != nil {
		c.refresh.Reset(c.srv.opts.SessionExpiry / 2)
	}
	c.mu.Unlock()
}

// connect checks a CONNECT and, if it is accepted, makes c its identity's
// connection, restores its session and queues the CONNACK. A refused
// client gets its CONNACK and nothing else: no state changes.
func (c *conn) connect(pk *packets.Packet) error {
	k, err := c.checkConnect(pk)
	if err != nil {
		return c.refuseConnect(err)
	}
	c.key = k
	c.clientID = pk.Connect.ClientIdentifier
	c.clean = pk.Connect.Clean
	subs, present, err := c.loadSession()
	if err != nil {
		c.log.Warn("mqtt device refused: its session could not be read", "identity", k.String(), "err", err)
		return c.refuseConnect(refuse(connServerUnavailable, "the session could not be read"))
	}
	ka := time.Duration(pk.Connect.Keepalive) * time.Second
	if ka <= 0 || ka > MaxKeepAlive*time.Second {
		ka = MaxKeepAlive * time.Second
	}
	c.keepAlive = ka
	c.id = c.srv.hub.NewConnectionID()
	c.log = c.log.With("identity", k.String(), "auth", c.auth.Method)

	// Taking over the identity and recording the connection happen under
	// the identity's lock, as do giving it up and recording the
	// disconnection (finish), so that the state stored is the last one.
	// The hub writes the Connected state in the background, in order with
	// the identity's other connection-state writes: IoT Hub documents the
	// state as informational and lagging, and the CONNACK need not wait
	// for a store write. Reads on this node wait for it.
	unlock := c.srv.lockIdentity(k)
	old, ok := c.srv.register(c)
	if !ok {
		unlock()
		return errServerClosing
	}
	c.registered = true
	c.srv.hub.NoteConnectionState(k, true)
	unlock()
	c.srv.opts.Metrics.DeviceConnect(metricsTransport, metrics.ConnectOK)
	c.srv.hub.AnnounceConnection(k, c.id)

	// A session resumed here also has the subscriptions of the connection
	// it replaces on this node, which may not be saved yet.
	if !c.clean && old != nil && old.clientID == c.clientID {
		for f, q := range old.snapshot() {
			if q != 0 {
				subs[f], present = q, true
			}
		}
	}
	// The CONNACK goes out once the session's services are in place: a
	// resumed desired-properties subscription follows the twin from its
	// version before the device can see the CONNACK, so that a change
	// made as soon as the device is connected reaches it (it was lost
	// when the feed started after the CONNACK had gone). What the
	// services send queues behind the CONNACK.
	c.q.hold()
	defer c.q.release()
	if err := c.send(encode(&packets.Packet{
		FixedHeader:    packets.FixedHeader{Type: packets.Connack},
		SessionPresent: present,
		ReasonCode:     connAccepted,
	})); err != nil {
		return err
	}
	c.mu.Lock()
	c.subs = subs
	if !c.clean {
		c.refresh = time.AfterFunc(c.srv.opts.SessionExpiry/2, c.refreshSession)
	}
	c.mu.Unlock()
	if subs.has(FilterDesired) {
		c.startDesired()
	}
	c.startServices(subs)
	c.log.Debug("mqtt device connected", "clean", c.clean, "session_present", present, "keepalive", ka)
	return nil
}

// writeNow writes a packet before the writer runs (the CONNACK of a
// refusal), bounded by the write timeout.
func (c *conn) writeNow(b []byte) {
	c.nc.SetWriteDeadline(time.Now().Add(c.srv.opts.WriteTimeout))
	c.nc.Write(b)
}

// checkConnect validates a CONNECT and authenticates its identity.
func (c *conn) checkConnect(pk *packets.Packet) (twinhub.Key, error) {
	var k twinhub.Key
	name := pk.Connect.ProtocolName
	if !bytes.Equal(name, []byte("MQTT")) || pk.ProtocolVersion != 4 {
		// IoT Hub speaks MQTT 3.1.1 only (MQTT 3.1 says "MQIsdp", v5 5).
		return k, refuse(connBadProtocolVersion, "protocol %q level %d; IoT Hub speaks MQTT 3.1.1 (level 4)", name, pk.ProtocolVersion)
	}
	if code := pk.ConnectValidate(); code != packets.CodeSuccess {
		return k, fmt.Errorf("%w: %s", errProtocol, code.Reason)
	}
	if !c.srv.opts.Throttle.Allow(throttle.Connects) {
		// Before authentication, so that a flood costs the hub no store reads.
		r := refuse(connServerUnavailable, "the hub's rate of new connections is exceeded; retry later")
		r.result = metrics.ConnectThrottled
		return k, r
	}
	k, err := parseClientID(pk.Connect.ClientIdentifier)
	if err != nil {
		return k, refuse(connIdentifierRejected, "%v", err)
	}
	if !pk.Connect.UsernameFlag {
		return k, refuse(connBadUsernamePassword, "no user name; IoT Hub expects <host>/<client id>/?api-version=...")
	}
	if err := checkUsername(string(pk.Connect.Username), c.srv.hub.Host(), pk.Connect.ClientIdentifier); err != nil {
		return k, refuse(connBadUsernamePassword, "%v", err)
	}
	ctx, cancel := c.requestContext()
	defer cancel()
	if pk.Connect.PasswordFlag {
		token := string(pk.Connect.Password)
		if _, err := sas.ParseToken(token); err != nil {
			return k, refuse(connBadUsernamePassword, "password is not a SAS token: %v", err)
		}
		auth, err := c.srv.hub.AuthenticateDevice(ctx, token, k)
		if err != nil {
			return k, authRefusal(err)
		}
		c.auth = auth
		return k, nil
	}
	if len(c.certs) > 0 {
		auth, err := c.srv.hub.AuthenticateDeviceX509(ctx, k, c.certs, c.srv.opts.DeviceCA)
		if err != nil {
			return k, authRefusal(err)
		}
		c.auth = auth
		return k, nil
	}
	return k, refuse(connNotAuthorized, "neither a SAS token nor a client certificate")
}

// authRefusal maps a hub authentication error to a CONNACK: 5 for
// credentials the hub refuses, 3 when the hub could not decide.
func authRefusal(err error) error {
	e := twinhub.AsError(err)
	if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden || e.Status == http.StatusNotFound {
		return refuse(connNotAuthorized, "%s", e.Message)
	}
	return refuse(connServerUnavailable, "%s", e.Message)
}

// parseClientID reads "<device id>" or "<device id>/<module id>".
func parseClientID(id string) (twinhub.Key, error) {
	dev, mod, isModule := strings.Cut(id, "/")
	if err := twinhub.ValidateID("device", dev); err != nil {
		return twinhub.Key{}, fmt.Errorf("client id %q: %v", id, twinhub.AsError(err).Message)
	}
	if !isModule {
		return twinhub.DeviceKey(dev), nil
	}
	if err := twinhub.ValidateID("module", mod); err != nil {
		return twinhub.Key{}, fmt.Errorf("client id %q: %v", id, twinhub.AsError(err).Message)
	}
	return twinhub.ModuleKey(dev, mod), nil
}

// checkUsername accepts the user names the SDKs send:
//
//	<host>/<client id>/?api-version=...&DeviceClientType=...   (Node, Python, C#)
//	<host>/<client id>/api-version=2020-09-30[&model-id=...]  (amenzhinsky/iothub)
//	<host>/<client id>[/]                                        (hand-written clients)
//
// The identity comes from the client id and the credentials; the user name
// must agree with them (the host is the hub's, case-insensitive, and the
// path is the client id) and the rest are options, ignored.
func checkUsername(username, hubHost, clientID string) error {
	host, path, _ := strings.Cut(username, "/")
	if !strings.EqualFold(host, hubHost) {
		return fmt.Errorf("user name %q does not start with the hub's host name %s", truncate(username), hubHost)
	}
	rest, ok := strings.CutPrefix(path, clientID)
	if !ok {
		return fmt.Errorf("user name %q does not name the client id %q", truncate(username), clientID)
	}
	switch {
	case rest == "", rest == "/", strings.HasPrefix(rest, "?"), strings.HasPrefix(rest, "/?"):
		return nil
	case rest[0] == '/' && !strings.Contains(rest[1:], "/") && strings.Contains(rest, "="):
		return nil // the Go SDK's "/api-version=..." without '?'
	}
	return fmt.Errorf("user name %q names more than the client id %q", truncate(username), clientID)
}

func truncate(s string) string {
	if len(s) > 256 {
		return s[:256] + "..."
	}
	return s
}
