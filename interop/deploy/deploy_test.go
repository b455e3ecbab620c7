// Package deploy tests the ways twinhub is deployed (docs/deploy.md): the
// container recipe (Dockerfile), the systemd unit (deploy/twinhub.service),
// and backup and restore of the data folder. No container engine runs on
// the test machines, so the recipe is tested by what it makes: the binary
// built with its flags, run as its user with its data folder and ports.
package deploy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"debug/elf"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twinhub/twinhub/internal/servetest"
)

func TestMain(m *testing.M) { servetest.Main(m) }

// repoFile is a file of the repository, from this package's folder.
func repoFile(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join("..", "..", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// recipe is what the Dockerfile says about the image the tests check.
type recipe struct {
	buildArgs []string // of `go build` in the build stage, without -o and the package
	uid, gid  int      // USER
	dataEnv   string   // ENV TWINHUB_DATA
	cmd       []string // CMD
}

func readRecipe(t *testing.T) recipe {
	t.Helper()
	f, err := os.Open(repoFile(t, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r recipe
	r.uid = -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "RUN CGO_ENABLED=0 go build "):
			r.buildArgs = shellWords(strings.TrimPrefix(line, "RUN CGO_ENABLED=0 go build "))
		case strings.HasPrefix(line, "USER "):
			u, g, _ := strings.Cut(strings.TrimPrefix(line, "USER "), ":")
			r.uid, _ = strconv.Atoi(u)
			r.gid, _ = strconv.Atoi(g)
		case strings.HasPrefix(line, "ENV TWINHUB_DATA="):
			r.dataEnv = strings.TrimPrefix(line, "ENV TWINHUB_DATA=")
		case strings.HasPrefix(line, "CMD "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "CMD ")), &r.cmd); err != nil {
				t.Fatalf("CMD is not a JSON array: %v", err)
			}
		}
	}
	// The build line ends "-o /out/twinhub ./cmd/twinhub": the test
	// chooses where the binary goes.
	if i := indexOf(r.buildArgs, "-o"); i >= 0 {
		r.buildArgs = r.buildArgs[:i]
	}
	if len(r.buildArgs) == 0 || r.uid <= 0 || r.dataEnv == "" || len(r.cmd) == 0 {
		t.Fatalf("the Dockerfile lacks a static go build, a non-root USER, ENV TWINHUB_DATA or CMD: %+v", r)
	}
	return r
}

// shellWords splits a command line as the shell does for the Dockerfile's
// RUN lines: at spaces, except inside double quotes, which it removes.
func shellWords(line string) []string {
	var words []string
	var w strings.Builder
	quoted, inWord := false, false
	for _, c := range line {
		switch {
		case c == '"':
			quoted, inWord = !quoted, true
		case c == ' ' && !quoted:
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

func indexOf(xs []string, s string) int {
	for i, x := range xs {
		if x == s {
			return i
		}
	}
	return -1
}

// TestContainerRecipe: the Dockerfile's binary is static (it runs on a
// distroless base with no libc), and run as the recipe's non-root user
// with the recipe's command, its data folder given only by TWINHUB_DATA,
// it starts on an empty volume, serves on the recipe's ports, writes only
// there, and stops cleanly on SIGTERM.
func TestContainerRecipe(t *testing.T) {
	r := readRecipe(t)
	// The image's user runs the binary: it and the test's folder above it
	// must let that user in.
	binDir := t.TempDir()
	os.Chmod(binDir, 0o755)
	os.Chmod(filepath.Dir(binDir), 0o755)
	bin := filepath.Join(binDir, "twinhub")
	build := exec.Command("go", append(append([]string{"build"}, r.buildArgs...), "-o", bin, "github.com/twinhub/twinhub/cmd/twinhub")...)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", build.Args, err, out)
	}
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary asks for a dynamic loader: it would not run on a distroless static base")
		}
	}
	ef.Close()

	// The volume: an empty folder the image's user owns, as the recipe
	// makes /data. Its parent lets that user in.
	root := t.TempDir()
	os.Chmod(root, 0o755)
	data := filepath.Join(root, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, r.uid, r.gid); err != nil {
		t.Fatalf("chown to the image's user (the test runs as root): %v", err)
	}
	const addr = "127.0.0.78"
	// The recipe's ports, on this test's own address (":8443" listens on
	// every address, where other tests' hubs are).
	args := append([]string(nil), r.cmd...)
	ports := map[string]string{}
	for i := 1; i < len(args); i++ {
		if strings.HasSuffix(args[i-1], "-addr") && strings.HasPrefix(args[i], ":") {
			ports[args[i-1]] = args[i][1:]
			args[i] = addr + args[i]
		}
	}
	if ports["--https-addr"] == "" || ports["--mqtt-addr"] == "" || ports["--amqp-addr"] == "" {
		t.Fatalf("CMD gives no port for every listener: %v", r.cmd)
	}
	for _, p := range ports {
		if n, _ := strconv.Atoi(p); n < 1024 {
			t.Errorf("CMD listens on port %s, which the non-root user cannot bind", p)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hub := exec.CommandContext(ctx, bin, args...)
	hub.Env = []string{"TWINHUB_DATA=" + data, "TWINHUB_HOSTNAME=" + addr, "HOME=/nonexistent", "PATH=/usr/bin:/bin"}
	hub.Dir = "/"
	hub.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(r.uid), Gid: uint32(r.gid)}, Pdeathsig: syscall.SIGKILL}
	var out strings.Builder
	hub.Stdout, hub.Stderr = &out, &out
	if err := hub.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- hub.Wait() }()
	defer func() {
		if hub.ProcessState == nil {
			hub.Process.Kill()
		}
		if t.Failed() {
			t.Logf("--- hub output ---\n%s", out.String())
		}
	}()

	// Serving: each listener completes a TLS handshake for the host name
	// with the hub's own CA, made in the volume.
	deadline := time.Now().Add(90 * time.Second)
	for {
		err := handshakes(data, addr, ports)
		if err == nil {
			break
		}
		select {
		case e := <-exited:
			t.Fatalf("the hub exited: %v", e)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The CLI finds it through the volume and the REST API answers.
	cli := exec.Command(bin, "device", "create", "in-a-container")
	cli.Env = append(os.Environ(), "TWINHUB_DATA="+data)
	if b, err := cli.CombinedOutput(); err != nil || !strings.Contains(string(b), `"deviceId": "in-a-container"`) {
		t.Errorf("device create: %v\n%s", err, b)
	}
	// Everything the hub wrote is the image user's, in the volume.
	filepath.Walk(data, func(p string, info os.FileInfo, err error) error {
		if err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) != r.uid {
				t.Errorf("%s is owned by uid %d, not the image's user %d", p, st.Uid, r.uid)
			}
		}
		return nil
	})
	hub.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("after SIGTERM: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Error("no exit within 60 s of SIGTERM")
	}
}

