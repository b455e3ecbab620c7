package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/twinhub/twinhub/amqp"
	"github.com/twinhub/twinhub/blobstore"
	"github.com/twinhub/twinhub/certs"
	"github.com/twinhub/twinhub/console"
	"github.com/twinhub/twinhub/datadir"
	"github.com/twinhub/twinhub/httpapi"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/jetstream"
	"github.com/twinhub/twinhub/metrics"
	"github.com/twinhub/twinhub/mqtt"
	"github.com/twinhub/twinhub/throttle"
)

type serveFlags struct {
	hostname   string
	httpsAddr  string
	mqttAddr   string
	amqpAddr   string
	deviceCA   string
	tlsCert    string
	tlsKey     string
	natsURL    string
	cluster    string
	routes     []string
	nodeName   string
	syncAlways bool
	syncEvery  time.Duration
	// indexSnapshotEvery is how often the query index is saved while it
	// changes (hub.Config.IndexSnapshotInterval).
	indexSnapshotEvery time.Duration
	replicas           int
	logLevel           string
	pprofAddr          string
	metricsAddr        string
	memLimit           string
	limits             throttle.Limits

	telemetryPartitions int
	telemetryRetention  time.Duration

	fileUploadStorage   string
	fileUploadContainer string
	faultInjection      bool
}

