package reliability

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// c2dLoad: a back end sends cloud-to-device messages (POST
// /twinhub/c2d/{id}) to devices that are not connected; a send counts as
// acknowledged on 200. After the restart each device connects, subscribes
// and must receive every acknowledged message, which its PUBACK completes,
// so each round starts with empty queues (IoT Hub keeps at most 50
// pending a device: sends over that are refused and not counted).
type c2dLoad struct {
	devices []device
	mu      sync.Mutex
	pending map[string]map[string]bool // device → acknowledged message ids not yet received
	acked   int
	found   int
	seq     int
}

func newC2DLoad(devices []device) *c2dLoad {
	return &c2dLoad{devices: devices, pending: map[string]map[string]bool{}}
}

func (w *c2dLoad) name() string { return "cloud-to-device messages (REST, pending while offline)" }

func (w *c2dLoad) run(ctx context.Context, t *testing.T, p *proc) {
	c := p.rest()
	var wg sync.WaitGroup
	for _, d := range w.devices {
		wg.Go(func() {
			for ctx.Err() == nil {
				w.mu.Lock()
				w.seq++
				id := fmt.Sprintf("c2d-%s-%d", d.ID, w.seq)
				full := len(w.pending[d.ID]) >= 50
				w.mu.Unlock()
				if full {
					select {
					case <-ctx.Done():
					case <-time.After(20 * time.Millisecond):
					}
					continue
				}
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				r, err := c.do(cctx, p.policyToken("service"), "POST", "/twinhub/c2d/"+d.ID, "hello", "iothub-messageid", id)
				cancel()
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				if r.Status == http.StatusOK {
					w.mu.Lock()
					if w.pending[d.ID] == nil {
						w.pending[d.ID] = map[string]bool{}
					}
					w.pending[d.ID][id] = true
					w.acked++
					w.mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
}

// verify connects each device and receives its messages until every
// acknowledged one came or none came for 3 s.
func (w *c2dLoad) verify(t *testing.T, p *proc, c *rest) (acked, found int, problems []string) {
	for _, d := range w.devices {
		w.mu.Lock()
		want := w.pending[d.ID]
		w.pending[d.ID] = nil
		w.mu.Unlock()
		got := make(chan string, 256)
		o := paho.NewClientOptions().
			AddBroker("tls://" + net.JoinHostPort(p.Addr, "8883")).
			SetClientID(d.ID).SetUsername(p.username(d.ID)).
			SetPassword(p.deviceToken(d.ID, d.Key)).
			SetTLSConfig(p.TLSConfig()).
			SetProtocolVersion(4).SetCleanSession(true).SetAutoReconnect(false)
		cl := paho.NewClient(o)
		if tok := cl.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			problems = append(problems, fmt.Sprintf("%s: connect: %v", d.ID, tok.Error()))
			continue
		}
		sub := cl.Subscribe("devices/"+d.ID+"/messages/devicebound/#", 1, func(_ paho.Client, m paho.Message) {
			_, bag, _ := strings.Cut(m.Topic(), "/messages/devicebound/")
			q, _ := url.ParseQuery(bag)
			got <- q.Get("$.mid")
		})
		sub.WaitTimeout(30 * time.Second)
		idle := time.NewTimer(3 * time.Second)
	recv:
		for n := 0; n < len(want); {
			select {
			case id := <-got:
				if want[id] {
					want[id] = false
					n++
				}
				idle.Reset(3 * time.Second)
			case <-idle.C:
				break recv
			}
		}
		idle.Stop()
		cl.Disconnect(250)
		for id, missing := range want {
			if missing {
				problems = append(problems, fmt.Sprintf("%s: acknowledged C2D message %s not pending after the restart", d.ID, id))
			} else {
				found++
			}
		}
	}
	w.mu.Lock()
	w.found += found
	acked, found = w.acked, w.found
	w.mu.Unlock()
	return acked, found, problems
}