// handshakes checks a TLS handshake on each port against the CA in data.
func handshakes(data, addr string, ports map[string]string) error {
	pem, err := os.ReadFile(filepath.Join(data, "ca.pem"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("no certificate in ca.pem yet")
	}
	for flag, port := range ports {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", net.JoinHostPort(addr, port),
			&tls.Config{RootCAs: pool, ServerName: addr})
		if err != nil {
			return fmt.Errorf("%s: %w", flag, err)
		}
		c.Close()
	}
	return nil
}

// TestSystemdUnit: deploy/twinhub.service passes systemd-analyze verify
// without a warning (with ExecStart pointing at a built binary).
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("TWINHUB_REQUIRE_CLIENTS") != "" {
			t.Fatal("systemd-analyze is not installed (Debian's systemd)")
		}
		t.Skip("systemd-analyze is not installed (Debian's systemd)")
	}
	unit, err := os.ReadFile(repoFile(t, "deploy/twinhub.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart=/usr/local/bin/twinhub serve") {
		t.Fatal("the unit does not start /usr/local/bin/twinhub serve")
	}
	path := filepath.Join(t.TempDir(), "twinhub.service")
	os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/twinhub", servetest.Binary(t))), 0o644)
	cmd := exec.Command(analyze, "verify", path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || strings.TrimSpace(stderr.String()) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, stderr.String())
	}
}

// TestBackupRestore: the backup docs/deploy.md gives (stop the hub, archive
// its data folder with tar, start it) restores into another folder a hub
// with the same identity, devices and keys, modules, twins and queued C2D
// messages, which its devices' connection strings still reach.
func TestBackupRestore(t *testing.T) {
	h := servetest.Start(t, "127.0.0.79")
	h.CLI(t, "device", "create", "kept")
	h.CLI(t, "module", "create", "kept", "mod")
	h.CLI(t, "twin", "update", "kept", "--tags", `{"plant":"Redmond43"}`, "--desired", `{"power":3}`)
	h.CLI(t, "c2d", "send", "kept", "queued before the backup")
	owner := h.CLI(t, "connection-string")
	device := h.CLI(t, "device", "connection-string", "kept")

	if _, err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "twinhub-backup.tar.gz")
	if out, err := exec.Command("tar", "-C", h.DataDir, "-czf", archive, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	restored := t.TempDir()
	if out, err := exec.Command("tar", "-C", restored, "-xzf", archive).CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v\n%s", err, out)
	}
	h.DataDir, h.CAFile = restored, filepath.Join(restored, "ca.pem")
	h.Start(t)

	if got := h.CLI(t, "connection-string"); got != owner {
		t.Errorf("owner connection string after the restore: %q, was %q", got, owner)
	}
	if got := h.CLI(t, "device", "connection-string", "kept"); got != device {
		t.Errorf("device connection string after the restore: %q, was %q", got, device)
	}
	var twin struct {
		Tags       map[string]any
		Properties struct{ Desired map[string]any }
	}
	if err := json.Unmarshal([]byte(h.CLI(t, "twin", "show", "kept")), &twin); err != nil {
		t.Fatal(err)
	}
	if twin.Tags["plant"] != "Redmond43" || twin.Properties.Desired["power"] != float64(3) {
		t.Errorf("twin after the restore: %+v", twin)
	}
	var dev struct{ CloudToDeviceMessageCount int }
	if err := json.Unmarshal([]byte(h.CLI(t, "device", "show", "kept")), &dev); err != nil {
		t.Fatal(err)
	}
	if dev.CloudToDeviceMessageCount != 1 {
		t.Errorf("C2D messages queued after the restore: %d, want 1", dev.CloudToDeviceMessageCount)
	}
	if !strings.Contains(h.CLI(t, "module", "list", "kept"), `"moduleId": "mod"`) {
		t.Error("the module is gone after the restore")
	}
}