func serveCommand(g *globals) *cobra.Command {
	f := &serveFlags{}
	var config string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the hub until SIGINT or SIGTERM",
		Args:  cobra.NoArgs,
		Long: `Run the hub until SIGINT or SIGTERM.

Every setting is a flag, an environment variable (TWINHUB_ and the flag's
name in capitals with _ for -, e.g. TWINHUB_HTTPS_ADDR), or a key of the
YAML file that --config names (the flag's name: "https-addr: :443"), in
that order of precedence. twinhub.sample.yaml in the repository lists
them all.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyConfig(cmd.Flags(), config); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, g, f)
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().StringVar(&config, "config", "", "YAML file of settings, keys the flags' names (flags and TWINHUB_* variables take precedence)")
	return cmd
}

// register declares serve's flags on fl, with their defaults in f.
func (f *serveFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.hostname, "hostname", "", "the hub's host name, as in connection strings (default localhost on first start, then as stored; in a new cluster, give it to one node: the others wait for its identity)")
	fl.StringVar(&f.httpsAddr, "https-addr", ":443", "address of the HTTPS listener (REST API; MQTT over WebSocket)")
	fl.StringVar(&f.mqttAddr, "mqtt-addr", ":8883", "address of the MQTT over TLS listener (devices)")
	fl.StringVar(&f.amqpAddr, "amqp-addr", ":5671", "address of the AMQP over TLS listener (devices and modules, back ends, the Event Hubs-compatible endpoint)")
	fl.StringVar(&f.deviceCA, "device-ca", "", "PEM file of the CA certificates that sign the certificates of devices registered with certificateAuthority authentication")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "server certificate (PEM); default: one made by the hub's own CA")
	fl.StringVar(&f.tlsKey, "tls-key", "", "private key of --tls-cert (PEM)")
	fl.StringVar(&f.natsURL, "nats", "", "URL of an external NATS server with JetStream; default: embedded")
	fl.StringVar(&f.cluster, "cluster", "", "host:port this node listens on for the other nodes of an embedded cluster, and at which they reach it (routes over TLS with the hub's CA: every node needs the same ca.pem and ca-key.pem; the rest it takes from the others); default: no cluster")
	fl.StringSliceVar(&f.routes, "routes", nil, "the cluster addresses of the nodes of the embedded cluster, nats://host:port,... (with --cluster; this node's may be among them)")
	fl.StringVar(&f.nodeName, "node-name", "", "this node's name in the embedded cluster and in `twinhub cluster status` (default: its --cluster address, else its --https-addr)")
	fl.BoolVar(&f.syncAlways, "sync-always", false, "fsync every write before acknowledging it (embedded NATS)")
	fl.DurationVar(&f.syncEvery, "sync-interval", 0, "how often embedded JetStream flushes its files to disk (default NATS's 2m; writes since the last flush can be lost on power loss, not on a crash of the process)")
	fl.DurationVar(&f.indexSnapshotEvery, "index-snapshot-interval", 5*time.Minute, "how often the hub saves its query index to index.snapshot in the data folder while twins change, to start from it (it saves it when it stops, too); 0: only when it stops")
	fl.IntVar(&f.replicas, "replicas", 1, "copies of each stream and bucket kept by an external NATS cluster (--nats); 1 when embedded")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&f.pprofAddr, "pprof-addr", "", "loopback address on which to serve Go's profiles at /debug/pprof/ (plain HTTP; default off)")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", "address of Prometheus metrics (/metrics) and health (/healthz, /readyz), plain HTTP; a bare port is on loopback (default off)")
	fl.StringVar(&f.memLimit, "memory-limit", "auto", "memory the hub keeps to (Go's soft limit: it collects garbage harder as it nears it), e.g. 2GiB; auto: half the machine's (or cgroup's) memory unless GOMEMLIMIT is set; off: none")
	fl.IntVar(&f.telemetryPartitions, "telemetry-partitions", jetstream.DefaultTelemetryPartitions, "partitions of the telemetry stream when it is created")
	fl.DurationVar(&f.telemetryRetention, "telemetry-retention", jetstream.DefaultTelemetryRetention, "how long device-to-cloud messages are kept")
	fl.StringVar(&f.fileUploadStorage, "file-upload-storage", "", "Azure Storage connection string of the account devices upload files to (better in TWINHUB_FILE_UPLOAD_STORAGE or the --config file, out of the process list); file upload is off without it")
	fl.StringVar(&f.fileUploadContainer, "file-upload-container", "fileupload", "the blob container of file uploads (made when missing)")
	fl.BoolVar(&f.faultInjection, "fault-injection", false, "act on IoT Hub's fault injection messages (AzIoTHub_FaultOperationType): a device can drop its own connections, for SDK resilience tests; never in production")
	throttleFlags(fl, &f.limits)
}

// defaultServeFlags are serve's flags as a plain `twinhub serve` has them,
// for code that runs a hub in-process (the load generator).
func defaultServeFlags() *serveFlags {
	f := &serveFlags{}
	f.register(pflag.NewFlagSet("serve", pflag.ContinueOnError))
	return f
}

func serve(ctx context.Context, g *globals, f *serveFlags) error {
	log, err := newLogger(f.logLevel)
	if err != nil {
		return err
	}
	dir, err := datadir.Open(g.data)
	if err != nil {
		return err
	}
	memLimit, err := applyMemoryLimit(f.memLimit, log)
	if err != nil {
		return err
	}
	if memLimit > 0 {
		log.Info("memory limit", "bytes", memLimit, "MiB", memLimit>>20)
	}
	var pprofAddr string
	if f.pprofAddr != "" {
		bound, stopPprof, err := servePprof(f.pprofAddr, log)
		if err != nil {
			return err
		}
		defer stopPprof()
		pprofAddr = bound
	}
	deviceCA, err := loadDeviceCA(f.deviceCA)
	if err != nil {
		return err
	}
	if f.replicas < 1 || (f.natsURL == "" && f.cluster == "" && f.replicas != 1) {
		return errors.New("--replicas must be 1 with the embedded NATS of one node, and at least 1 with --nats or --cluster")
	}

	nc, embedded, closeNATS, quorum, err := connectNATS(dir, f)
	if err != nil {
		return err
	}
	defer closeNATS()
	// The owner key is printed at the data folder's first start only:
	// stdout is often a log (docker logs, journalctl), and secrets stay
	// out of logs. `twinhub connection-string` prints it at any time.
	hubConf, firstStart, err := sharedIdentity(ctx, dir, nc, f, log)
	if err != nil {
		return err
	}
	tlsConf, err := serverTLS(dir, hubConf.HostName, f, log)
	if err != nil {
		return err
	}
	var extraChecks []metrics.Check
	if quorum != nil {
		go watchQuorum(ctx, quorum, log)
		extraChecks = append(extraChecks, metrics.Check{Name: "quorum", Run: quorum})
	}
	store, err := jetstream.OpenStore(ctx, nc, jetstream.StoreOptions{Log: log, Replicas: f.replicas})
	if err != nil {
		return err
	}
	hubCtx, stopHub := context.WithCancel(context.Background())
	defer stopHub()
	started := time.Now()
	conf := hub.Config{
		Host: hubConf.HostName, Policies: hubConf.Policies,
		Store: store, Bus: jetstream.NewBus(nc), Log: log,
		C2DSweepInterval: c2dSweepInterval, FaultInjection: f.faultInjection,
		// The embedded NATS server of a single node listens on no port:
		// this hub is the only writer of its store.
		SoleWriter:    f.natsURL == "" && f.cluster == "",
		IndexSnapshot: dir.File(indexSnapshotFile), IndexSnapshotInterval: f.indexSnapshotEvery,
	}
	if err := openMessaging(ctx, nc, f, log, &conf); err != nil {
		return err
	}
	storage := storageOptions(dir.File(certs.CAFile))
	if conf.Blobs, err = openFileUpload(f, storage); err != nil {
		return err
	}
	conf.Containers = blobstore.NewContainers(storage)
	var core *hub.Hub
	m := newMetrics(f, func() *hub.Hub { return core })
	conf.Metrics = m
	core, err = hub.New(hubCtx, conf)
	if err != nil {
		return err
	}
	log.Info("index loaded", "took", time.Since(started).Round(time.Millisecond))

	limits := throttle.New(f.limits)
	log.Info("throttles", "limits", f.limits.String())
	// MQTT sessions live in the store, so that a device resumes its
	// session after a restart or through another node.
	sessions, err := jetstream.OpenSessions(ctx, nc, f.replicas, mqtt.DefaultSessionExpiry)
	if err != nil {
		return err
	}
	devices, err := mqtt.New(core, mqtt.Options{DeviceCA: deviceCA, Log: log, Throttle: limits, Metrics: m, Sessions: sessions})
	if err != nil {
		return err
	}
	nodeName := cmp.Or(f.nodeName, f.cluster, f.httpsAddr)
	api := httpapi.New(core, httpapi.Options{Log: log, Throttle: limits, Metrics: m, ClusterStatus: gatherClusterStatus(nc, embedded, nodeName)})
	httpsLn, err := listen(f.httpsAddr, "--https-addr")
	if err != nil {
		return err
	}
	mqttLn, err := listen(f.mqttAddr, "--mqtt-addr")
	if err != nil {
		httpsLn.Close()
		return err
	}
	amqpLn, err := listen(f.amqpAddr, "--amqp-addr")
	if err != nil {
		httpsLn.Close()
		mqttLn.Close()
		return err
	}
	// closeListeners undoes the listens when the start fails after them.
	closeListeners := func() {
		httpsLn.Close()
		mqttLn.Close()
		amqpLn.Close()
	}
	backEnds := amqp.New(core, amqp.Options{Log: log, DeviceCA: deviceCA, Throttle: limits, Metrics: m})
	var unused newConns
	srv := &http.Server{
		// MQTT and AMQP over WebSocket share the HTTPS listener, as on
		// IoT Hub, and so does the web console at /console.
		Handler:           backEnds.Handler(devices.Handler(console.Wrap(api))),
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnState:         unused.track,
	}
	// The device listeners' TLS is derived before the HTTPS server
	// starts: its Serve adds HTTP/2 to tlsConf's protocols (the listener
	// shares the config), and a copy taken meanwhile raced with that
	// write (go build -race, interop/node). AMQP's is MQTT's: a client
	// certificate asked for, not required (X.509 devices), no ALPN.
	mqttTLS, amqpTLS := mqtt.TLSConfig(tlsConf), mqtt.TLSConfig(tlsConf)
	serveErr := make(chan error, 3)
	go func() { serveErr <- fmt.Errorf("HTTPS server: %w", srv.Serve(tls.NewListener(httpsLn, tlsConf))) }()
	go func() {
		if err := devices.Serve(mqttLn, mqttTLS); !errors.Is(err, net.ErrClosed) {
			serveErr <- fmt.Errorf("MQTT listener: %w", err)
		}
	}()
	go func() {
		if err := backEnds.Serve(amqpLn, amqpTLS); !errors.Is(err, net.ErrClosed) {
			serveErr <- fmt.Errorf("AMQP listener: %w", err)
		}
	}()

	var serving atomic.Bool
	m.DeviceConnections("mqtt", devices.Connections)
	m.DeviceConnections("amqp", backEnds.DeviceConnections)
	m.Throttled(limits.Refused)
	m.Streams(streamStats(nc))
	m.Queues(queueStats(nc))
	var metricsListens string
	if m != nil {
		stopMetrics, addr, err := serveMetrics(m, f.metricsAddr, core, &serving, log, extraChecks...)
		if err != nil {
			closeListeners()
			return err
		}
		defer stopMetrics()
		metricsListens = addr
	}
	stopStatus, err := jetstream.AnswerStatus(nc, func() jetstream.NodeStatus {
		return jetstream.NodeStatus{
			Name: nodeName, Started: started,
			Addresses:   map[string]string{"https": httpsLn.Addr().String(), "mqtt": mqttLn.Addr().String(), "amqp": amqpLn.Addr().String()},
			Connections: map[string]int{"mqtt": devices.Connections(), "amqp": backEnds.DeviceConnections()},
		}
	})
	if err != nil {
		closeListeners()
		return err
	}
	defer stopStatus()
	serving.Store(true)
	if err := dir.SaveServe(datadir.Serve{HTTPSAddr: httpsLn.Addr().String(), MQTTAddr: mqttLn.Addr().String(), AMQPAddr: amqpLn.Addr().String(), MetricsAddr: metricsListens, PprofAddr: pprofAddr, PID: os.Getpid()}); err != nil {
		return err
	}
	owner, err := hubConf.ConnectionString("iothubowner")
	if err != nil {
		return err
	}
	fmt.Printf("twinhub is serving %s\n", hubConf.HostName)
	fmt.Printf("  HTTPS (REST):        %s\n", httpsLn.Addr())
	fmt.Printf("  MQTT (devices):      %s\n", mqttLn.Addr())
	fmt.Printf("  AMQP:                %s (devices, back ends)\n", amqpLn.Addr())
	wsHost := hubConf.HostName
	if _, port, _ := net.SplitHostPort(httpsLn.Addr().String()); port != "443" {
		wsHost = net.JoinHostPort(wsHost, port)
	}
	fmt.Printf("  MQTT over WebSocket: wss://%s%s\n", wsHost, mqtt.WebSocketPath)
	fmt.Printf("  AMQP over WebSocket: wss://%s%s (and %s, subprotocol %s)\n", wsHost, amqp.ServiceBusWebSocketPath, amqp.IoTHubWebSocketPath, amqp.WebSocketSubprotocol)
	fmt.Printf("  Event Hubs endpoint: sb://%s/ entity %s (twinhub connection-string --eventhub)\n", hubConf.HostName, core.EventHubName())
	fmt.Printf("  Web console:         https://%s%s/\n", wsHost, console.Path)
	fmt.Printf("  CA certificate:      %s\n", dir.File(certs.CAFile))
	if firstStart {
		fmt.Printf("  owner connection:    %s\n", owner)
	} else {
		fmt.Printf("  owner connection:    twinhub --data %s connection-string (the key is printed at the first start only)\n", dir.Path)
	}
	log.Info("ready", "host", hubConf.HostName, "https", httpsLn.Addr().String(), "mqtt", mqttLn.Addr().String(), "amqp", amqpLn.Addr().String())

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		devices.Close(context.Background())
		backEnds.Close(context.Background())
		return err
	}
	log.Info("shutting down")
	serving.Store(false)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Connections that began no request are closed after a grace,
	// rather than after the 5 s Shutdown gives them (newconns.go).
	closeUnused := time.AfterFunc(newConnGrace, func() {
		if n := unused.closeAll(); n > 0 {
			log.Info("closed HTTPS connections that sent no request", "connections", n)
		}
	})
	srv.Shutdown(shutdownCtx)
	closeUnused.Stop()
	// Ends device connections (HTTPS and MQTT alike) and records them as
	// disconnected while the store is still there; closes AMQP ones.
	devices.Close(shutdownCtx)
	backEnds.Close(shutdownCtx)
	// Connected states are written after the CONNACK: store those still
	// queued before the store goes.
	if err := core.FlushConnectionStates(shutdownCtx); err != nil {
		log.Warn("connection states not all stored before shutdown", "err", err)
	}
	// The index as it is now, for the next start to begin from (after
	// the connection states above, so that it holds them).
	if err := core.SaveIndex(); err != nil {
		log.Warn("the query index was not saved; the next start reads the whole store", "err", err)
	}
	stopHub()
	return nil
}

// indexSnapshotFile is the file in the data folder that holds the query
// index's snapshot (hub.Config.IndexSnapshot).
const indexSnapshotFile = "index.snapshot"

// listen opens a TCP listener, explaining the usual reason it fails.
func listen(addr, flag string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	if errors.Is(err, syscall.EACCES) {
		return nil, fmt.Errorf("%w: ports below 1024 need root (or CAP_NET_BIND_SERVICE); give another port with %s, e.g. %s :8443", err, flag, flag)
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("%w: another program listens there; choose another address with %s", err, flag)
	}
	return nil, err
}

// loadDeviceCA reads --device-ca: the CA certificates that sign device
// certificates (certificateAuthority authentication). None: no such CA.
func loadDeviceCA(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--device-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("--device-ca: %s holds no PEM certificate", path)
	}
	return pool, nil
}

// serverTLS loads the certificate given by flags, or the hub's own, and
// allows TLS 1.2 and 1.3 only. A certificate given by flags is read again
// when its files change (certs.Reloader), so that a renewal needs no
// restart.
func serverTLS(dir datadir.Dir, hostname string, f *serveFlags, log *slog.Logger) (*tls.Config, error) {
	conf := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		// X.509 devices present a certificate over MQTT-over-WebSocket on
		// this listener too; it is checked at CONNECT, not here, since
		// self-signed device certificates chain to nothing.
		ClientAuth: tls.RequestClientCert,
	}
	switch {
	case f.tlsCert != "" && f.tlsKey != "":
		r, err := certs.NewReloader(f.tlsCert, f.tlsKey, log)
		if err != nil {
			return nil, fmt.Errorf("TLS certificate: %w", err)
		}
		conf.GetCertificate = r.GetCertificate
	case f.tlsCert != "" || f.tlsKey != "":
		return nil, errors.New("--tls-cert and --tls-key go together")
	default:
		cert, err := certs.EnsureServer(dir.Path, certs.Hosts(hostname))
		if err != nil {
			return nil, fmt.Errorf("TLS certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// connectNATS connects to the external NATS or starts the embedded one
// (embedded is nil with --nats); quorum says whether the NATS cluster can
// replicate writes: the external servers' (jetstream.ExternalQuorum) or
// the embedded cluster's (Embedded.Quorum), nil for one embedded server.
func connectNATS(dir datadir.Dir, f *serveFlags) (nc *nats.Conn, embedded *jetstream.Embedded, closeNATS func(), quorum func(context.Context) error, err error) {
	if f.natsURL != "" {
		nc, err := jetstream.Connect(f.natsURL)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		quorum = func(ctx context.Context) error { return jetstream.ExternalQuorum(ctx, nc) }
		return nc, nil, func() { nc.Drain() }, quorum, nil
	}
	o := jetstream.EmbeddedOptions{Dir: dir.File("jetstream"), SyncAlways: f.syncAlways, SyncInterval: f.syncEvery}
	if err := clusterOptions(dir, f, &o); err != nil {
		return nil, nil, nil, nil, err
	}
	e, err := jetstream.StartEmbedded(o)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if o.Cluster != "" {
		quorum = func(context.Context) error { return e.Quorum() }
	}
	return e.Conn, e, e.Close, quorum, nil
}

// watchQuorum logs when this node's NATS cluster loses a quorum, and when
// it has it again, until ctx ends.
func watchQuorum(ctx context.Context, quorum func(context.Context) error, log *slog.Logger) {
	var lost bool
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		asked, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := quorum(asked)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil && !lost:
			log.Error("the cluster has no quorum: writes are refused with 503 until it does", "err", err)
		case err == nil && lost:
			log.Info("the cluster has a quorum again")
		}
		lost = err != nil
	}
}

// clusterOptions makes o those of a node of an embedded cluster when
// --cluster is given: its routes' TLS from the hub's CA, and their secret
// from the CA's key.
func clusterOptions(dir datadir.Dir, f *serveFlags, o *jetstream.EmbeddedOptions) error {
	if f.cluster == "" {
		if len(f.routes) > 0 {
			return errors.New("--routes needs --cluster")
		}
		return nil
	}
	if f.natsURL != "" {
		return errors.New("--cluster forms a cluster of embedded NATS servers; with --nats the cluster is the external one")
	}
	host, _, err := net.SplitHostPort(f.cluster)
	if err != nil {
		return fmt.Errorf("--cluster %q: not host:port: %v", f.cluster, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return fmt.Errorf("--cluster %q: give the address the other nodes reach this node at (its route certificate names it), e.g. 10.0.0.1:6222", f.cluster)
	}
	tlsConf, err := certs.ClusterTLS(dir.Path, host)
	if err != nil {
		return fmt.Errorf("the cluster's TLS: %w", err)
	}
	secret, err := certs.ClusterSecret(dir.Path)
	if err != nil {
		return fmt.Errorf("the cluster's secret: %w", err)
	}
	o.Cluster, o.Routes, o.NodeName = f.cluster, f.routes, f.nodeName
	o.ClusterSecret, o.ClusterTLS = secret, tlsConf
	return nil
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
