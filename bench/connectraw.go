package bench

import (
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/twinhub/twinhub/internal/rawmqtt"
)

// connectRaw makes the connect scenario's connections with the TLS
// baseline's client code: a bare crypto/tls dial, then the MQTT CONNECT
// with a SAS token and the CONNACK, no MQTT library. Its rate over the
// baseline's is the hub's cost of a connection beyond the handshake; the
// paho rate also carries paho's own cost, in this process.
func (e *env) connectRaw() error {
	ids := e.ids("connect-raw", e.cfg.Devices)
	if err := e.createDevices(ids, nil); err != nil {
		return err
	}
	// Tokens are made before the clock starts: a device has its token.
	tokens := make([]string, len(ids))
	for i, id := range ids {
		tok, err := deviceToken(e.t.Host, id, e.key)
		if err != nil {
			return err
		}
		tokens[i] = tok
	}
	conf := e.t.tlsConfig(e.cfg.TLSVersion)
	conns := make([]net.Conn, len(ids))
	rec := newRecorder()
	res := e.measure("connect/raw", "connections", e.cfg.ConnectConcurrency, rec, func() {
		forEach(len(ids), e.cfg.ConnectConcurrency, func(i int) {
			start := time.Now()
			c, err := rawConnect(e.t.MQTTAddr, conf, ids[i], deviceUsername(e.t.Host, ids[i]), tokens[i])
			rec.done(start, err)
			conns[i] = c
		})
	})
	res.note("connect/raw: bare crypto/tls client as in the TLS baseline, then CONNECT (SAS) and CONNACK; no MQTT library")
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	return nil
}

func rawConnect(addr string, conf *tls.Config, id, user, password string) (net.Conn, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, conf)
	if err != nil {
		return nil, err
	}
	rc := rawmqtt.New(c)
	b, err := rawmqtt.Encode(rawmqtt.Connect(id, user, password, 240))
	if err == nil {
		err = rc.Send(b)
	}
	var pk packets.Packet
	if err == nil {
		pk, err = rc.Read(10 * time.Second)
	}
	if err == nil && (pk.FixedHeader.Type != packets.Connack || pk.ReasonCode != 0) {
		err = fmt.Errorf("CONNACK type %d code %d", pk.FixedHeader.Type, pk.ReasonCode)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
