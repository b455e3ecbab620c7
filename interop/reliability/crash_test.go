package reliability

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/amenzhinsky/iothub/iotservice"
)

// A workload drives one kind of write at a hub during a round, remembers
// every write the hub acknowledged, and after the hub was killed and
// started again counts how many of them it finds.
//
// Besides twins, telemetry (telemetry_test.go) and cloud-to-device
// messages (c2d_test.go) are workloads; a new kind of write joins the test
// by adding its workload to the loads of TestCrashSafety.
type workload interface {
	name() string
	// run writes until ctx ends, recording what is acknowledged. Errors
	// (the hub dies under it) end nothing: it keeps trying until ctx ends.
	run(ctx context.Context, t *testing.T, p *proc)
	// verify checks the restarted hub and returns the acknowledged writes
	// so far, how many of them are there, and one line per lost write or
	// version gone back.
	verify(t *testing.T, p *proc, c *rest) (acked, found int, problems []string)
}

// slots is how many property names a writer cycles through: write s sets
// "k<s mod slots>" to s, so after the restart every acknowledged s must
// find its slot at s or later (a later write of the same writer).
const slots = 32

func slot(s int) string { return fmt.Sprintf("k%d", s%slots) }

// seqState is what one writer of one twin section had acknowledged.
type seqState struct {
	mu      sync.Mutex
	next    int              // the next sequence number to write (from 1: 0 would match a missing slot)
	acked   []int            // acknowledged sequence numbers
	version map[string]int64 // largest acknowledged version, by name
}

func (s *seqState) ack(seq int, versions map[string]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acked = append(s.acked, seq)
	if s.version == nil {
		s.version = map[string]int64{}
	}
	for k, v := range versions {
		s.version[k] = max(s.version[k], v)
	}
}

// check counts the acknowledged writes found in section (a map of the
// restarted twin) and notes versions that went back.
func (s *seqState) check(what string, section map[string]any, versions map[string]int64) (acked, found int, problems []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, seq := range s.acked {
		v, _ := section[slot(seq)].(float64)
		if int(v) >= seq {
			found++
		} else if len(problems) < 10 {
			problems = append(problems, fmt.Sprintf("%s: acknowledged write %d lost (%s = %v)", what, seq, slot(seq), section[slot(seq)]))
		}
	}
	for name, want := range s.version {
		if versions == nil {
			break
		}
		if got := versions[name]; got < want {
			problems = append(problems, fmt.Sprintf("%s: %s went back from %d (acknowledged) to %d", what, name, want, got))
		}
	}
	return len(s.acked), found, problems
}

// reportedLoad: devices on MQTT (paho) patch their reported properties.
type reportedLoad struct {
	devices []device
	state   map[string]*seqState
}

func (w *reportedLoad) name() string { return "reported patches (MQTT)" }

func (w *reportedLoad) run(ctx context.Context, t *testing.T, p *proc) {
	var wg sync.WaitGroup
	for _, d := range w.devices {
		st := w.state[d.ID]
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
				seq := st.next
				st.next++
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				r, err := dev.patchReported(cctx, map[string]any{slot(seq): seq, "seq": seq})
				cancel()
				if err != nil || !dev.c.IsConnectionOpen() {
					dev.c.Disconnect(0)
					dev = nil
					continue
				}
				if r.Status == http.StatusNoContent {
					st.ack(seq, map[string]int64{"reported $version": r.Version})
				}
			}
			if dev != nil {
				dev.c.Disconnect(0)
			}
		})
	}
	wg.Wait()
}

func (w *reportedLoad) verify(t *testing.T, p *proc, c *rest) (acked, found int, problems []string) {
	for _, d := range w.devices {
		doc := c.owner(t, 200, "GET", "/twins/"+d.ID, nil).json(t)
		rep := doc["properties"].(map[string]any)["reported"].(map[string]any)
		v, _ := rep["$version"].(float64)
		a, f, pr := w.state[d.ID].check(d.ID+" reported", rep, map[string]int64{"reported $version": int64(v)})
		acked, found, problems = acked+a, found+f, append(problems, pr...)
	}
	return acked, found, problems
}

// serviceLoad: a back end (iotservice, the community Go SDK) patches the
// tags and desired properties of the same twins over REST.
type serviceLoad struct {
	devices []device
	state   map[string]*seqState
}

func (w *serviceLoad) name() string { return "desired and tag updates (REST, iotservice)" }

