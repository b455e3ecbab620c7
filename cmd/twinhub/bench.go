package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/twinhub/twinhub/bench"
	"github.com/twinhub/twinhub/certs"
	"github.com/twinhub/twinhub/datadir"
	"github.com/twinhub/twinhub/jetstream"
)

type benchFlags struct {
	cfg        bench.Config
	quick      bool
	tls12      bool
	jsonPath   string
	cpuProfile string
	connString string
	caFile     string
	httpsAddr  string
	mqttAddr   string
	amqpAddr   string
	hubPID     int
	hubMetrics string
	hubProcess bool
}

func benchCommand(g *globals) *cobra.Command {
	f := &benchFlags{}
	cmd := &cobra.Command{
		Use:   "bench SCENARIO...",
		Short: "Load-test a hub over MQTT, AMQP and REST, with baselines (connect, reported, desired, twin-read, telemetry, query, methods, telemetry-amqp, sessions-amqp, eventhub, c2d-amqp, jobs, configurations, kv, mosquitto, tls, https, c2d-rest, all)",
		Long: `bench simulates devices (MQTT over TLS with SAS tokens) and back ends (HTTPS
REST, AMQP) against a hub, and prints throughput, latency percentiles, errors
and the hub's CPU and memory; --json writes the same as JSON.

Scenarios: connect, reported, desired, twin-read, telemetry, query, methods,
telemetry-amqp (devices send telemetry over AMQP, beside telemetry over
MQTT), sessions-amqp (--devices multiplexed over a few AMQP connections, a
session each, then idle: the hub's memory per session), eventhub (devices
send telemetry over MQTT while a reader a partition takes it from the Event
Hubs-compatible endpoint), c2d-amqp (C2D sends on the service SDKs' AMQP
link), jobs (a twin-update job over --twins devices, and twin reads while
it runs), configurations (the time until a configuration targeting --twins
devices is applied to all).
Baselines: kv (raw JetStream KV put and get+compare-and-set), mosquitto (the
telemetry load against Mosquitto over TLS, when installed), tls (a bare Go
TLS server's handshake rate, TLS 1.2 and 1.3), https (a bare HTTPS server),
c2d-rest (the C2D load over REST). A scenario runs with the
baselines its ratios need unless --no-baselines; "all" runs everything, and
"all --quick" does so at small scale in under a minute.

Without --connection-string the bench starts a hub in this process, on an
embedded JetStream in a temporary folder and loopback ports (with
--hub-process, as a child process, so that its CPU and memory are its own),
with its metrics on a loopback port: scenarios that can put the hub's own
timings beside the client's do (--hub-metrics for a hub given by
--connection-string).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runBench(ctx, g, f, args)
		},
	}
	fl := cmd.Flags()
	d := bench.DefaultConfig()
	fl.BoolVar(&f.quick, "quick", false, "small scale: every scenario in seconds (defaults of the flags below become smaller)")
	fl.IntVar(&f.cfg.Devices, "devices", 0, fmt.Sprintf("devices the connect scenario connects, and sessions-amqp multiplexes (default %d)", d.Devices))
	fl.IntVar(&f.cfg.ConnectConcurrency, "connect-concurrency", 0, fmt.Sprintf("connections made at once (connect, tls) (default %d)", d.ConnectConcurrency))
	fl.IntVar(&f.cfg.Clients, "clients", 0, fmt.Sprintf("devices or back-end workers generating load, and the KV baseline's concurrency (default %d)", d.Clients))
	fl.DurationVar(&f.cfg.Duration, "duration", 0, fmt.Sprintf("length of each measured phase (default %s)", d.Duration))
	fl.IntVar(&f.cfg.DesiredRate, "desired-rate", 0, fmt.Sprintf("desired PATCHes a second (default %d)", d.DesiredRate))
	fl.IntVar(&f.cfg.Twins, "twins", 0, fmt.Sprintf("twins the query scenario loads, e.g. 1000000 (default %d)", d.Twins))
	fl.IntVar(&f.cfg.QueryClients, "query-clients", 0, fmt.Sprintf("queries at once (default %d)", d.QueryClients))
	fl.IntVar(&f.cfg.QueryUpdateRate, "query-update-rate", 0, fmt.Sprintf("twin updates a second while queries run (default %d)", d.QueryUpdateRate))
	fl.IntVar(&f.cfg.PayloadBytes, "payload", 0, fmt.Sprintf("bytes of telemetry bodies and reported patches (default %d)", d.PayloadBytes))
	fl.BoolVar(&f.tls12, "tls12", false, "devices use TLS 1.2 (as the Python SDK) instead of 1.3")
	fl.BoolVar(&f.cfg.NoBaselines, "no-baselines", false, "run single scenarios without their baselines")
	fl.StringVar(&f.cfg.Mosquitto, "mosquitto", "", "mosquitto binary (default: from PATH or /usr/sbin)")
	fl.StringVar(&f.jsonPath, "json", "", "write the report as JSON to this file")
	fl.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (in-process hub and load generator) to this file")
	fl.StringVar(&f.connString, "connection-string", "", "owner connection string of a running hub to measure instead of starting one")
	fl.StringVar(&f.caFile, "ca", "", "PEM file of the CA the hub's certificate chains to (with --connection-string)")
	fl.StringVar(&f.httpsAddr, "https-addr", "", "address to dial for REST (default HostName:443)")
	fl.StringVar(&f.mqttAddr, "mqtt-addr", "", "address to dial for MQTT (default HostName:8883)")
	fl.StringVar(&f.amqpAddr, "amqp-addr", "", "address to dial for AMQP (default HostName:5671)")
	fl.IntVar(&f.hubPID, "hub-pid", 0, "process id of the hub given by --connection-string, to read its CPU and memory from /proc")
	fl.StringVar(&f.hubMetrics, "hub-metrics", "", "URL of the /metrics of the hub given by --connection-string (its serve --metrics-addr), for the hub's own timings")
	fl.BoolVar(&f.hubProcess, "hub-process", false, "start the hub as a child process (twinhub serve) rather than in this process")
	return cmd
}

// benchProbeCommand is the query probe bench million runs beside its own
// queries, in a process of its own (bench.RunProbe): hidden, as only the
// bench starts it.
func benchProbeCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "bench-probe",
		Short:  "Run a query probe for bench (its spec on standard input)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return bench.RunProbe(ctx, os.Stdin, os.Stdout)
		},
	}
}

// benchBareServerCommand is the bare server of the https and tls
// baselines, in a process of its own when the hub has one
// (bench.RunBareServer): hidden, as only the bench starts it.
func benchBareServerCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "bench-bare-server KIND",
		Short:  "Run the bare server of a bench baseline (https or tls) until standard input ends",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return bench.RunBareServer(args[0], os.Stdin, os.Stdout)
		},
	}
}

func runBench(ctx context.Context, g *globals, f *benchFlags, args []string) error {
	if err := bench.Check(args); err != nil {
		return err
	}
	cfg := f.cfg
	if f.quick {
		cfg.Fill(bench.QuickConfig())
	}
	if f.tls12 {
		cfg.TLSVersion = 0x0303
	}
	cfg.Progress = os.Stderr
	if self, err := os.Executable(); err == nil {
		cfg.ProbeCommand = []string{self, "bench-probe"}
		cfg.BareServerCommand = []string{self, "bench-bare-server"}
	}

	var target *bench.Target
	if f.connString != "" {
		t, err := bench.ExternalTarget(f.connString, f.caFile, f.httpsAddr, f.mqttAddr, f.amqpAddr)
		if err != nil {
			return err
		}
		t.MetricsURL = f.hubMetrics
		if f.hubPID != 0 {
			t.Usage = bench.PIDUsage(f.hubPID, t.MetricsURL)
			t.UsageNote = fmt.Sprintf("process %d, from /proc", f.hubPID)
		}
		target = t
	} else {
		t, stopHub, err := startBenchHub(ctx, g, f.hubProcess)
		if err != nil {
			return err
		}
		defer stopHub()
		target = t
	}

	if f.cpuProfile != "" {
		out, err := os.Create(f.cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(out); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); out.Close() }()
	}
	rep, err := bench.Run(ctx, target, cfg, args, "twinhub "+strings.Join(os.Args[1:], " "))
	if rep != nil {
		rep.Print(os.Stdout)
		if f.jsonPath != "" {
			if werr := rep.WriteJSON(f.jsonPath); werr != nil {
				return werr
			}
			fmt.Fprintf(os.Stderr, "report written to %s\n", f.jsonPath)
		}
	}
	return err
}

// startBenchHub starts a hub on loopback ports with its data in a
// temporary folder: in this process through serve (the same wiring as
// `twinhub serve`), or as a child process.
func startBenchHub(ctx context.Context, g *globals, child bool) (*bench.Target, func(), error) {
	tmp, err := os.MkdirTemp("", "twinhub-bench-")
	if err != nil {
		return nil, nil, err
	}
	dir := datadir.Dir{Path: tmp}
	hubCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	var proc *os.Process
	// startChild runs `twinhub serve` on the data folder with addresses
	// (first on ports the system chooses, then on those it chose).
	startChild := func(https, mqtt, amqp, metrics, pprof string) error {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(hubCtx, exe, "serve", "--data", tmp, "--hostname", "localhost",
			"--https-addr", https, "--mqtt-addr", mqtt, "--amqp-addr", amqp, "--metrics-addr", metrics, "--pprof-addr", pprof, "--log-level", "error")
		cmd.Stderr = os.Stderr
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		cmd.WaitDelay = 15 * time.Second
		if err := cmd.Start(); err != nil {
			return err
		}
		proc = cmd.Process
		go func() { done <- cmd.Wait() }()
		return nil
	}
	if child {
		if err := startChild("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"); err != nil {
			cancel()
			return nil, nil, err
		}
	} else {
		sg := *g
		sg.data = tmp
		go func() {
			f := defaultServeFlags()
			f.hostname, f.httpsAddr, f.mqttAddr, f.amqpAddr, f.metricsAddr, f.logLevel = "localhost", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "error"
			done <- serve(hubCtx, &sg, f)
		}()
	}
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			fmt.Fprintln(os.Stderr, "twinhub bench: the hub did not stop within 20s")
		}
		os.RemoveAll(tmp)
	}
	// The hub writes serve.json once it listens.
	deadline := time.Now().Add(60 * time.Second)
	var srv datadir.Serve
	for {
		srv, err = dir.LoadServe()
		if err == nil && (proc == nil || srv.PID == proc.Pid) {
			break
		}
		select {
		case err := <-done:
			os.RemoveAll(tmp)
			cancel()
			if err == nil {
				err = errors.New("it stopped")
			}
			return nil, nil, fmt.Errorf("starting the hub: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, nil, errors.New("the hub did not start within 60s")
		}
	}
	hub, err := dir.LoadHub()
	if err != nil {
		stop()
		return nil, nil, err
	}
	owner, err := hub.Policy("iothubowner")
	if err != nil {
		stop()
		return nil, nil, err
	}
	t, err := bench.ExternalTarget(mustConnString(hub), dir.File(certs.CAFile), srv.HTTPSAddr, srv.MQTTAddr, srv.AMQPAddr)
	if err != nil {
		stop()
		return nil, nil, err
	}
	t.PolicyName, t.PolicyKey = owner.Name, owner.PrimaryKey
	t.CADir = tmp
	t.TelemetryBytes = func() (int64, bool) { return streamBytes(dir.File("jetstream"), jetstream.TelemetryStreamPrefix) }
	t.Local = true
	if srv.MetricsAddr != "" {
		t.MetricsURL = "http://" + srv.MetricsAddr + "/metrics"
	}
	if proc != nil {
		t.Usage = bench.PIDUsage(proc.Pid, t.MetricsURL)
		if srv.PprofAddr != "" {
			t.PprofURL = "http://" + srv.PprofAddr + "/debug/pprof/"
		}
		t.UsageNote = fmt.Sprintf("the hub's own process (%d), from /proc", proc.Pid)
		// Restart stops the hub (SIGINT, as an operator would) and starts
		// it again on the same folder and addresses.
		t.Restart = func() (time.Time, error) {
			proc.Signal(os.Interrupt)
			if err := <-done; err != nil {
				return time.Time{}, fmt.Errorf("the hub's exit: %w", err)
			}
			started := time.Now()
			if err := startChild(srv.HTTPSAddr, srv.MQTTAddr, srv.AMQPAddr, srv.MetricsAddr, srv.PprofAddr); err != nil {
				return time.Time{}, err
			}
			t.Usage = bench.PIDUsage(proc.Pid, t.MetricsURL)
			return started, nil
		}
	} else {
		t.InProcess = true
		t.Usage = bench.SelfUsage
		t.UsageNote = "in-process hub: CPU and memory are this whole process, the hub and the load generator together"
	}
	return t, stop, nil
}

func mustConnString(h datadir.Hub) string {
	s, err := h.ConnectionString("iothubowner")
	if err != nil {
		return ""
	}
	return s
}

// streamBytes sums the files of the JetStream streams whose names begin
// with prefix (the telemetry's, one a partition) under root (the embedded
// server's store folder); ok is false when no such stream has a folder
// there.
func streamBytes(root, prefix string) (n int64, ok bool) {
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() || !strings.HasPrefix(d.Name(), prefix) || filepath.Base(filepath.Dir(path)) != "streams" {
			return nil
		}
		ok = true
		filepath.WalkDir(path, func(_ string, f fs.DirEntry, err error) error {
			if err == nil && !f.IsDir() {
				if info, err := f.Info(); err == nil {
					n += info.Size()
				}
			}
			return nil
		})
		return filepath.SkipDir
	})
	return n, ok
}
