package cluster

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/amenzhinsky/iothub/iotdevice"
	"github.com/amenzhinsky/iothub/iotservice"

	"github.com/twinhub/twinhub/internal/servetest"
	"github.com/twinhub/twinhub/sas"
)

// TestReconnectStorm: many devices (TWINHUB_STORM_DEVICES, default 300)
// of the Go SDK over MQTT spread by HAProxy over three nodes; the node
// holding the most is killed with SIGKILL, and all of its devices
// reconnect at once through the others (paho tries again at once after a
// lost connection). Every device must be back, each must still get its
// C2D messages, and the test logs how long the storm took: each device's
// time from the kill to its new CONNACK, as median, p99 and max.
//
// Locally, e.g. TWINHUB_STORM_DEVICES=3000 go test ./interop/cluster
// -run TestReconnectStorm -v (HAProxy's maxconn is 4000).
func TestReconnectStorm(tt *testing.T) {
	t := repeatFailures(tt)
	numDevices := servetest.EnvCount(t, "TWINHUB_STORM_DEVICES", 300, 3, 3500)
	_, nodes, tlsConf, owner := startBehindHAProxy(t)
	svc, err := iotservice.NewFromConnectionString(owner,
		iotservice.WithHTTPClient(&http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf}}), iotservice.WithTLSConfig(tlsConf))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// The devices, created 100 a request with the bulk API.
	var all []*iotservice.Device
	for i := 0; i < numDevices; i += 100 {
		var batch []*iotservice.Device
		for j := i; j < min(i+100, numDevices); j++ {
			primary, errP := sas.GenerateKey()
			secondary, errS := sas.GenerateKey()
			if errP != nil || errS != nil {
				t.Fatal(errP, errS)
			}
			batch = append(batch, &iotservice.Device{DeviceID: fmt.Sprintf("storm-%d", j), Authentication: &iotservice.Authentication{
				Type: iotservice.AuthSAS, SymmetricKey: &iotservice.SymmetricKey{PrimaryKey: primary, SecondaryKey: secondary},
			}})
		}
		res, err := retryCall(ctx, func() (*iotservice.BulkResult, error) { return svc.CreateDevices(ctx, batch) })
		if err != nil || !res.IsSuccessful {
			t.Fatalf("creating devices %d-%d: %v %+v", i, i+len(batch)-1, err, res)
		}
		all = append(all, batch...)
	}

	// Connected 32 at a time, each subscribed to its C2D messages; every
	// connection's time is noted.
	var mu sync.Mutex
	connects := map[string][]time.Time{}
	got := map[string]int{} // C2D message id -> times received
	clients := make([]*iotdevice.Client, len(all))
	began := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(all))
	work := make(chan int)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				id := all[i].DeviceID
				cs, err := svc.DeviceConnectionString(all[i], false)
				if err != nil {
					errs <- err
					continue
				}
				c, err := connectDevice(tlsConf, cs, func() {
					mu.Lock()
					connects[id] = append(connects[id], time.Now())
					mu.Unlock()
				})
				if err != nil {
					errs <- fmt.Errorf("%s: %w", id, err)
					continue
				}
				clients[i] = c
				sub, err := c.SubscribeEvents(ctx)
				if err != nil {
					errs <- fmt.Errorf("%s subscribing to C2D: %w", id, err)
					continue
				}
				go func() {
					for m := range sub.C() {
						mu.Lock()
						got[m.MessageID]++
						mu.Unlock()
					}
				}()
			}
		}()
	}
	for i := range all {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("connecting the devices: %v", err)
	}
	t.Cleanup(func() {
		for _, c := range clients {
			c.Close()
		}
	})
	t.Logf("%d devices connected in %s", numDevices, time.Since(began).Round(time.Millisecond))
	waitUntil(t, time.Minute, "every device counted on a node", func() bool { return connectedDevices(nodes) == numDevices })

	// The node holding the most devices dies.
	var victim *node
	held := 0
	for _, n := range nodes {
		if c, ok := n.connections(); ok && c > held {
			victim, held = n, c
		}
	}
	mu.Lock()
	before := map[string]int{}
	for id, c := range connects {
		before[id] = len(c)
	}
	mu.Unlock()
	killed := time.Now()
	victim.cmd.Process.Kill()
	<-victim.done
	victim.cmd = nil
	back := waitUntil(t, 2*time.Minute, "every device connected again", func() bool { return connectedDevices(nodes) == numDevices })
	var took []time.Duration
	var moved []string
	mu.Lock()
	for id, c := range connects {
		if len(c) > before[id] {
			took = append(took, c[before[id]].Sub(killed))
			moved = append(moved, id)
		}
	}
	mu.Unlock()
	if len(took) < held {
		t.Errorf("%d devices reconnected, but the killed node held %d", len(took), held)
	}
	slices.Sort(took)
	pct := func(p float64) time.Duration {
		return took[min(len(took)-1, int(p*float64(len(took))))].Round(time.Millisecond)
	}
	t.Logf("killed node %s holding %d of %d devices: %d reconnected through the others; from the kill to the CONNACK p10 %s, median %s, p99 %s, max %s; the survivors' metrics showed them all %s after the kill (their metrics are slow while the dead node's streams elect leaders)",
		victim.addr, held, numDevices, len(took), pct(0.1), pct(0.5), pct(0.99), took[len(took)-1].Round(time.Millisecond), back.Sub(killed).Round(time.Millisecond))

	// Each moved device still gets its messages: a C2D message to every
	// one (sent once the streams the dead node led have new leaders).
	sender := svc
	want := map[string]bool{}
	for _, id := range moved {
		mid := "after-" + id
		if _, err := retryCall(ctx, func() (struct{}, error) {
			err := sender.SendEvent(ctx, id, []byte("after the storm"), iotservice.WithSendMessageID(mid))
			if err != nil {
				// iotservice keeps a dead AMQP link: a new client.
				if c, cerr := iotservice.NewFromConnectionString(owner, iotservice.WithTLSConfig(tlsConf)); cerr == nil {
					sender = c
					t.Cleanup(func() { c.Close() })
				}
			}
			return struct{}{}, err
		}); err != nil {
			t.Fatalf("C2D to %s: %v", id, err)
		}
		want[mid] = true
	}
	waitUntil(t, 2*time.Minute, "the C2D message to every reconnected device", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for mid := range want {
			if got[mid] == 0 {
				return false
			}
		}
		return true
	})
}