func (w *serviceLoad) run(ctx context.Context, t *testing.T, p *proc) {
	svc, err := newService(p, 10*time.Second)
	if err != nil {
		t.Error(err)
		return
	}
	defer svc.Close()
	var wg sync.WaitGroup
	for _, d := range w.devices {
		st := w.state[d.ID]
		wg.Go(func() {
			for ctx.Err() == nil {
				seq := st.next
				st.next++
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				tw, err := svc.UpdateDeviceTwin(cctx, &iotservice.Twin{
					DeviceID:   d.ID,
					Tags:       map[string]any{slot(seq): seq, "seq": seq},
					Properties: &iotservice.Properties{Desired: map[string]any{slot(seq): seq, "seq": seq}},
				})
				cancel()
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				dv, _ := tw.Properties.Desired["$version"].(float64)
				st.ack(seq, map[string]int64{"twin version": int64(tw.Version), "desired $version": int64(dv)})
			}
		})
	}
	wg.Wait()
}

func (w *serviceLoad) verify(t *testing.T, p *proc, c *rest) (acked, found int, problems []string) {
	for _, d := range w.devices {
		doc := c.owner(t, 200, "GET", "/twins/"+d.ID, nil).json(t)
		props := doc["properties"].(map[string]any)
		desired := props["desired"].(map[string]any)
		tags, _ := doc["tags"].(map[string]any)
		tv, _ := doc["version"].(float64)
		dv, _ := desired["$version"].(float64)
		versions := map[string]int64{"twin version": int64(tv), "desired $version": int64(dv)}
		// Tags and desired come in one PATCH: both must hold the write.
		a, f1, pr := w.state[d.ID].check(d.ID+" desired", desired, versions)
		_, f2, pr2 := w.state[d.ID].check(d.ID+" tags", tags, nil)
		acked, found, problems = acked+a, found+min(f1, f2), append(append(problems, pr...), pr2...)
	}
	return acked, found, problems
}

// TestCrashSafety drives mixed load at a real twinhub, kills it with
// SIGKILL at a random moment, starts it again on the same data folder and
// checks that every acknowledged write is there and no version went back:
// 2 rounds by default, 10 with TWINHUB_LONG=1.
func TestCrashSafety(t *testing.T) {
	rounds := pick(2, 10)
	p := newProc(t, "127.0.0.61")
	c := p.rest()

	const nDevices = 16
	var devices []device
	for i := range nDevices {
		devices = append(devices, c.createDevice(t, fmt.Sprintf("crash-%d", i)))
	}
	// C2D goes to devices that are not connected during the load.
	var c2dDevices []device
	for i := range 4 {
		c2dDevices = append(c2dDevices, c.createDevice(t, fmt.Sprintf("crash-c2d-%d", i)))
	}
	states := func() map[string]*seqState {
		m := map[string]*seqState{}
		for _, d := range devices {
			m[d.ID] = &seqState{next: 1}
		}
		return m
	}
	loads := []workload{
		&reportedLoad{devices: devices, state: states()},
		&serviceLoad{devices: devices, state: states()},
		newTelemetryLoad(devices[:4]),
		newC2DLoad(c2dDevices),
	}

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 6))
	for round := 1; round <= rounds; round++ {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, w := range loads {
			wg.Go(func() { w.run(ctx, t, p) })
		}
		// Kill somewhere between 0.5 s and 3 s (long: 6 s) into the load.
		after := 500*time.Millisecond + time.Duration(rng.Int64N(int64(pick(2500, 5500))*int64(time.Millisecond)))
		time.Sleep(after)
		p.Kill()
		cancel()
		wg.Wait()

		p.Start(t)
		c = p.rest()
		var acked, found int
		for _, w := range loads {
			a, f, problems := w.verify(t, p, c)
			for _, pr := range problems {
				t.Errorf("round %d: %s", round, pr)
			}
			t.Logf("round %d (killed after %s, restarted in %s): %s: acknowledged %d, found %d, lost %d",
				round, after.Round(time.Millisecond), p.Ready.Round(time.Millisecond), w.name(), a, f, a-f)
			acked, found = acked+a, found+f
		}
		t.Logf("round %d: all writes so far: acknowledged %d, found %d, lost %d", round, acked, found, acked-found)
		if acked == 0 {
			t.Errorf("round %d: no write was acknowledged: the load did not run", round)
		}
	}
}
