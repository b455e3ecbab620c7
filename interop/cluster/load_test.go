package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/amenzhinsky/iothub/iotdevice"
	iotmqtt "github.com/amenzhinsky/iothub/iotdevice/transport/mqtt"
	"github.com/amenzhinsky/iothub/iotservice"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/twinhub/twinhub/internal/servetest"
)

// front is the load balancer's address: the hub's HostName in
// TestKillUnderLoad.
const front = "127.0.0.80"

// startHAProxy runs Debian's haproxy on front with the configuration of
// `twinhub cluster haproxy` (bin): 443, 8883 and 5671 forwarded to the
// nodes in TCP mode, round robin over those that pass a health check every
// 500 ms, until the test ends.
func startHAProxy(t testing.TB, bin string) {
	t.Helper()
	proxy, err := exec.LookPath("haproxy")
	if err != nil {
		if proxy, err = exec.LookPath("/usr/sbin/haproxy"); err != nil {
			t.Fatal("haproxy is not installed (apt-get install haproxy; .ci/run does)")
		}
	}
	cfg, err := exec.Command(bin, append([]string{"cluster", "haproxy", "--front", front}, addrs...)...).Output()
	if err != nil {
		t.Fatalf("twinhub cluster haproxy: %v", err)
	}
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	out := &servetest.Output{}
	cmd := exec.Command(proxy, "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("--- haproxy ---\n%s", out)
		}
	})
}

