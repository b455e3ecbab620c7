package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/index"
	"github.com/twinhub/twinhub/metrics"
	"github.com/twinhub/twinhub/sas"
)

// Hub is the core of twinhub: the identity registry, twins, queries and
// authorization, with no protocol code. Front ends (REST, MQTT) translate
// requests into calls on it.
type Hub struct {
	host     string
	policies []sas.Policy
	// verified remembers the service tokens verified with policies.
	verified sas.Verified
	store    twinhub.Store
	// marked is store when the hub is its sole writer (Config.SoleWriter),
	// else nil.
	marked *markedStore
	bus    twinhub.Bus
	log    *slog.Logger
	index  *index.Index
	// snapshot is where the index is saved (indexsnapshot.go); nil: nowhere.
	snapshot *indexSnapshot
	// cache holds recently read and written records (cache.go).
	cache *recordCache
	// writing lets one write of an identity at a time run (keylocks.go).
	writing keyLocks
	// states writes connection states in the background (connections.go).
	states connStates
	// jobs keeps the jobs that runJobs runs (jobs.go).
	jobs twinhub.JobStore
	// configs keeps the configurations that reconcileConfigurations
	// applies (configurations.go); configKick asks for a pass, whose
	// counts are configMetrics.
	configs       twinhub.ConfigurationStore
	configKick    chan struct{}
	configMu      sync.Mutex
	configMetrics map[string]configMetrics
	// configKnown are the configurations the reconciler's last pass
	// found (nil before its first), for removing the statuses of those
	// deleted since; the reconciler's goroutine alone uses it.
	configKnown map[string]bool
	// blobs is where devices upload files, and uploads counts those
	// under way (fileupload.go).
	blobs   twinhub.BlobStorage
	uploads twinhub.ActiveUploads
	// metrics counts operations (nil: none); see resultOf.
	metrics *metrics.Metrics
	// ieJobs keeps import and export jobs, which read and write the
	// containers that opens (importexport.go); life is the hub's
	// context, which the jobs run in.
	ieJobs         twinhub.ImportExportJobStore
	containers     twinhub.BlobContainers
	life           context.Context
	faultInjection bool

	// node and connSeq make the ids of device connections
	// (NewConnectionID).
	node    string
	connSeq atomic.Uint64

	// desired and c2dReady hand the desired changes and C2D notices of
	// the bus to this node's connections (fanout.go).
	desired  fanout[twinhub.Key, DesiredPatch]
	c2dReady fanout[string, struct{}]

	// Messages (messages.go): the stores Config gave, fixed for the
	// hub's life; without telemetry, events are acknowledged and dropped
	// (said once, noted); without C2D, cloud-to-device messages are
	// refused. c2dLocks are the locks of messages received over HTTPS.
	telemetry twinhub.TelemetryStore
	eventHub  string
	groups    twinhub.ConsumerGroupStore
	c2d       twinhub.C2DQueue
	feedbacks twinhub.FeedbackStore
	files     twinhub.FileNotificationStore
	noted     sync.Once
	c2dMu     sync.Mutex
	c2dLocks  map[c2dLockKey]time.Time

	// methodsOnce makes methodRouter, the node's direct-method router,
	// on first use (methods.go).
	methodsOnce  sync.Once
	methodRouter *methodRouter
	methodResend time.Duration
}

