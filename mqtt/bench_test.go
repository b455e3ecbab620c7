package mqtt_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/internal/hubtest"
	"github.com/twinhub/twinhub/mqtt"
)

func BenchmarkParseTopic(b *testing.B) {
	for _, topic := range []string{
		"$iothub/twin/GET/?$rid=6f1c4b6e-8d1f-4a4e-9e0e-7c1b8b7f3f10",
		"$iothub/twin/PATCH/properties/reported/?$rid=1f",
		"devices/dev1/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8&temperatureAlert=true",
	} {
		b.Run(topic[:12], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := mqtt.ParseTopic(topic); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReportedPatchRoundTrip: devices on their own TLS connections
// each send a reported patch and wait for the 204, in parallel; one op is
// one patch acknowledged after the hub stored it (embedded JetStream).
func BenchmarkReportedPatchRoundTrip(b *testing.B) {
	e := newEnv(b, mqtt.Options{})
	runConnected(b, e, func(pb *testing.PB, id string, r *raw) {
		for seq := 1; pb.Next(); seq++ {
			rid := strconv.Itoa(seq)
			r.write(packets.Packet{
				FixedHeader: packets.FixedHeader{Type: packets.Publish},
				TopicName:   "$iothub/twin/PATCH/properties/reported/?$rid=" + rid,
				Payload:     []byte(`{"temperature":` + rid + `,"connectivity":{"type":"cellular"}}`),
			})
			pk, err := r.read(10 * time.Second)
			if err != nil {
				b.Errorf("waiting for the reply: %v", err)
				return
			}
			if pk.TopicName[:21] != "$iothub/twin/res/204/" {
				b.Errorf("reply %s", pk.TopicName)
				return
			}
		}
	})
}

// BenchmarkUpdateReportedDirect is the same work as
// BenchmarkReportedPatchRoundTrip without MQTT: hub.UpdateReported called
// by as many goroutines, so that the two tell what the protocol costs.
func BenchmarkUpdateReportedDirect(b *testing.B) {
	e := newEnv(b, mqtt.Options{})
	const parallelism = 8
	n := parallelism * 8
	for i := range n {
		e.device(fmt.Sprintf("bench-%d", i))
	}
	var next atomic.Int64
	b.SetParallelism(parallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		k := twinhub.DeviceKey(fmt.Sprintf("bench-%d", next.Add(1)-1))
		for seq := 1; pb.Next(); seq++ {
			patch, err := twinhub.ParsePatch("reported", []byte(`{"temperature":`+strconv.Itoa(seq)+`,"connectivity":{"type":"cellular"}}`))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := e.hub.UpdateReported(context.Background(), k, patch); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkConnect: one op is a TLS handshake, a CONNECT with a SAS token
// checked against the registry, the connection recorded on the twin, the
// CONNACK, and a DISCONNECT (whose state write follows asynchronously).
func BenchmarkConnect(b *testing.B) {
	e := newEnv(b, mqtt.Options{})
	const parallelism = 4
	n := parallelism * 8
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = e.device(fmt.Sprintf("conn-%d", i))
	}
	var next atomic.Int64
	b.SetParallelism(parallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1) - 1)
		id := fmt.Sprintf("conn-%d", i)
		for pb.Next() {
			r := e.dialRaw()
			if rc := r.connect(id, username(id), tokens[i], 60); rc != 0 {
				b.Errorf("CONNACK %d", rc)
				return
			}
			r.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
			r.nc.Close()
		}
	})
}

// BenchmarkTelemetryRoundTrip: devices on their own TLS connections each
// send a QoS 1 telemetry message of 256 bytes and wait for its PUBACK, in
// parallel, as the bench's telemetry scenario does; one op is one message
// acknowledged after the hub stored it (embedded JetStream).
func BenchmarkTelemetryRoundTrip(b *testing.B) {
	e := newEnv(b, mqtt.Options{}, hubtest.WithMessaging())
	body := make([]byte, 256)
	runConnected(b, e, func(pb *testing.PB, id string, r *raw) {
		for seq := 1; pb.Next(); seq++ {
			pid := uint16(seq%65535 + 1)
			r.write(packets.Packet{
				FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
				TopicName:   "devices/" + id + "/messages/events/%24.ct=application%2Fjson&site=a",
				PacketID:    pid, Payload: body,
			})
			pk, err := r.read(10 * time.Second)
			if err != nil {
				b.Errorf("waiting for the PUBACK: %v", err)
				return
			}
			if pk.FixedHeader.Type != packets.Puback || pk.PacketID != pid {
				b.Errorf("got %s %d, want PUBACK %d", packets.PacketNames[pk.FixedHeader.Type], pk.PacketID, pid)
				return
			}
		}
	})
}

// BenchmarkMethodRoundTripParallel: Hub.InvokeMethod on devices connected over
// TLS that answer each call at once, in parallel (one call outstanding a
// device); one op is one answered call. It leaves out the REST front end.
func BenchmarkMethodRoundTripParallel(b *testing.B) {
	e := newEnv(b, mqtt.Options{})
	const devices = 16
	for i := range devices {
		id := fmt.Sprintf("bench-%d", i)
		r := e.dialRaw()
		if rc := r.connect(id, username(id), e.device(id), 60); rc != 0 {
			b.Fatalf("CONNACK %d", rc)
		}
		r.write(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
			Filters: packets.Subscriptions{{Filter: "$iothub/methods/POST/#"}},
		})
		r.expect(packets.Suback)
		go func() { // the device: answer every call
			for {
				pk, err := r.read(time.Hour)
				if err != nil {
					return
				}
				rid := pk.TopicName[strings.LastIndexByte(pk.TopicName, '=')+1:]
				r.writeBytes(encodePacket(b, packets.Packet{
					ProtocolVersion: 4,
					FixedHeader:     packets.FixedHeader{Type: packets.Publish},
					TopicName:       "$iothub/methods/res/200/?$rid=" + rid,
					Payload:         []byte(`{"ok":true}`),
				}))
			}
		}()
	}
	var next atomic.Int64
	b.SetParallelism(devices / 2)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		k := twinhub.DeviceKey(fmt.Sprintf("bench-%d", next.Add(1)-1))
		req := twinhub.MethodRequest{MethodName: "ping", Payload: json.RawMessage(`{"n":1}`)}
		for pb.Next() {
			res, err := e.hub.InvokeMethod(context.Background(), k, req)
			if err != nil || res.Status != 200 {
				b.Errorf("%+v %v", res, err)
				return
			}
		}
	})
}

// runConnected runs fn on b.RunParallel's goroutines (8 per GOMAXPROCS),
// each with a device of its own connected over TLS; the devices are made
// and their tokens signed before the timer starts.
func runConnected(b *testing.B, e *env, fn func(pb *testing.PB, id string, r *raw)) {
	const parallelism = 8
	tokens := make([]string, parallelism*8)
	for i := range tokens {
		tokens[i] = e.device(fmt.Sprintf("bench-%d", i))
	}
	var next atomic.Int64
	b.SetParallelism(parallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1) - 1)
		id := fmt.Sprintf("bench-%d", i)
		r := e.dialRaw()
		if rc := r.connect(id, username(id), tokens[i], 60); rc != 0 {
			b.Errorf("CONNACK %d", rc)
			return
		}
		fn(pb, id, r)
	})
}
