package cluster

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twinhub/twinhub/internal/servetest"
)

// natsAddrs are the loopback addresses of the external NATS cluster of
// TestExternalNATSCluster (client port 4222, cluster port 6222).
var natsAddrs = []string{"127.0.0.87", "127.0.0.88", "127.0.0.89"}

// natsServerBinary builds nats-server from the module this one already
// requires (the version the embedded server is; Debian's package is too
// old for JetStream clustering as twinhub uses it).
func natsServerBinary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nats-server")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput()
	if err != nil {
		t.Fatalf("go build nats-server: %v\n%s", err, out)
	}
	return bin
}

// natsServer is one nats-server process of the external cluster; it can
// be stopped and started again on the same store.
type natsServer struct {
	bin, addr, name, store string
	routes                 []string
	cmd                    *exec.Cmd
	out                    *servetest.Output
}

// start runs the server and waits until it takes connections.
func (s *natsServer) start(t testing.TB) {
	t.Helper()
	s.out = &servetest.Output{}
	s.cmd = exec.Command(s.bin, "--addr", s.addr, "--port", "4222", "--server_name", s.name,
		"--jetstream", "--store_dir", s.store,
		"--cluster_name", "twinhub-test", "--cluster", "nats://"+s.addr+":6222", "--routes", strings.Join(s.routes, ","))
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", s.addr+":4222", time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server on %s does not listen: %v\n%s", s.addr, err, s.out)
		}
	}
}

// stop ends the server (SIGTERM, as an operator would) and waits for it.
func (s *natsServer) stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.cmd.Wait()
	s.cmd = nil
}

// startNATSCluster runs three nats-server processes with JetStream,
// routed into one cluster, until the test ends, and returns them and the
// client URL that names all three.
func startNATSCluster(t testing.TB) ([]*natsServer, string) {
	t.Helper()
	bin := natsServerBinary(t)
	var routes, urls []string
	for _, a := range natsAddrs {
		routes = append(routes, "nats://"+a+":6222")
		urls = append(urls, "nats://"+a+":4222")
	}
	var servers []*natsServer
	for i, a := range natsAddrs {
		s := &natsServer{bin: bin, addr: a, name: fmt.Sprintf("nats-%d", i+1), store: t.TempDir(), routes: routes}
		servers = append(servers, s)
		t.Cleanup(func() {
			s.stop()
			if t.Failed() {
				t.Logf("--- nats-server %s ---\n%s", a, s.out)
			}
		})
	}
	// Started apart from their cleanups so that a failed start still
	// stops the ones before it.
	for _, s := range servers {
		s.start(t)
	}
	return servers, strings.Join(urls, ",")
}

// TestExternalNATSCluster: two twinhub nodes on an external NATS cluster
// of three nats-server processes (serve --nats URL --replicas 3), each
// started with an empty data folder: the first to start makes the hub's
// CA and identity in the store, the other takes them (the same
// connection strings, a server certificate from the same CA); what one
// node writes, the other serves; a data folder of another hub is refused;
// when two of the three NATS servers stop, a node acknowledges no write
// and is not ready, and it serves again once one is back.
func TestExternalNATSCluster(tt *testing.T) {
	t := repeatFailures(tt)
	began := time.Now()
	servers, url := startNATSCluster(t)
	bin := servetest.Binary(t)
	t.Logf("NATS cluster up after %s", time.Since(began).Round(time.Millisecond))
	nodes := []*node{
		{addr: addrs[0], dir: t.TempDir(), hostname: addrs[0], natsURL: url, out: &servetest.Output{}},
		{addr: addrs[1], dir: t.TempDir(), natsURL: url, out: &servetest.Output{}},
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.stop(t)
		}
		if t.Failed() {
			for _, n := range nodes {
				t.Logf("--- output of node %s ---\n%s", n.addr, n.out)
			}
		}
	})
	for _, n := range nodes {
		n.start(t, bin)
	}
	for _, n := range nodes {
		n.ready(t)
	}
	t.Logf("both nodes serve after %s", time.Since(began).Round(time.Millisecond))
	for _, f := range []string{"ca.pem", "hub.json"} {
		a, errA := os.ReadFile(filepath.Join(nodes[0].dir, f))
		b, errB := os.ReadFile(filepath.Join(nodes[1].dir, f))
		if errA != nil || errB != nil || string(a) != string(b) {
			t.Errorf("the nodes' %s differ (%v, %v)", f, errA, errB)
		}
	}

	nodes[0].cli(t, bin, "device", "create", "x1")
	nodes[1].cli(t, bin, "twin", "update", "x1", "--tags", `{"plant":"Redmond43"}`)
	if n := nodes[0].count(t, bin, "SELECT COUNT() AS n FROM devices WHERE tags.plant = 'Redmond43'"); n != 1 {
		t.Errorf("node 1 finds %d twins tagged on node 2, want 1", n)
	}
	waitUntil(t, 30*time.Second, "cluster status on node 2: two nodes, every stream at three replicas", func() bool {
		st := nodes[1].status(t, bin)
		if len(st.Nodes) != 2 || len(st.Streams) == 0 {
			return false
		}
		for _, s := range st.Streams {
			if s.Replicas != 3 || len(s.Peers) != 2 {
				return false
			}
		}
		return true
	})

	// A data folder with another hub's CA does not join.
	stranger := &node{addr: addrs[2], dir: t.TempDir(), natsURL: url, out: &servetest.Output{}}
	if out, err := exec.Command(bin, "--data", stranger.dir, "ca", "init").CombinedOutput(); err != nil {
		t.Fatalf("ca init: %v\n%s", err, out)
	}
	stranger.start(t, bin)
	t.Logf("a stranger starts after %s", time.Since(began).Round(time.Millisecond))
	select {
	case err := <-stranger.done:
		if err == nil || !strings.Contains(stranger.out.String(), "another hub's") {
			t.Errorf("a node with another hub's CA: exit %v\n%s", err, stranger.out)
		}
	case <-time.After(2 * time.Minute):
		stranger.cmd.Process.Kill()
		t.Errorf("a node with another hub's CA kept running\n%s", stranger.out)
	}
	stranger.cmd = nil

	// Two of the three NATS servers stop: the cluster has no quorum, so
	// no node acknowledges a write (503) and /readyz says why.
	for _, s := range servers[1:] {
		s.stop()
	}
	waitUntil(t, time.Minute, "node 1 not ready for want of a quorum", func() bool {
		code, body := nodes[0].readyz(t)
		return code == http.StatusServiceUnavailable && strings.Contains(body, `"quorum":`)
	})
	out, err := nodes[0].run(bin, "device", "create", "x2")
	if err == nil || !strings.Contains(out, "503") {
		t.Errorf("a write without a quorum: %v\n%s", err, out)
	}
	// One comes back: two of three again, writes are taken and the node
	// is ready. (As in TestEmbeddedCluster, the check is on a device
	// other than the refused one, which may yet be applied.)
	servers[1].start(t)
	nodes[0].retry(t, bin, time.Minute, "device", "create", "x3")
	if n := nodes[1].count(t, bin, "SELECT COUNT() AS n FROM devices WHERE deviceId = 'x3'"); n != 1 {
		t.Errorf("with the quorum back, node 2 counts %d devices x3, want 1", n)
	}
	waitUntil(t, time.Minute, "node 1 ready with the quorum back", func() bool {
		code, _ := nodes[0].readyz(t)
		return code == http.StatusOK
	})
	t.Logf("done after %s", time.Since(began).Round(time.Millisecond))
}
