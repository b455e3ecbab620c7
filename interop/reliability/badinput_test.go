package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// nest is a JSON object depth levels deep: {"a":{"a":...{"a":1}}}.
func nest(depth int) string {
	return strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth)
}

// bigObject is a JSON object of n string values of size bytes each.
func bigObject(n, size int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"k%d":"%s"`, i, strings.Repeat("x", size))
	}
	b.WriteString("}")
	return b.String()
}

// TestBadInputREST sends malformed and hostile requests to the REST API,
// each with the status and IoT Hub error code it must get, checks that
// none of them changed the twin, and that a sentinel device and back end
// were served throughout.
func TestBadInputREST(t *testing.T) {
	t.Parallel()
	p := newProc(t, "127.0.0.64")
	c := p.rest()
	c.createDevice(t, "victim")
	s := startSentinel(t, p, c)

	const twin = "/twins/victim"
	patch := func(section, obj string) string {
		if section == "tags" {
			return `{"tags":` + obj + `}`
		}
		return `{"properties":{"desired":` + obj + `}}`
	}
	cases := []struct {
		name         string
		method, path string
		body         string
		header       []string
		status       int
		code         string // iothub-errorcode; "" when not an IoT Hub error
	}{
		{"invalid JSON", "PATCH", twin, `{"tags":`, nil, 400, "ArgumentInvalid"},
		{"JSON after the value", "PATCH", twin, `{}{}`, nil, 400, "ArgumentInvalid"},
		{"array body", "PATCH", twin, `[]`, nil, 400, "ArgumentInvalid"},
		{"tags a string", "PATCH", twin, `{"tags":"x"}`, nil, 400, "ArgumentInvalid"},
		{"desired a number", "PATCH", twin, `{"properties":{"desired":5}}`, nil, 400, "ArgumentInvalid"},
		{"device status a number", "PUT", "/devices/victim", `{"deviceId":"victim","status":5}`, []string{"If-Match", "*"}, 400, "ArgumentInvalid"},
		{"tags over 8 KB", "PATCH", twin, patch("tags", bigObject(3, 3000)), nil, 403, "DeviceModelMaxPropertiesExceeded"},
		{"desired over 32 KB", "PATCH", twin, patch("desired", bigObject(9, 4000)), nil, 403, "DeviceModelMaxPropertiesExceeded"},
		// IoT Hub allows 10 levels of objects below the section; nest(12)
		// under a section has 11.
		{"depth 11 in tags", "PATCH", twin, patch("tags", nest(12)), nil, 400, "ArgumentInvalid"},
		{"depth 11 in desired", "PATCH", twin, patch("desired", nest(12)), nil, 400, "ArgumentInvalid"},
		{"key with a dot", "PATCH", twin, patch("desired", `{"a.b":1}`), nil, 400, "ArgumentInvalid"},
		{"key with a dollar", "PATCH", twin, patch("desired", `{"$a":1}`), nil, 400, "ArgumentInvalid"},
		{"key with a space", "PATCH", twin, patch("tags", `{"a b":1}`), nil, 400, "ArgumentInvalid"},
		{"key with a control character", "PATCH", twin, patch("tags", `{"a\u0001":1}`), nil, 400, "ArgumentInvalid"},
		{"key over 1 KB", "PATCH", twin, patch("tags", `{"`+strings.Repeat("k", 1025)+`":1}`), nil, 400, "ArgumentInvalid"},
		{"string over 4 KB", "PATCH", twin, patch("desired", `{"s":"`+strings.Repeat("x", 4097)+`"}`), nil, 400, "ArgumentInvalid"},
		{"integer 2^52", "PATCH", twin, patch("desired", `{"n":4503599627370496}`), nil, 400, "ArgumentInvalid"},
		{"integer -2^52-1", "PATCH", twin, patch("tags", `{"n":-4503599627370497}`), nil, 400, "ArgumentInvalid"},
		{"invalid UTF-8", "PATCH", twin, patch("tags", "{\"s\":\"\xff\xfe\"}"), nil, 400, "ArgumentInvalid"},
		{"device id with a space", "PUT", "/devices/bad%20id", `{}`, nil, 400, "ArgumentInvalid"},
		{"device id of 129 characters", "PUT", "/devices/" + strings.Repeat("d", 129), `{}`, nil, 400, "ArgumentInvalid"},
		{"device id not ASCII", "PUT", "/devices/%C3%A9t%C3%A9", `{}`, nil, 400, "ArgumentInvalid"},
		{"module id with a slash", "PUT", "/devices/victim/modules/a%2Fb", `{}`, nil, 400, "ArgumentInvalid"},
		{"unknown api-version", "GET", twin + "?api-version=1999-01-01", "", nil, 400, "InvalidProtocolVersion"},
		{"garbage api-version", "GET", twin + "?api-version=latest%00", "", nil, 400, "InvalidProtocolVersion"},
		{"no api-version", "GET", twin + "?", "", nil, 400, "InvalidProtocolVersion"},
		{"body over 1 MB", "PATCH", twin, patch("tags", bigObject(300, 4000)), nil, 413, "MessageTooLarge"},
		{"headers over 64 KB", "GET", twin, "", []string{"X-Junk", strings.Repeat("j", 200<<10)}, 431, ""},
		{"bulk of 101", "POST", "/devices", bulkOf(101), nil, 400, "ArgumentInvalid"},
		{"query not the language", "POST", "/devices/query", `{"query":"DROP TABLE devices"}`, nil, 400, ""},
		{"query a number", "POST", "/devices/query", `{"query":5}`, nil, 400, "ArgumentInvalid"},
	}
	before := c.owner(t, 200, "GET", twin, nil).json(t)
	// Five times over, so that the sentinel is busy during the attack.
	const rounds = 5
	for i := range rounds * len(cases) {
		tc := cases[i%len(cases)]
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var hdr []string
		hdr = append(hdr, tc.header...)
		r, err := c.do(ctx, p.policyToken("iothubowner"), tc.method, tc.path, tc.body, hdr...)
		cancel()
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		code := r.Header.Get("iothub-errorcode")
		if r.Status != tc.status || (tc.code != "" && code != tc.code) {
			t.Errorf("%s: %d %s %.300s, want %d %s", tc.name, r.Status, code, r.Body, tc.status, tc.code)
			continue
		}
		if tc.status != 431 && !bytes.Contains(r.Body, []byte(`"Message":"ErrorCode:`)) {
			t.Errorf("%s: body is not IoT Hub's error shape: %.300s", tc.name, r.Body)
		}
	}
	after := c.owner(t, 200, "GET", twin, nil).json(t)
	if before["version"] != after["version"] || before["etag"] != after["etag"] {
		t.Errorf("refused writes changed the twin: version %v -> %v", before["version"], after["version"])
	}
	// The limits' edges are accepted.
	c.owner(t, 200, "PATCH", twin, patch("desired", `{"n":4503599627370495,"m":-4503599627370496,"s":"`+strings.Repeat("x", 4096)+`","d":`+nest(10)+`}`))
	// A back end cannot write reported properties: they are ignored.
	c.owner(t, 200, "PATCH", twin, `{"properties":{"reported":{"x":1}}}`)
	if rep := c.owner(t, 200, "GET", twin, nil).json(t)["properties"].(map[string]any)["reported"].(map[string]any); rep["x"] != nil {
		t.Errorf("a back end wrote a reported property: %v", rep)
	}
	t.Logf("REST bad input: %d cases, %d times each, refused with the expected status and code; the twin unchanged", len(cases), rounds)
	s.stop(t)
}

