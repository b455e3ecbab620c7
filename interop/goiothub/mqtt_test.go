package goiothub

import (
	"context"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amenzhinsky/iothub/iotdevice"
	iotmqtt "github.com/amenzhinsky/iothub/iotdevice/transport/mqtt"
	"github.com/amenzhinsky/iothub/iotservice"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/twinhub/twinhub/internal/testcerts"
)

// The device side with the SDK's iotdevice package over its MQTT
// transport, on TLS (8883) and on WebSocket (443), with SAS keys and with
// X.509 certificates. Addresses 127.0.0.45 to 127.0.0.49.

// twinRoundTrip is the device half of the twin tutorial: read the twin,
// report a property, get a desired change; the back end sees the report
// and the connection.
func twinRoundTrip(t *testing.T, h *testHub, svc *iotservice.Client, dev *iotdevice.Client, id string) {
	t.Helper()
	ctx := testContext(t)
	sub, err := dev.SubscribeTwinUpdates(ctx)
	if err != nil {
		t.Fatalf("SubscribeTwinUpdates: %v", err)
	}
	desired, reported, err := dev.RetrieveTwinState(ctx)
	if err != nil {
		t.Fatalf("RetrieveTwinState: %v", err)
	}
	if desired.Version() != 1 || reported.Version() != 1 {
		t.Errorf("new twin: desired %v, reported %v; want both at $version 1", desired, reported)
	}
	v, err := dev.UpdateTwinState(ctx, iotdevice.TwinState{"connectivity": map[string]any{"type": "cellular"}})
	if err != nil {
		t.Fatalf("UpdateTwinState: %v", err)
	}
	if v != 2 {
		t.Errorf("UpdateTwinState returned $version %d, want 2", v)
	}
	if _, err := svc.UpdateDeviceTwin(ctx, &iotservice.Twin{DeviceID: id, Properties: &iotservice.Properties{
		Desired: map[string]any{"power_level": 5},
	}}); err != nil {
		t.Fatalf("UpdateDeviceTwin: %v", err)
	}
	select {
	case s := <-sub.C():
		if s["power_level"] != 5.0 || s.Version() != 2 {
			t.Errorf("desired update %v, want power_level 5 at $version 2", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no desired update within 10 s")
	}
	twin, err := svc.GetDeviceTwin(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if at(twin.Properties.Reported, "connectivity", "type") != "cellular" {
		t.Errorf("reported seen by the back end: %v", twin.Properties.Reported)
	}
	if twin.ConnectionState != "Connected" {
		t.Errorf("twin connectionState %q while connected", twin.ConnectionState)
	}
	d, err := svc.GetDevice(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if d.ConnectionState != "Connected" || d.ConnectionStateUpdatedTime == nil || d.LastActivityTime == nil || d.LastActivityTime.Year() < 2000 {
		t.Errorf("registry while connected: state %q, updated %v, last activity %v", d.ConnectionState, d.ConnectionStateUpdatedTime, d.LastActivityTime)
	}
}

// waitDisconnected polls the registry until the device shows Disconnected.
func waitDisconnected(t *testing.T, svc *iotservice.Client, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := svc.GetDevice(testContext(t), id)
		if err != nil {
			t.Fatal(err)
		}
		if d.ConnectionState == "Disconnected" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still %s 10 s after closing", id, d.ConnectionState)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestMQTTDeviceSAS(t *testing.T) {
	t.Parallel()
	h := startHub(t, "127.0.0.45")
	svc := h.Service(t)
	for _, ws := range []bool{false, true} {
		name := "tls"
		if ws {
			name = "websocket"
		}
		t.Run(name, func(t *testing.T) {
			id := "sas-" + name
			_, cs := h.NewDevice(t, svc, id)
			dev, err := iotdevice.NewFromConnectionString(h.MQTTTransport(iotmqtt.WithWebSocket(ws)), cs)
			if err != nil {
				t.Fatal(err)
			}
			if err := dev.Connect(testContext(t)); err != nil {
				t.Fatalf("Connect: %v", err)
			}
			twinRoundTrip(t, h, svc, dev, id)
			dev.Close()
			waitDisconnected(t, svc, id)
		})
	}
}

func thumbprint(c *x509.Certificate) string {
	s := sha1.Sum(c.Raw)
	return strings.ToUpper(hex.EncodeToString(s[:]))
}

// x509Device connects a device with a certificate, over TLS or WebSocket.
func x509Device(t *testing.T, h *testHub, id string, cert tls.Certificate, ws bool) (*iotdevice.Client, error) {
	t.Helper()
	dev, err := iotdevice.NewFromX509Cert(h.MQTTTransport(iotmqtt.WithWebSocket(ws), iotmqtt.WithClientOptionsConfig(func(o *paho.ClientOptions) {
		o.TLSConfig.RootCAs = h.CAPool // WithClientOptionsConfig replaces the harness's hook
		o.SetAutoReconnect(false)
		o.SetConnectRetry(false)
	})), id, h.Addr, &cert)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := dev.Connect(ctx); err != nil {
		return nil, err
	}
	t.Cleanup(func() { dev.Close() })
	return dev, nil
}

func TestMQTTDeviceSelfSignedX509(t *testing.T) {
	t.Parallel()
	h := startHub(t, "127.0.0.46")
	svc := h.Service(t)
	ctx := testContext(t)
	cert := testcerts.Device(t, "x509-dev", nil)
	stranger := testcerts.Device(t, "x509-dev", nil)
	if _, err := svc.CreateDevice(ctx, &iotservice.Device{DeviceID: "x509-dev", Authentication: &iotservice.Authentication{
		Type: iotservice.AuthSelfSigned, X509Thumbprint: &iotservice.X509Thumbprint{PrimaryThumbprint: thumbprint(cert.Leaf)},
	}}); err != nil {
		t.Fatal(err)
	}
	for _, ws := range []bool{false, true} {
		name := "tls"
		if ws {
			name = "websocket"
		}
		t.Run(name, func(t *testing.T) {
			if _, err := x509Device(t, h, "x509-dev", stranger, ws); err == nil {
				t.Fatal("a certificate with another thumbprint was accepted")
			}
			dev, err := x509Device(t, h, "x509-dev", cert, ws)
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			sub, err := dev.SubscribeTwinUpdates(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := dev.RetrieveTwinState(ctx); err != nil {
				t.Fatalf("RetrieveTwinState: %v", err)
			}
			if _, err := dev.UpdateTwinState(ctx, iotdevice.TwinState{"auth": "x509", "ws": ws}); err != nil {
				t.Fatalf("UpdateTwinState: %v", err)
			}
			if _, err := svc.UpdateDeviceTwin(ctx, &iotservice.Twin{DeviceID: "x509-dev", Properties: &iotservice.Properties{
				Desired: map[string]any{"via": name},
			}}); err != nil {
				t.Fatal(err)
			}
			select {
			case s := <-sub.C():
				if s["via"] != name {
					t.Errorf("desired update %v", s)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no desired update within 10 s")
			}
			twin, _ := svc.GetDeviceTwin(ctx, "x509-dev")
			if twin.Properties.Reported["ws"] != ws || twin.AuthenticationType != "selfSigned" {
				t.Errorf("twin after the X.509 device's report: %+v", twin)
			}
			dev.Close()
			waitDisconnected(t, svc, "x509-dev")
		})
	}
}

// TestMQTTDeviceCAX509: a device registered with certificateAuthority
// connects with a certificate the hub's --device-ca signed, its id in the
// CN; a certificate of another CN or CA is refused.
func TestMQTTDeviceCAX509(t *testing.T) {
	t.Parallel()
	ca := testcerts.CA(t, "twinhub test device CA")
	caFile := filepath.Join(t.TempDir(), "device-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Leaf.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	h := startHub(t, "127.0.0.47", "--device-ca", caFile)
	svc := h.Service(t)
	ctx := testContext(t)
	if _, err := svc.CreateDevice(ctx, &iotservice.Device{DeviceID: "ca-dev", Authentication: &iotservice.Authentication{Type: iotservice.AuthCA}}); err != nil {
		t.Fatal(err)
	}
	good := testcerts.Device(t, "ca-dev", &ca)
	otherCN := testcerts.Device(t, "someone-else", &ca)
	selfSigned := testcerts.Device(t, "ca-dev", nil)
	for name, cert := range map[string]tls.Certificate{"another CN": otherCN, "not signed by the CA": selfSigned} {
		if _, err := x509Device(t, h, "ca-dev", cert, false); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, ws := range []bool{false, true} {
		dev, err := x509Device(t, h, "ca-dev", good, ws)
		if err != nil {
			t.Fatalf("Connect (ws=%v): %v", ws, err)
		}
		if _, err := dev.UpdateTwinState(ctx, iotdevice.TwinState{"ca": true}); err != nil {
			t.Fatalf("UpdateTwinState: %v", err)
		}
		dev.Close()
		waitDisconnected(t, svc, "ca-dev")
	}
}

// TestMQTTModule: a module with its own key, through the SDK's module
// transport (whose SAS resource is double-encoded).
func TestMQTTModule(t *testing.T) {
	t.Parallel()
	h := startHub(t, "127.0.0.48")
	svc := h.Service(t)
	ctx := testContext(t)
	h.NewDevice(t, svc, "edge1")
	m, err := svc.CreateModule(ctx, &iotservice.Module{DeviceID: "edge1", ModuleID: "sensor"})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := svc.ModuleConnectionString(m, false)
	if err != nil {
		t.Fatal(err)
	}
	tr := iotmqtt.NewModuleTransport(iotmqtt.WithClientOptionsConfig(func(o *paho.ClientOptions) {
		o.TLSConfig.RootCAs = h.CAPool
		// The module transport dials the credentials' broker, which is
		// empty without an edge gateway.
		o.Servers = nil
		o.AddBroker("tls://" + h.Addr + ":8883")
	}))
	mod, err := iotdevice.NewModuleFromConnectionString(tr, cs, "", "", "", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := mod.Connect(ctx); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer mod.Close()
	sub, err := mod.SubscribeTwinUpdates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mod.UpdateTwinState(ctx, iotdevice.TwinState{"module": "sensor"}); err != nil {
		t.Fatalf("UpdateTwinState: %v", err)
	}
	if _, err := svc.UpdateModuleTwin(ctx, &iotservice.ModuleTwin{DeviceID: "edge1", ModuleID: "sensor", Properties: &iotservice.Properties{
		Desired: map[string]any{"rate": 10},
	}}); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-sub.C():
		if s["rate"] != 10.0 {
			t.Errorf("desired update %v", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no desired update within 10 s")
	}
	mt, err := svc.GetModuleTwin(ctx, "edge1", "sensor")
	if err != nil {
		t.Fatal(err)
	}
	if mt.Properties.Reported["module"] != "sensor" || mt.ConnectionState != "Connected" {
		t.Errorf("module twin %+v", mt)
	}
	dt, _ := svc.GetDeviceTwin(ctx, "edge1")
	if dt.ConnectionState != "Disconnected" {
		t.Errorf("device twin %s while only its module is connected", dt.ConnectionState)
	}
}

// TestMQTTRefusals: the SDK's Connect fails for a wrong key and for a
// disabled device, and the device stays Disconnected.
func TestMQTTRefusals(t *testing.T) {
	t.Parallel()
	h := startHub(t, "127.0.0.49")
	svc := h.Service(t)
	ctx := testContext(t)
	_, cs := h.NewDevice(t, svc, "refused")
	d2, _ := h.NewDevice(t, svc, "disabled")
	d2.Status = iotservice.Disabled
	if _, err := svc.UpdateDevice(ctx, d2); err != nil {
		t.Fatal(err)
	}
	cs2, _ := svc.DeviceConnectionString(d2, false)
	wrongKey := cs[:strings.Index(cs, "SharedAccessKey=")] + "SharedAccessKey=" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	for name, c := range map[string]string{"wrong key": wrongKey, "disabled device": cs2} {
		t.Run(name, func(t *testing.T) {
			dev, err := iotdevice.NewFromConnectionString(h.MQTTTransport(iotmqtt.WithClientOptionsConfig(func(o *paho.ClientOptions) {
				o.TLSConfig.RootCAs = h.CAPool
				o.SetAutoReconnect(false)
				o.SetConnectRetry(false)
			})), c)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			err = dev.Connect(ctx)
			if err == nil {
				dev.Close()
				t.Fatal("connected")
			}
			if !strings.Contains(strings.ToLower(err.Error()), "not authorized") {
				t.Errorf("Connect error %q, want the CONNACK refusal 'not Authorized'", err)
			}
		})
	}
	for _, id := range []string{"refused", "disabled"} {
		d, _ := svc.GetDevice(ctx, id)
		if d.ConnectionState != "Disconnected" {
			t.Errorf("%s is %s after refused connections", id, d.ConnectionState)
		}
	}
}
