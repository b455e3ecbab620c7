package reliability

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// telemetryLoad: devices send telemetry at QoS 1 (paho); a message counts
// as acknowledged once its PUBACK came. After the restart every
// acknowledged message must be in the telemetry stream, read back through
// GET /twinhub/events from the start with a fresh consumer group.
type telemetryLoad struct {
	devices []device
	mu      sync.Mutex
	acked   map[string][]int // device id → acknowledged sequence numbers
	next    map[string]int
	group   atomic.Int64
}

func newTelemetryLoad(devices []device) *telemetryLoad {
	w := &telemetryLoad{devices: devices, acked: map[string][]int{}, next: map[string]int{}}
	for _, d := range devices {
		w.next[d.ID] = 1
	}
	return w
}

func (w *telemetryLoad) name() string { return "telemetry (MQTT QoS 1)" }

func (w *telemetryLoad) run(ctx context.Context, t *testing.T, p *proc) {
	var wg sync.WaitGroup
	for _, d := range w.devices {
		wg.Go(func() {
			var dev *pahoDevice
			for ctx.Err() == nil {
				if dev == nil {
					var err error
					if dev, err = p.connectDevice(t, d); err != nil {
						dev = nil
						time.Sleep(50 * time.Millisecond)
						continue
					}
				}
				w.mu.Lock()
				seq := w.next[d.ID]
				w.next[d.ID]++
				w.mu.Unlock()
				topic := fmt.Sprintf("devices/%s/messages/events/$.mid=%s-%d&seq=%d", url.PathEscape(d.ID), d.ID, seq, seq)
				tok := dev.c.Publish(topic, 1, false, fmt.Sprintf(`{"seq":%d}`, seq))
				select {
				case <-tok.Done():
				case <-ctx.Done():
				}
				if ctx.Err() != nil {
					break
				}
				if tok.Error() != nil || !dev.c.IsConnectionOpen() {
					dev.c.Disconnect(0)
					dev = nil
					continue
				}
				w.mu.Lock()
				w.acked[d.ID] = append(w.acked[d.ID], seq)
				w.mu.Unlock()
			}
			if dev != nil {
				dev.c.Disconnect(0)
			}
		})
	}
	wg.Wait()
}

// verify reads each device's events until every acknowledged one was seen
// or none came for 3 s.
func (w *telemetryLoad) verify(t *testing.T, p *proc, c *rest) (acked, found int, problems []string) {
	for _, d := range w.devices {
		w.mu.Lock()
		want := map[int]bool{}
		for _, s := range w.acked[d.ID] {
			want[s] = false
		}
		w.mu.Unlock()
		acked += len(want)
		if len(want) == 0 {
			continue
		}
		seen, err := w.read(p, c, d.ID, want)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s telemetry: %v", d.ID, err))
		}
		found += seen
		if seen < len(want) {
			missing := 0
			for s, ok := range want {
				if !ok && missing < 5 {
					problems = append(problems, fmt.Sprintf("%s telemetry: acknowledged message %d lost", d.ID, s))
					missing++
				}
			}
		}
	}
	return acked, found, problems
}

func (w *telemetryLoad) read(p *proc, c *rest, id string, want map[int]bool) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	q := url.Values{
		"api-version":   {apiVersion},
		"consumerGroup": {fmt.Sprintf("crashcheck-%d-%d", time.Now().UnixNano(), w.group.Add(1))},
		"from":          {"start"},
		"deviceId":      {id},
	}
	req, err := http.NewRequestWithContext(ctx, "GET", "https://"+p.Addr+"/twinhub/events?"+q.Encode(), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", p.policyToken("service"))
	hc := &http.Client{Transport: c.hc.Transport} // no overall timeout: a stream
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /twinhub/events: %d", resp.StatusCode)
	}
	lines := make(chan []byte)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			select {
			case lines <- append([]byte(nil), sc.Bytes()...):
			case <-ctx.Done():
				return
			}
		}
	}()
	seen := 0
	idle := time.NewTimer(3 * time.Second)
	defer idle.Stop()
	for seen < len(want) {
		select {
		case line, ok := <-lines:
			if !ok {
				return seen, nil
			}
			var ev struct {
				Body string `json:"body"`
			}
			var body struct {
				Seq int `json:"seq"`
			}
			if json.Unmarshal(line, &ev) == nil && json.Unmarshal([]byte(ev.Body), &body) == nil {
				if done, ok := want[body.Seq]; ok && !done {
					want[body.Seq] = true
					seen++
				}
			}
			idle.Reset(3 * time.Second)
		case <-idle.C:
			return seen, nil
		}
	}
	return seen, nil
}