func bulkOf(n int) string {
	var entries []map[string]any
	for i := range n {
		entries = append(entries, map[string]any{"id": fmt.Sprintf("bulk-%d", i), "importMode": "create"})
	}
	b, _ := json.Marshal(entries)
	return string(b)
}

// TestBadInputMQTT sends malformed packets, oversized packets, topics
// outside IoT Hub's set and bad twin patches, and tries clients that send
// nothing or stop reading; each gets its error or a closed connection
// while a sentinel device and back end are served throughout.
func TestBadInputMQTT(t *testing.T) {
	t.Parallel()
	p := newProc(t, "127.0.0.65")
	c := p.rest()
	d := c.createDevice(t, "victim")
	s := startSentinel(t, p, c)
	tok := p.deviceToken(d.ID, d.Key)
	user := p.username(d.ID)

	connected := func(t *testing.T) *rawConn {
		r := p.dialMQTT(t)
		if code, err := r.connack(d.ID, user, tok); code != 0 {
			t.Fatalf("CONNECT: %d %v", code, err)
		}
		return r
	}
	pub := func(topic string, qos byte, body string) []byte {
		return packetBytes(publishPacket(topic, qos, 7, []byte(body)))
	}

	// Connections the hub must close (after a CONNACK refusal, or none).
	closes := []struct {
		name      string
		connect   bool   // CONNECT first as the device
		send      []byte // then this
		wantConn  int    // a CONNACK code the hub must send first, or -1
		connState bool
	}{
		{"PUBLISH before CONNECT", false, pub("devices/victim/messages/events/", 0, "{}"), -1, false},
		{"packet type 0", false, []byte{0x00, 0x00}, -1, false},
		{"packet type 15 (AUTH)", false, []byte{0xf0, 0x00}, -1, false},
		{"remaining length of 5 bytes", false, []byte{0x10, 0xff, 0xff, 0xff, 0xff, 0x7f}, -1, false},
		{"CONNECT cut short", false, []byte{0x10, 0x04, 0x00, 0x04, 'M', 'Q'}, -1, false},
		{"CONNECT of MQTT 3.1 (MQIsdp)", false, mqttConnect("MQIsdp", 3, d.ID, user, tok), 1, false},
		{"CONNECT of MQTT 5", false, mqttConnect5(d.ID, user, tok), 1, false},
		{"oversized PUBLISH (300 KB announced)", true, []byte{0x30, 0x80, 0xa6, 0x12}, -1, false},
		{"second CONNECT", true, mqttConnect("MQTT", 4, d.ID, user, tok), -1, false},
		{"PUBLISH outside the IoT Hub topics", true, pub("foo/bar", 0, "x"), -1, false},
		{"PUBLISH to $SYS", true, pub("$SYS/broker", 1, "x"), -1, false},
		{"PUBLISH to another device's telemetry", true, pub("devices/sentinel/messages/events/", 1, "x"), -1, false},
		{"PUBLISH QoS 2", true, pub("devices/victim/messages/events/", 2, "x"), -1, false},
		{"PUBLISH with retain", true, append([]byte{0x31}, pub("devices/victim/messages/events/", 0, "x")[1:]...), -1, false},
		{"PUBLISH with a wildcard topic", true, pub("devices/victim/messages/events/#", 0, "x"), -1, false},
		{"PUBREL out of nowhere", true, []byte{0x62, 0x02, 0x00, 0x01}, -1, false},
		{"PINGREQ with a body", true, []byte{0xc0, 0x01, 0x00}, -1, false},
	}
	for _, tc := range closes {
		var r *rawConn
		if tc.connect {
			r = connected(t)
		} else {
			r = p.dialMQTT(t)
		}
		r.send(tc.send)
		got := r.closed(t, 15*time.Second)
		if tc.wantConn >= 0 && (len(got) != 1 || got[0].FixedHeader.Type != packets.Connack || int(got[0].ReasonCode) != tc.wantConn) {
			t.Errorf("%s: got %d packets before the close, want CONNACK %d", tc.name, len(got), tc.wantConn)
		}
		if tc.wantConn < 0 {
			for _, pk := range got {
				if pk.FixedHeader.Type == packets.Connack || pk.FixedHeader.Type == packets.Puback {
					t.Errorf("%s: the hub answered %s before closing", tc.name, packets.PacketNames[pk.FixedHeader.Type])
				}
			}
		}
		r.nc.Close()
	}
	t.Logf("MQTT: %d malformed or forbidden packets, each closed the connection", len(closes))

	// Twin patches the hub answers with an error on $iothub/twin/res.
	r := connected(t)
	r.send(packetBytes(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "$iothub/twin/res/#"}, {Filter: "#"}, {Filter: "devices/sentinel/messages/devicebound/#"}}}))
	if pk, err := r.read(10 * time.Second); err != nil || pk.FixedHeader.Type != packets.Suback || !bytes.Equal(pk.ReasonCodes, []byte{0, 0x80, 0x80}) {
		t.Errorf("SUBSCRIBE twin, # and another device's C2D: %v %v, want SUBACK [0 0x80 0x80]", pk.ReasonCodes, err)
	}
	patches := []struct {
		name, body string
		status     int
	}{
		{"invalid JSON", `{"a":`, 400},
		{"not an object", `[1,2]`, 400},
		{"depth 11", nest(12), 400},
		{"key with a dot", `{"a.b":1}`, 400},
		{"string over 4 KB", `{"s":"` + strings.Repeat("x", 4097) + `"}`, 400},
		{"integer 2^53", `{"n":9007199254740992}`, 400},
		{"invalid UTF-8", "{\"s\":\"\xc3\x28\"}", 400},
		{"over 32 KB", bigObject(9, 4000), 403},
	}
	for i, tc := range patches {
		rid := fmt.Sprint(100 + i)
		r.send(pub("$iothub/twin/PATCH/properties/reported/?$rid="+rid, 0, tc.body))
		pk, err := r.read(10 * time.Second)
		want := fmt.Sprintf("$iothub/twin/res/%d/?$rid=%s", tc.status, rid)
		if err != nil || pk.TopicName != want {
			t.Errorf("reported patch %s: %q %v, want %q", tc.name, pk.TopicName, err, want)
			continue
		}
		var body struct {
			ErrorCode int    `json:"errorCode"`
			Message   string `json:"message"`
		}
		if err := json.Unmarshal(pk.Payload, &body); err != nil || body.ErrorCode == 0 {
			t.Errorf("reported patch %s: error body %q", tc.name, pk.Payload)
		}
	}
	// The connection is still good.
	r.send(pub("$iothub/twin/GET/?$rid=1", 0, ""))
	if pk, err := r.read(10 * time.Second); err != nil || !strings.HasPrefix(pk.TopicName, "$iothub/twin/res/200/") {
		t.Errorf("twin GET after refused patches: %q %v", pk.TopicName, err)
	}
	r.nc.Close()
	t.Logf("MQTT: %d bad reported patches answered with their error, the connection kept", len(patches))

	// Clients that hold a connection and do nothing useful.
	var silent []func()
	tcpOnly, err := net.Dial("tcp", net.JoinHostPort(p.Addr, "8883"))
	if err != nil {
		t.Fatal(err)
	}
	defer tcpOnly.Close()
	silent = append(silent, func() { expectEOF(t, "TCP without TLS", tcpOnly, 30*time.Second) })
	tlsOnly := p.dialMQTT(t)
	silent = append(silent, func() { tlsOnly.closed(t, 30*time.Second) })
	keepAlive := p.dialMQTT(t)
	keepAlive.send(mqttConnectKeepAlive(d.ID+"/nope", p.username(d.ID+"/nope"), "", 1))
	// (a module that does not exist: refused at once, then closed)
	silent = append(silent, func() { keepAlive.closed(t, 30*time.Second) })
	for _, wait := range silent {
		wait()
	}
	t.Log("MQTT: a TCP client without TLS and a TLS client without CONNECT were closed by the connect timeout")

	// A connected client that keeps its keep-alive promise of 1 s broken.
	lazy := p.dialMQTT(t)
	lazy.send(mqttConnectKeepAlive(d.ID, user, tok, 1))
	if pk, err := lazy.read(10 * time.Second); err != nil || pk.FixedHeader.Type != packets.Connack || pk.ReasonCode != 0 {
		t.Fatalf("CONNECT keep-alive 1: %v", err)
	}
	began := time.Now()
	lazy.closed(t, 30*time.Second)
	t.Logf("MQTT: a client silent after CONNECT with keep-alive 1 s was closed after %s", time.Since(began).Round(100*time.Millisecond))

	// A client that asks and never reads: its twin is 30 KB, it asks for
	// it thousands of times and reads nothing. The hub's queue for it
	// fills and the hub closes it, serving the others meanwhile.
	c.owner(t, 200, "PATCH", "/twins/victim", `{"properties":{"desired":`+bigObject(7, 4000)+`}}`)
	deaf := connected(t)
	sent := 0
	began = time.Now()
	for {
		// Writes succeed while the hub reads; once it has closed the
		// connection, one fails (reset or broken pipe).
		deaf.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := deaf.nc.Write(pub("$iothub/twin/GET/?$rid=1", 0, "")); err != nil {
			break
		}
		sent++
		if time.Since(began) > 90*time.Second {
			t.Fatalf("a client that read nothing was still connected after %d twin GETs", sent)
		}
		if sent > 1000 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	t.Logf("MQTT: a client that sent %d twin GETs (30 KB answers) and read nothing was disconnected", sent)
	s.stop(t)
}

