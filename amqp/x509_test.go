package amqp_test

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	goamqp "github.com/Azure/go-amqp"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/amqp"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/internal/hubtest"
	"github.com/twinhub/twinhub/internal/testcerts"
)

// TestX509Device: a device registered by its certificate's thumbprint
// needs no CBS: with that certificate on the TLS connection its links
// are admitted and its events say selfSigned; with another certificate,
// or none, its links are refused with amqp:unauthorized-access.
func TestX509Device(t *testing.T) {
	e := newEndpointWith(t, amqp.Options{}, hubtest.WithMessaging())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	good := testcerts.Device(t, "x509-dev", nil)
	stranger := testcerts.Device(t, "x509-dev", nil)
	tp := hub.Thumbprint(good.Leaf)
	if _, err := e.hub.CreateDevice(ctx, twinhub.Device{DeviceID: "x509-dev", Authentication: twinhub.Authentication{
		Type: twinhub.AuthSelfSigned, X509Thumbprint: twinhub.X509Thumbprint{PrimaryThumbprint: &tp}}}); err != nil {
		t.Fatal(err)
	}
	send := func(cert *tls.Certificate) error {
		tc := &tls.Config{RootCAs: e.roots, ServerName: "127.0.0.1"}
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		conn, err := goamqp.Dial("amqps://"+e.addr, &goamqp.ConnOptions{TLSConfig: tc, Timeout: 10 * time.Second})
		if err != nil {
			return err
		}
		defer conn.Close()
		s, err := conn.NewSession(ctx, nil)
		if err != nil {
			return err
		}
		snd, err := s.NewSender(ctx, "/devices/x509-dev/messages/events", nil)
		if err != nil {
			return err
		}
		return snd.Send(ctx, &goamqp.Message{Data: [][]byte{[]byte("by certificate")}})
	}
	if err := send(&good); err != nil {
		t.Fatalf("with the registered certificate: %v", err)
	}
	rctx, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	var ev *twinhub.Event
	e.hub.ReadEvents(rctx, twinhub.EventFilter{Group: "x", FromStart: true, DeviceID: "x509-dev"}, func(got *twinhub.Event) error {
		ev = got
		stop()
		return nil
	})
	if ev == nil || string(ev.Body) != "by certificate" || ev.AuthMethod != twinhub.AuthSelfSigned {
		t.Errorf("event %+v", ev)
	}
	wantCondition(t, "another certificate", send(&stranger), "amqp:unauthorized-access")
	wantCondition(t, "no certificate and no token", send(nil), "amqp:unauthorized-access")
}