// startBehindHAProxy starts three nodes named front and HAProxy on front
// until the test ends, and returns the binary, the nodes, a TLS
// configuration that trusts the hub's CA for front, and the owner's
// connection string.
func startBehindHAProxy(t testing.TB) (bin string, nodes []*node, tlsConf *tls.Config, owner string) {
	t.Helper()
	bin = servetest.Binary(t)
	nodes = startNodes(t, bin, front)
	startHAProxy(t, bin)
	caPEM, err := os.ReadFile(filepath.Join(nodes[0].dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tlsConf = &tls.Config{RootCAs: pool, ServerName: front}
	return bin, nodes, tlsConf, strings.TrimSpace(nodes[0].cli(t, bin, "connection-string"))
}

// loadClients are the SDK clients of the test, all through the front.
type loadClients struct {
	tls *tls.Config
	svc *iotservice.Client
}

func (l *loadClients) device(t testing.TB, cs string, onConnect func()) *iotdevice.Client {
	t.Helper()
	c, err := connectDevice(l.tls, cs, onConnect)
	if err != nil {
		t.Fatalf("device connect: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// connectDevice connects a device of the SDK over MQTT (tlsConf trusts
// the hub's CA); onConnect is called on every connection, the first and
// each of paho's reconnects.
func connectDevice(tlsConf *tls.Config, cs string, onConnect func()) (*iotdevice.Client, error) {
	tr := iotmqtt.New(iotmqtt.WithClientOptionsConfig(func(o *paho.ClientOptions) {
		o.TLSConfig.RootCAs = tlsConf.RootCAs
		resubscribe := o.OnConnect
		o.SetOnConnectHandler(func(c paho.Client) {
			resubscribe(c)
			onConnect()
		})
	}))
	c, err := iotdevice.NewFromConnectionString(tr, cs)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// ledger records what the hub acknowledged and what came back.
type ledger struct {
	mu sync.Mutex
	// twinAcked: each writer's last tag value on a device whose PATCH
	// got a 200; twinWrites counts those PATCHes.
	twinAcked  map[tagOf]int
	twinWrites int
	// telemetryAcked: message ids whose PUBACK came.
	telemetryAcked map[string]bool
	// c2dAcked: message ids the hub accepted; c2dGot: how often each
	// reached its device.
	c2dAcked map[string]bool
	c2dGot   map[string]int
	// connects[device]: when its MQTT connection (re)connected.
	connects map[string][]time.Time
}

// tagOf is one writer's tag on one device.
type tagOf struct{ device, tag string }

func (l *ledger) note(f func()) {
	l.mu.Lock()
	f()
	l.mu.Unlock()
}

// TestKillUnderLoad: three nodes behind HAProxy with the SDKs as the only
// clients (amenzhinsky/iothub devices over MQTT and service client over
// REST and AMQP). While twin updates, telemetry and C2D messages flow, a
// node is killed with SIGKILL and later started again, once a round
// (TWINHUB_KILL_ROUNDS, default 1; each round kills the next node). Then:
// every acknowledged twin write is there, every acknowledged telemetry
// message is in the stream exactly once (a device resends one whose
// PUBACK died with its node), every acknowledged C2D message reached its
// device (C2D is at least once, as on IoT Hub: duplicates are counted),
// every device is connected again, and the restarted nodes serve every
// device.
func TestKillUnderLoad(tt *testing.T) {
	t := repeatFailures(tt)
	rounds := servetest.EnvCount(t, "TWINHUB_KILL_ROUNDS", 1, 1, 1000)
	bin, nodes, tlsConf, owner := startBehindHAProxy(t)
	httpClient := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf, MaxIdleConnsPerHost: 16}}
	newService := func() *iotservice.Client {
		c, err := iotservice.NewFromConnectionString(owner, iotservice.WithHTTPClient(httpClient), iotservice.WithTLSConfig(tlsConf))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	svc := newService()
	t.Cleanup(func() { svc.Close() })
	clients := &loadClients{tls: tlsConf, svc: svc}
	led := &ledger{twinAcked: map[tagOf]int{}, telemetryAcked: map[string]bool{}, c2dAcked: map[string]bool{}, c2dGot: map[string]int{}, connects: map[string][]time.Time{}}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const numDevices = 6
	var ids []string
	devices := map[string]*iotdevice.Client{}
	for i := range numDevices {
		id := fmt.Sprintf("load-%d", i)
		d, err := retryCall(ctx, func() (*iotservice.Device, error) { return svc.CreateDevice(ctx, &iotservice.Device{DeviceID: id}) })
		if err != nil {
			t.Fatalf("creating %s: %v", id, err)
		}
		cs, err := svc.DeviceConnectionString(d, false)
		if err != nil {
			t.Fatal(err)
		}
		dev := clients.device(t, cs, func() { led.note(func() { led.connects[id] = append(led.connects[id], time.Now()) }) })
		sub, err := dev.SubscribeEvents(ctx)
		if err != nil {
			t.Fatalf("subscribing %s to C2D: %v", id, err)
		}
		go func() {
			for m := range sub.C() {
				led.note(func() { led.c2dGot[m.MessageID]++ })
			}
		}()
		ids = append(ids, id)
		devices[id] = dev
	}

	// The load, until stop: each device sends telemetry; two writers
	// patch tags; one sender sends C2D. Each records what was
	// acknowledged. Errors (503 during re-election, a connection to the
	// dead node) are expected and the call is not counted.
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; loadCtx.Err() == nil; seq++ {
				mid := fmt.Sprintf("%s-t%d", id, seq)
				sendCtx, cancel := context.WithTimeout(loadCtx, 20*time.Second)
				err := devices[id].SendEvent(sendCtx, []byte(`{"seq":`+strconv.Itoa(seq)+`}`), iotdevice.WithSendMessageID(mid))
				cancel()
				if err == nil {
					led.note(func() { led.telemetryAcked[mid] = true })
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 1; loadCtx.Err() == nil; n++ {
				id := ids[(n+w)%len(ids)]
				val := n*2 + w // each writer's own values, growing
				callCtx, cancel := context.WithTimeout(loadCtx, 20*time.Second)
				_, err := svc.UpdateDeviceTwin(callCtx, &iotservice.Twin{DeviceID: id, ETag: "*", Tags: map[string]any{fmt.Sprintf("w%d", w): val}})
				cancel()
				if err == nil {
					led.note(func() { led.twinAcked[tagOf{id, fmt.Sprintf("w%d", w)}] = val; led.twinWrites++ })
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		// iotservice keeps one AMQP sender link and does not open another
		// when its connection dies, so after an error the sender is a new
		// client.
		sender := newService()
		defer func() { sender.Close() }()
		for n := 0; loadCtx.Err() == nil; n++ {
			id := ids[n%len(ids)]
			mid := fmt.Sprintf("%s-c%d", id, n)
			callCtx, cancel := context.WithTimeout(loadCtx, 10*time.Second)
			err := sender.SendEvent(callCtx, id, []byte("c2d"), iotservice.WithSendMessageID(mid))
			cancel()
			if err == nil {
				led.note(func() { led.c2dAcked[mid] = true })
			} else {
				sender.Close()
				sender = newService()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	// reconnects: how long after a kill each device it held had
	// connected again (paho's OnConnect, through HAProxy).
	var reconnects []time.Duration
	for r := range rounds {
		victim := nodes[r%len(nodes)]
		time.Sleep(3 * time.Second)
		led.mu.Lock()
		before := map[string]int{}
		for id, c := range led.connects {
			before[id] = len(c)
		}
		led.mu.Unlock()
		killed := time.Now()
		victim.cmd.Process.Kill()
		<-victim.done
		victim.cmd = nil
		// The devices it held come back through the others.
		waitUntil(t, 60*time.Second, "the killed node's devices connected again", func() bool {
			return connectedDevices(nodes) == numDevices
		})
		led.mu.Lock()
		for id, c := range led.connects {
			if len(c) > before[id] {
				d := c[before[id]].Sub(killed)
				reconnects = append(reconnects, d)
				t.Logf("round %d: killed node %s; device %s connected again %s later", r+1, victim.addr, id, d.Round(time.Millisecond))
			}
		}
		led.mu.Unlock()
		time.Sleep(3 * time.Second)
		victim.start(t, bin)
		victim.ready(t)
	}
	time.Sleep(2 * time.Second)
	stopLoad()
	wg.Wait()

	// Every acknowledged twin write is there: each writer's last
	// acknowledged value, or a later one of its own.
	for key, val := range led.twinAcked {
		twin, err := retryCall(ctx, func() (*iotservice.Twin, error) { return svc.GetDeviceTwin(ctx, key.device) })
		if err != nil {
			t.Fatalf("reading twin %s: %v", key.device, err)
		}
		got, _ := twin.Tags[key.tag].(float64)
		if int(got) < val {
			t.Errorf("twin %s tag %s is %v; %d was acknowledged", key.device, key.tag, twin.Tags[key.tag], val)
		}
	}
	// Every restarted node serves every device.
	for _, n := range nodes {
		if c := n.count(t, bin, "SELECT COUNT() AS n FROM devices"); c != numDevices {
			t.Errorf("node %s counts %d devices, want %d", n.addr, c, numDevices)
		}
	}
	// Every acknowledged C2D message reaches its device.
	waitUntil(t, 60*time.Second, "every acknowledged C2D message received", func() bool {
		led.mu.Lock()
		defer led.mu.Unlock()
		for mid := range led.c2dAcked {
			if led.c2dGot[mid] == 0 {
				return false
			}
		}
		return true
	})
	// Every acknowledged telemetry message is in the stream.
	seen := readTelemetry(t, bin, nodes[1], led.telemetryAcked)
	dupTelemetry, dupC2D := 0, 0
	for mid := range led.telemetryAcked {
		if seen[mid] == 0 {
			t.Errorf("telemetry %s was acknowledged but is not in the stream", mid)
		}
		if seen[mid] > 1 {
			// A device resends a message whose PUBACK died with its node;
			// the stream keeps one (jetstream.TelemetryDuplicateWindow).
			t.Errorf("telemetry %s is in the stream %d times", mid, seen[mid])
			dupTelemetry++
		}
	}
	for mid := range led.c2dAcked {
		if led.c2dGot[mid] > 1 {
			dupC2D++
		}
	}
	slices.Sort(reconnects)
	if len(reconnects) == 0 {
		t.Fatal("no device reconnected after a kill: did the killed nodes hold none?")
	}
	t.Logf("%d rounds; acknowledged: %d twin writes (each writer's last on each device checked), %d telemetry (%d stored more than once), %d C2D (%d received more than once); %d devices reconnected after a kill: median %s, max %s",
		rounds, led.twinWrites, len(led.telemetryAcked), dupTelemetry, len(led.c2dAcked), dupC2D,
		len(reconnects), reconnects[len(reconnects)/2].Round(time.Millisecond), reconnects[len(reconnects)-1].Round(time.Millisecond))
}

// connectedDevices sums the devices the live nodes report connected.
func connectedDevices(nodes []*node) int {
	total := 0
	for _, n := range nodes {
		c, _ := n.connections()
		total += c
	}
	return total
}

// mqttConnections finds a node's MQTT device connections in its metrics.
var mqttConnections = regexp.MustCompile(`(?m)^twinhub_device_connections\{transport="mqtt"\} (\d+)`)

// connections is how many devices are connected to n over MQTT, from its
// metrics; ok is false when n is down or does not answer.
func (n *node) connections() (count int, ok bool) {
	if n.cmd == nil {
		return 0, false
	}
	resp, err := http.Get("http://" + n.addr + ":9464/metrics")
	if err != nil {
		return 0, false
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := mqttConnections.FindSubmatch(b)
	if m == nil {
		return 0, false
	}
	v, _ := strconv.Atoi(string(m[1]))
	return v, true
}

// readTelemetry reads the telemetry stream from the start through one
// node's CLI until every wanted message id was seen (or a minute passed)
// and returns how often each id came.
func readTelemetry(t testing.TB, bin string, n *node, want map[string]bool) map[string]int {
	t.Helper()
	// monitor-events prints about 700 events a second here.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute+time.Duration(len(want))*time.Second/300)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--data", n.dir, "monitor-events", "--consumer-group", "$Default", "--from", "start")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cancel()
	seen := map[string]int{}
	missing := len(want)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	// Duplicates come right after their first copy; read a little past
	// the last wanted one.
	var done time.Time
	for sc.Scan() {
		var l struct {
			System map[string]string `json:"systemProperties"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		mid := l.System["message-id"]
		seen[mid]++
		if want[mid] && seen[mid] == 1 {
			missing--
		}
		if missing == 0 && done.IsZero() {
			done = time.Now()
		}
		if !done.IsZero() && time.Since(done) > 2*time.Second {
			break
		}
	}
	return seen
}

// waitUntil polls cond every 100 ms until it holds, failing the test
// after wait; it returns when cond held.
func waitUntil(t testing.TB, wait time.Duration, what string, cond func() bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, wait)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Now()
}

// retryCall runs a service call until it succeeds or a minute passes:
// through the seconds after a kill the hub answers 503, and a connection
// kept alive to the dead node fails once.
func retryCall[T any](ctx context.Context, call func() (T, error)) (T, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		v, err := call()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return v, err
		}
		time.Sleep(250 * time.Millisecond)
	}
}
