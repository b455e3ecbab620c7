package jetstream

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/twinhub/twinhub"
)

// TestExternalServer is what `twinhub serve --nats URL` does: connect to a
// NATS server that listens on the network, here one started for the test.
func TestExternalServer(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	defer ns.Shutdown()

	nc, err := Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	s, err := OpenStore(ctx, nc, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k := twinhub.DeviceKey("d1")
	if _, err := s.Create(ctx, k, deviceRecord("d1")); err != nil {
		t.Fatal(err)
	}
	// A second client, as a second twinhub node would be, sees the record.
	nc2, err := Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	s2, err := OpenStore(ctx, nc2, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec, _, err := s2.Get(ctx, k)
	if err != nil || rec.Device.DeviceID != "d1" {
		t.Fatalf("second node reads %v, %v", rec, err)
	}
	if _, err := Connect("nats://127.0.0.1:1"); err == nil {
		t.Error("connecting to nothing succeeded")
	}
}