func mqttConnect(protocol string, level byte, clientID, user, password string) []byte {
	pk := connectPacket(clientID, user, password)
	pk.Connect.ProtocolName = []byte(protocol)
	b := packetBytes(pk)
	// ConnectEncode writes the level of the packet's ProtocolVersion (4);
	// the level byte follows the protocol name.
	i := bytes.Index(b, []byte(protocol)) + len(protocol)
	b[i] = level
	return b
}

// mqttConnect5 is an MQTT 5 CONNECT (with its empty properties).
func mqttConnect5(clientID, user, password string) []byte {
	pk := connectPacket(clientID, user, password)
	pk.ProtocolVersion = 5
	pk.Connect.ProtocolName = []byte("MQTT")
	var buf bytes.Buffer
	if err := pk.ConnectEncode(&buf); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func mqttConnectKeepAlive(clientID, user, password string, keepAlive uint16) []byte {
	pk := connectPacket(clientID, user, password)
	pk.Connect.Keepalive = keepAlive
	return packetBytes(pk)
}

// expectEOF waits for the hub to close a raw connection.
func expectEOF(t *testing.T, what string, nc net.Conn, timeout time.Duration) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 1024)
	for {
		if _, err := nc.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Errorf("%s: still open after %s", what, timeout)
			}
			return
		}
	}
}