// Config is what a Hub needs to run.
type Config struct {
	// Host is the hub's host name, the one SAS tokens are issued for.
	Host     string
	Policies []sas.Policy
	Store    twinhub.Store
	Bus      twinhub.Bus
	Log      *slog.Logger
	// Telemetry and C2D store device-to-cloud and cloud-to-device
	// messages; without them telemetry is dropped and C2D refused.
	// Without Feedback, no C2D feedback is kept; without
	// FileNotifications, no file-upload notifications.
	Telemetry         twinhub.TelemetryStore
	C2D               twinhub.C2DQueue
	Feedback          twinhub.FeedbackStore
	FileNotifications twinhub.FileNotificationStore
	// MethodResendInterval is how often a direct-method call that waits
	// for its device to connect (connectTimeoutInSeconds) is sent again
	// to every node, besides when a node announces the device's
	// connection (default 1 s).
	MethodResendInterval time.Duration
	// C2DSweepInterval is how often expired cloud-to-device messages are
	// deleted, with their feedback, when no delivery has come across
	// them (0: never; `twinhub serve` sweeps every minute).
	C2DSweepInterval time.Duration
	// EventHubName is the name of the Event Hubs-compatible entity over
	// the telemetry ("" : DefaultEventHubName of Host). ConsumerGroups
	// keeps its consumer groups; without it only $Default exists.
	EventHubName   string
	ConsumerGroups twinhub.ConsumerGroupStore
	// RecordCacheBytes bounds the decoded records the hub keeps to start
	// writes and answer reads from (0: DefaultRecordCacheBytes, < 0: no
	// cache).
	RecordCacheBytes int
	// Jobs keeps jobs (twin updates and direct methods over many
	// devices); without it jobs are refused. Jobs that ended are kept
	// JobRetention (0: twinhub.JobRetention, 30 days), with their device
	// records, as are import and export jobs.
	Jobs         twinhub.JobStore
	JobRetention time.Duration
	// Configurations keeps automatic configurations, applied every
	// ConfigurationInterval (0: DefaultConfigurationInterval) and after
	// each change; without it configurations are refused.
	Configurations        twinhub.ConfigurationStore
	ConfigurationInterval time.Duration
	// Blobs is the storage account devices upload files to; without it
	// file upload is refused. Uploads counts each device's uploads under
	// way for IoT Hub's limit; without it there is none.
	Blobs   twinhub.BlobStorage
	Uploads twinhub.ActiveUploads
	// ImportExportJobs keeps import and export jobs, and Containers
	// opens the blob containers they name; without both, they are
	// refused.
	ImportExportJobs twinhub.ImportExportJobStore
	Containers       twinhub.BlobContainers
	// Metrics counts the hub's operations (twin reads and writes,
	// queries, telemetry, C2D, methods); nil counts nothing.
	Metrics *metrics.Metrics
	// FaultInjection lets devices drop their own connections with IoT
	// Hub's fault injection messages (faults.go), for SDK resilience
	// tests; off in production.
	FaultInjection bool
	// SoleWriter says that no other hub writes Store (one node on its
	// embedded NATS server): a query then waits for the index to reach
	// this hub's own last write instead of asking the store for its last
	// revision (markedStore). Nodes that share a store leave it false.
	SoleWriter bool
	// IndexSnapshot is the file in which the hub keeps a snapshot of its
	// query index, to start from it instead of reading every record of
	// the store ("": none; the store must be able to watch from a
	// revision). SaveIndex writes it, and so does the hub every
	// IndexSnapshotInterval while the index changes (0: never by itself).
	IndexSnapshot         string
	IndexSnapshotInterval time.Duration
}

// New starts a hub: it begins watching the store into the query index and
// subscribes to desired-property events, and returns once the index holds
// every existing record. The hub runs until ctx ends.
func New(ctx context.Context, c Config) (*Hub, error) {
	if c.Log == nil {
		c.Log = slog.Default()
	}
	node := make([]byte, 6)
	rand.Read(node)
	h := &Hub{
		node:     hex.EncodeToString(node),
		host:     strings.ToLower(c.Host),
		policies: c.Policies,
		store:    c.Store,
		bus:      c.Bus,
		log:      c.Log,

		telemetry: c.Telemetry,
		eventHub:  c.EventHubName,
		groups:    c.ConsumerGroups,
		c2d:       c.C2D,
		feedbacks: c.Feedback,
		files:     c.FileNotifications,
		c2dLocks:  map[c2dLockKey]time.Time{},

		methodResend: c.MethodResendInterval,
		jobs:         c.Jobs,
		configs:      c.Configurations,
		configKick:   make(chan struct{}, 1),
		blobs:        c.Blobs,
		uploads:      c.Uploads,
		ieJobs:       c.ImportExportJobs,
		containers:   c.Containers,
		life:         ctx,

		faultInjection: c.FaultInjection,
		metrics:        c.Metrics,
	}
	if c.SoleWriter {
		h.marked = &markedStore{Store: c.Store}
		h.store = h.marked
	}
	if h.eventHub == "" {
		h.eventHub = DefaultEventHubName(h.host)
	}
	if h.methodResend <= 0 {
		h.methodResend = time.Second
	}
	if c.RecordCacheBytes == 0 {
		c.RecordCacheBytes = DefaultRecordCacheBytes
	}
	h.cache = newRecordCache(c.RecordCacheBytes)
	h.states.init()
	h.writing.init()
	var from uint64
	h.index, from = h.openIndex(ctx, c.Store, c.IndexSnapshot)
	if wr, ok := c.Store.(writeReporter); ok && h.marked != nil {
		h.marked.direct = true
		wr.ReportWrites(func(k twinhub.Key, data []byte, rev uint64) {
			if err := h.index.ApplyWritten(k, data, rev); err != nil {
				// The watch skips it too, and a reader waits for it to.
				h.log.Error("the query index cannot read a record written", "identity", k.String(), "err", err)
				h.marked.raise(rev)
			}
		})
	}
	ready := make(chan struct{})
	watchErr := make(chan error, 1)
	go func() {
		watchErr <- h.index.Watch(ctx, c.Store, c.Log, from, func() { close(ready) })
	}()
	select {
	case <-ready:
	case err := <-watchErr:
		return nil, fmt.Errorf("watching the store: %w", err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	go func() {
		if err := <-watchErr; err != nil && ctx.Err() == nil {
			h.log.Error("store watch ended", "err", err)
		}
	}()
	if h.marked != nil {
		// The mark starts at the revision the index has loaded up to, so
		// that reads can use the index before the hub's first write
		// (read); without it they ask the store until then.
		if _, err := h.marked.lastWritten(ctx); err != nil {
			h.log.Warn("reading the store's last revision", "err", err)
		}
	}
	if c.Bus != nil {
		cancel, err := c.Bus.Subscribe(desiredSubject+">", h.deliverDesired)
		if err != nil {
			return nil, fmt.Errorf("subscribing to desired-property events: %w", err)
		}
		context.AfterFunc(ctx, cancel)
		cancel, err = c.Bus.Subscribe(c2dReadySubject+">", func(subject string, _ []byte) {
			h.c2dReady.send(strings.TrimPrefix(subject, c2dReadySubject), struct{}{})
		})
		if err != nil {
			return nil, fmt.Errorf("subscribing to cloud-to-device notices: %w", err)
		}
		context.AfterFunc(ctx, cancel)
		if rb, ok := c.Bus.(twinhub.ReconnectingBus); ok {
			go h.wakeC2DOnReconnect(ctx, rb)
		}
	}
	if h.snapshot != nil && c.IndexSnapshotInterval > 0 {
		go h.saveIndexEvery(ctx, c.IndexSnapshotInterval)
	}
	if c.C2D != nil && c.C2DSweepInterval > 0 {
		go h.sweepC2DEvery(ctx, c.C2DSweepInterval)
	}
	if h.jobs != nil {
		go h.runJobs(ctx)
	}
	if h.jobs != nil || h.ieJobs != nil {
		retention := c.JobRetention
		if retention <= 0 {
			retention = twinhub.JobRetention
		}
		go h.sweepJobs(ctx, retention, min(jobSweep, retention))
	}
	if h.configs != nil {
		every := c.ConfigurationInterval
		if every <= 0 {
			every = DefaultConfigurationInterval
		}
		go h.reconcileConfigurations(ctx, every)
	}
	return h, nil
}

// Host is the hub's host name.
func (h *Hub) Host() string { return h.host }

// resultOf is an operation's result as metrics label it: "ok", or the IoT
// Hub error code of its failure (a bounded set).
func resultOf(err error) string {
	if err == nil {
		return "ok"
	}
	return twinhub.AsError(err).Code
}

// forEachKey calls fn(i, keys[i]) for every key, workers at once (for
// work over many twins: configuration passes, import and export jobs);
// the first error stops it and is returned.
func (h *Hub) forEachKey(ctx context.Context, keys []twinhub.Key, workers int, fn func(i int, k twinhub.Key) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, max(len(keys), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i, keys[i]); err != nil {
					cancel(err)
				}
			}
		}()
	}
feed:
	for i := range keys {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}

// every calls fn every interval until ctx ends or fn returns false: the
// hub's periodic work (snapshots, sweeps, leases, job statistics).
func every(ctx context.Context, interval time.Duration, fn func() bool) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !fn() {
			return
		}
	}
}
