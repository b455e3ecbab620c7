package amqp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/amqp/wire"
	"github.com/twinhub/twinhub/sas"
)

// The Event Hubs-compatible endpoint: back ends read telemetry as from an
// event hub named hub.EventHubName, whose partitions are the telemetry's.
// A reader attaches a receiver to
// "<entity>/ConsumerGroups/<group>/Partitions/<n>" with its position in a
// selector filter and keeps the position itself; the $management node
// answers READ requests for the entity and its partitions. Clients that
// ask the IoT Hub name, messages/events, are redirected to the entity
// (amqp:link:redirect), as IoT Hub does. ../shared/AMQP.md has the
// details the clients check.

// Names of the endpoint's nodes, filters, properties and conditions.
const (
	managementNode = "$management"
	eventsNode     = "messages/events"

	selectorFilter     wire.Symbol = "apache.org:selector-filter:string"
	selectorFilterCode uint64      = 0x0000468C00000004

	eventHubType  = "com.microsoft:eventhub"
	partitionType = "com.microsoft:partition"

	condRedirect wire.Symbol = "amqp:link:redirect"

	epochProperty wire.Symbol = "com.microsoft:epoch"
	// runtimeMetric, desired by a reader, puts the partition's last
	// enqueued event on each event it gets (delivery annotations).
	runtimeMetric wire.Symbol = "com.microsoft:enable-receiver-runtime-metric"
	// runtimeInfoAge is how old the partition's last enqueued event may
	// be, as a reader with the runtime metric is told it.
	runtimeInfoAge = time.Second
)

// errLinkGone ends a partition reader whose link has gone.
var errLinkGone = errors.New("amqp: the link is detached")

// redirectedAddress says whether address is IoT Hub's name of its
// telemetry ("messages/events[/...]"), and what follows the name.
func redirectedAddress(address string) (rest string, ok bool) {
	if len(address) < len(eventsNode) || !strings.EqualFold(address[:len(eventsNode)], eventsNode) {
		return "", false
	}
	rest = address[len(eventsNode):]
	if rest != "" && rest[0] != '/' {
		return "", false
	}
	return rest, true
}

// redirect refuses a link to messages/events with amqp:link:redirect,
// whose info names the entity's address on this host and the port of
// the AMQP listener (also to a client that came over WebSocket: the
// address is amqps://, and amenzhinsky's client looks for ":5671/").
func (c *conn) redirect(s *session, a wire.Attach, rest string) error {
	host := c.srv.hub.Host()
	port := c.srv.redirectPort()
	address := fmt.Sprintf("amqps://%s:%d/%s%s", host, port, c.srv.hub.EventHubName(), rest)
	return c.refuseLinkWith(s, a, &wire.Error{
		Condition:   condRedirect,
		Description: "the telemetry is read from the Event Hubs-compatible entity at " + address,
		Info: wire.Map{
			{Key: wire.Symbol("hostname"), Value: host},
			{Key: wire.Symbol("network-host"), Value: host},
			{Key: wire.Symbol("port"), Value: int32(port)},
			{Key: wire.Symbol("address"), Value: address},
		},
	})
}

// redirectPort is the port of the AMQP listener: the last one Serve
// took, else IoT Hub's 5671.
func (s *Server) redirectPort() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ln := range s.listeners {
		if _, p, err := net.SplitHostPort(ln.Addr().String()); err == nil {
			if n, err := strconv.Atoi(p); err == nil {
				return n
			}
		}
	}
	return 5671
}

// isManagement says whether address is the entity's $management node
// ("$management" or "<entity>/$management").
func (c *conn) isManagement(address string) bool {
	entity, node, ok := strings.Cut(address, "/")
	if !ok {
		return address == managementNode
	}
	return node == managementNode && strings.EqualFold(entity, c.srv.hub.EventHubName())
}

// partitionAddress is the address of a partition reader.
type partitionAddress struct {
	entity, group, partition string
}

// resource is the address as the path below the host that SAS tokens
// are checked against.
func (p partitionAddress) resource() string {
	return "/" + p.entity + "/ConsumerGroups/" + p.group + "/Partitions/" + p.partition
}

// parsePartitionAddress reads "<entity>/ConsumerGroups/<group>/Partitions/<n>"
// (the fixed words in any case, the names URL-decoded).
func parsePartitionAddress(address string) (partitionAddress, bool) {
	parts := strings.Split(address, "/")
	if len(parts) != 5 || !strings.EqualFold(parts[1], "ConsumerGroups") || !strings.EqualFold(parts[3], "Partitions") {
		return partitionAddress{}, false
	}
	for i, s := range parts {
		if u, err := url.PathUnescape(s); err == nil {
			parts[i] = u
		}
		if parts[i] == "" {
			return partitionAddress{}, false
		}
	}
	return partitionAddress{entity: parts[0], group: parts[2], partition: parts[4]}, true
}

// attachPartition checks a partition reader's link (the entity, the
// partition, a grant with ServiceConnect for its address, the consumer
// group, its filter)
// and arranges for the events to be sent once the attach is answered.
// It returns the error to refuse the link with.
func (c *conn) attachPartition(l *link, a wire.Attach, p partitionAddress) *wire.Error {
	h := c.srv.hub
	if !strings.EqualFold(p.entity, h.EventHubName()) {
		return &wire.Error{Condition: condNotFound, Description: fmt.Sprintf("the messaging entity %q does not exist; this hub's is %q", p.entity, h.EventHubName())}
	}
	if l.receiving {
		return &wire.Error{Condition: condNotAllowed, Description: "the Event Hubs-compatible endpoint is read only: devices send telemetry"}
	}
	n, err := h.EventPartitions()
	if err != nil {
		return &wire.Error{Condition: condInternalError, Description: twinhub.AsError(err).Message}
	}
	partition, err := strconv.Atoi(p.partition)
	if err != nil || partition < 0 || partition >= n {
		return &wire.Error{Condition: condNotFound, Description: fmt.Sprintf("partition %q does not exist; the partitions are 0 to %d", p.partition, n-1)}
	}
	if err := c.authorizedService(p.resource(), sas.ServiceConnect); err != nil {
		return &wire.Error{Condition: condUnauthorized, Description: twinhub.AsError(err).Message}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.CheckConsumerGroup(ctx, p.group); err != nil {
		e := twinhub.AsError(err)
		return &wire.Error{Condition: conditionOf(e), Description: e.Message}
	}
	var from twinhub.EventPosition
	if a.Source != nil {
		if from, err = positionOf(a.Source.Filter); err != nil {
			return &wire.Error{Condition: condInvalidField, Description: err.Error()}
		}
	}
	if from.Latest {
		// What comes after the attach is answered: the partition's end
		// now, not when the reader's consumer gets going.
		info, err := h.EventPartitionInfo(ctx, partition)
		if err != nil {
			return &wire.Error{Condition: condInternalError, Description: twinhub.AsError(err).Message}
		}
		from = twinhub.EventPosition{Sequence: info.LastSequence}
	}
	epoch, err := epochOf(a.Properties)
	if err != nil {
		return &wire.Error{Condition: condInvalidField, Description: err.Error()}
	}
	key := partitionKey{group: strings.ToLower(p.group), partition: partition}
	r := &partitionReader{c: c, l: l, epoch: epoch}
	refused, stolen := c.srv.claim(key, r)
	if refused != nil {
		return refused
	}
	for _, o := range stolen {
		go o.c.steal(o.l, fmt.Sprintf("a reader of epoch %d took partition %d of consumer group %s", *epoch, partition, p.group))
	}
	l.stop = func() { c.srv.release(key, r) }
	metric := slices.Contains(a.DesiredCapabilities, runtimeMetric)
	l.runtimeMetric = metric
	l.start = func() { c.readPartition(l, partition, from, metric) }
	return nil
}

// partitionKey names the readers that epochs order: those of one
// partition in one consumer group (named in any case).
type partitionKey struct {
	group     string
	partition int
}

// partitionReader is a reader's link, with its epoch (nil: none).
type partitionReader struct {
	c     *conn
	l     *link
	epoch *int64
}

// epochOf reads the com.microsoft:epoch attach property (a long).
func epochOf(props wire.Map) (*int64, error) {
	v, ok := props.Get(epochProperty)
	if !ok || v == nil {
		return nil, nil
	}
	var n int64
	switch x := v.(type) {
	case int64:
		n = x
	case int32:
		n = int64(x)
	case int16:
		n = int64(x)
	case int8:
		n = int64(x)
	case uint32:
		n = int64(x)
	default:
		return nil, fmt.Errorf("%s is a %T, not a long", epochProperty, v)
	}
	return &n, nil
}

// claim adds a reader of a partition, under Event Hubs' epoch rules: a
// reader with an epoch takes the partition from readers with a lower
// or equal epoch and from those without one (stolen: to detach with
// amqp:link:stolen), and is refused when a reader of a higher epoch
// holds it; a reader without an epoch is refused while one with an
// epoch holds it.
func (s *Server) claim(k partitionKey, r *partitionReader) (refused *wire.Error, stolen []*partitionReader) {
	s.readersMu.Lock()
	defer s.readersMu.Unlock()
	var kept []*partitionReader
	for _, o := range s.readers[k] {
		switch {
		case o.epoch != nil && r.epoch == nil:
			return &wire.Error{Condition: condStolen, Description: fmt.Sprintf("a reader of epoch %d holds partition %d of this consumer group", *o.epoch, k.partition)}, nil
		case o.epoch != nil && *o.epoch > *r.epoch:
			return &wire.Error{Condition: condStolen, Description: fmt.Sprintf("a reader of epoch %d, higher than %d, holds partition %d of this consumer group", *o.epoch, *r.epoch, k.partition)}, nil
		case r.epoch != nil:
			stolen = append(stolen, o)
		default:
			kept = append(kept, o)
		}
	}
	s.readers[k] = append(kept, r)
	return nil, stolen
}

// release removes a reader that has gone.
func (s *Server) release(k partitionKey, r *partitionReader) {
	s.readersMu.Lock()
	defer s.readersMu.Unlock()
	rs := s.readers[k]
	for i, o := range rs {
		if o == r {
			rs = append(rs[:i:i], rs[i+1:]...)
			break
		}
	}
	if len(rs) == 0 {
		delete(s.readers, k)
	} else {
		s.readers[k] = rs
	}
}

// steal detaches a reader whose partition a reader of a higher epoch
// took. It runs on a goroutine of its own: the taker holds its own
// connection's lock, and may be on this connection.
func (c *conn) steal(l *link, why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeLink(l, &wire.Error{Condition: condStolen, Description: why})
}

// selector matches a selector filter on one annotation:
// "amqp.annotation.x-opt-offset > '123'" (quotes optional).
var selector = regexp.MustCompile(`^\s*amqp\.annotation\.(x-opt-[a-z-]+)\s*(>=|>|=)\s*'?([^']*)'?\s*$`)

// positionOf reads a reader's position from its source filter: an
// offset (also '-1', the start, and '@latest'), a sequence number or an
// enqueued time in Unix milliseconds; without a filter, the start.
// Offsets are the partition's sequence numbers, as strings.
func positionOf(filter wire.Map) (twinhub.EventPosition, error) {
	v, ok := filter.Get(selectorFilter)
	if !ok {
		if len(filter) > 0 {
			return twinhub.EventPosition{}, fmt.Errorf("twinhub reads only the filter %s", selectorFilter)
		}
		return twinhub.EventPosition{}, nil
	}
	if d, ok := v.(wire.Described); ok {
		v = d.Value
	}
	expr, _ := v.(string)
	m := selector.FindStringSubmatch(expr)
	if m == nil {
		return twinhub.EventPosition{}, fmt.Errorf("selector %q is not amqp.annotation.<x-opt-offset|x-opt-sequence-number|x-opt-enqueued-time> > '<value>'", expr)
	}
	name, op, value := m[1], m[2], strings.TrimSpace(m[3])
	inclusive := op != ">"
	switch name {
	case "x-opt-offset", "x-opt-sequence-number":
		if value == "@latest" && name == "x-opt-offset" {
			return twinhub.EventPosition{Latest: true}, nil
		}
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return twinhub.EventPosition{}, fmt.Errorf("%s %q is not a number", name, value)
		}
		if n < 0 {
			return twinhub.EventPosition{}, nil // -1: the start
		}
		return twinhub.EventPosition{Sequence: uint64(n), Inclusive: inclusive}, nil
	case "x-opt-enqueued-time", "x-opt-enqueuedtimeutc":
		ms, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return twinhub.EventPosition{}, fmt.Errorf("%s %q is not Unix milliseconds", name, value)
		}
		// Events carry their time in milliseconds: "after ms" is from
		// the next millisecond on (ReadPartition takes what is after
		// the instant).
		if !inclusive {
			ms++
		}
		return twinhub.EventPosition{After: time.UnixMilli(ms).Add(-time.Nanosecond)}, nil
	}
	return twinhub.EventPosition{}, fmt.Errorf("twinhub filters on x-opt-offset, x-opt-sequence-number or x-opt-enqueued-time, not %s", name)
}

// readPartition sends the partition's events from a position on link l,
// as the client gives credit, until the link or connection goes; with
// metric, each carries the partition's last enqueued event, at most
// runtimeInfoAge old. A store that fails detaches the link with the
// error.
func (c *conn) readPartition(l *link, partition int, from twinhub.EventPosition, metric bool) {
	ctx, cancel := context.WithCancel(context.Background())
	release := l.stop
	l.stop = func() {
		cancel()
		if release != nil {
			release()
		}
	}
	c.senders.Add(1)
	go func() {
		defer c.senders.Done()
		var last twinhub.PartitionInfo
		var asked time.Time
		err := c.srv.hub.ReadEventPartition(ctx, partition, from, func(e *twinhub.Event) error {
			m := eventMessage(e)
			if metric {
				if e.Sequence > last.LastSequence || time.Since(asked) > runtimeInfoAge {
					info, err := c.srv.hub.EventPartitionInfo(ctx, partition)
					if err != nil {
						return err
					}
					last, asked = info, time.Now()
				}
				m.DeliveryAnnotations = runtimeInfo(last, asked)
			}
			return c.deliver(l, m)
		})
		if ctx.Err() != nil || errors.Is(err, errLinkGone) {
			return
		}
		c.srv.log.Warn("amqp partition reader ended", "partition", partition, "err", err)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.closeLink(l, &wire.Error{Condition: condInternalError, Description: twinhub.AsError(err).Message})
	}()
}

// deliver sends m on l once the client has given credit for it.
func (c *conn) deliver(l *link, m wire.Message) error { return c.deliverTracked(l, m, nil) }

// runtimeInfo is the delivery annotations of the runtime metric: the
// partition's last enqueued event as of when it was asked.
func runtimeInfo(p twinhub.PartitionInfo, asked time.Time) wire.Map {
	return wire.Map{
		{Key: wire.Symbol("last_enqueued_sequence_number"), Value: int64(p.LastSequence)},
		{Key: wire.Symbol("last_enqueued_offset"), Value: strconv.FormatUint(p.LastSequence, 10)},
		{Key: wire.Symbol("last_enqueued_time_utc"), Value: p.LastEnqueued.UTC()},
		{Key: wire.Symbol("runtime_info_retrieval_time_utc"), Value: asked.UTC()},
	}
}

// eventMessage is an event as Event Hubs delivers it: the body as data,
// the partition's sequence number and offset and the enqueued time as
// x-opt annotations, IoT Hub's system properties as iothub-
// annotations, the device's properties as application properties.
func eventMessage(e *twinhub.Event) wire.Message {
	seq := int64(e.Sequence)
	enqueued := e.Enqueued.Time.UTC()
	ann := wire.Map{
		{Key: wire.Symbol("x-opt-sequence-number"), Value: seq},
		{Key: wire.Symbol("x-opt-offset"), Value: strconv.FormatInt(seq, 10)},
		{Key: wire.Symbol("x-opt-enqueued-time"), Value: enqueued},
		{Key: wire.Symbol("iothub-connection-device-id"), Value: e.Identity.DeviceID},
	}
	if e.Identity.ModuleID != "" {
		ann = append(ann, wire.MapEntry{Key: wire.Symbol("iothub-connection-module-id"), Value: e.Identity.ModuleID})
	}
	ann = append(ann, wire.MapEntry{Key: wire.Symbol("iothub-connection-auth-method"), Value: twinhub.AuthMethodJSON(e.Identity, e.AuthMethod)})
	if e.AuthGenerationID != "" {
		ann = append(ann, wire.MapEntry{Key: wire.Symbol("iothub-connection-auth-generation-id"), Value: e.AuthGenerationID})
	}
	ann = append(ann,
		wire.MapEntry{Key: wire.Symbol("iothub-enqueuedtime"), Value: enqueued},
		wire.MapEntry{Key: wire.Symbol("iothub-message-source"), Value: "Telemetry"},
	)
	m := wire.Message{
		Annotations: ann,
		Properties: wire.Properties{
			To: e.To, ContentType: wire.Symbol(e.ContentType), ContentEncoding: wire.Symbol(e.ContentEncoding),
		},
		Data: e.Body,
	}
	if e.MessageID != "" {
		m.Properties.MessageID = e.MessageID
	}
	if e.CorrelationID != "" {
		m.Properties.CorrelationID = e.CorrelationID
	}
	if e.UserID != "" {
		m.Properties.UserID = []byte(e.UserID)
	}
	for _, p := range e.Properties {
		m.ApplicationProperties = append(m.ApplicationProperties, wire.MapEntry{Key: p.Key, Value: p.Value})
	}
	return m
}

// manage answers a request to the $management node: READ of the entity
// or of one partition.
func (c *conn) manage(m wire.Message) wire.Described {
	status, desc, body := c.managementRead(m)
	c.srv.log.Debug("amqp management request", "principal", c.principal, "status", status)
	c.reply(managementNode, m.Properties.ReplyTo, statusReply(m, status, desc, body))
	return wire.Accepted
}

func (c *conn) managementRead(m wire.Message) (int, string, any) {
	get := func(k string) string { return textOf(m.ApplicationProperties.Get(k)) }
	h := c.srv.hub
	if op := get("operation"); op != "READ" {
		return http.StatusBadRequest, fmt.Sprintf("operation %q is not READ", op), nil
	}
	name := get("name")
	if !strings.EqualFold(name, h.EventHubName()) {
		return http.StatusNotFound, fmt.Sprintf("the messaging entity %q does not exist; this hub's is %q", name, h.EventHubName()), nil
	}
	resource := "/" + name + "/" + managementNode
	err := c.authorizedService(resource, sas.ServiceConnect)
	if token := get("security_token"); err != nil && token != "" {
		err = h.AuthorizeServiceOn(token, resource, sas.ServiceConnect)
	}
	if err != nil {
		return http.StatusUnauthorized, twinhub.AsError(err).Message, nil
	}
	n, err := h.EventPartitions()
	if err != nil {
		e := twinhub.AsError(err)
		return e.Status, e.Message, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch get("type") {
	case eventHubType:
		info, err := h.EventPartitionInfo(ctx, 0)
		if err != nil {
			e := twinhub.AsError(err)
			return e.Status, e.Message, nil
		}
		ids := make(wire.Array, n)
		for i := range ids {
			ids[i] = strconv.Itoa(i)
		}
		return http.StatusOK, "OK", wire.Map{
			{Key: "name", Value: h.EventHubName()},
			{Key: "type", Value: eventHubType},
			{Key: "created_at", Value: info.Created.UTC()},
			{Key: "partition_count", Value: int32(n)},
			{Key: "partition_ids", Value: ids},
		}
	case partitionType:
		p, err := strconv.Atoi(get("partition"))
		if err != nil {
			return http.StatusBadRequest, fmt.Sprintf("partition %q is not a number", get("partition")), nil
		}
		info, err := h.EventPartitionInfo(ctx, p)
		if err != nil {
			e := twinhub.AsError(err)
			return e.Status, e.Message, nil
		}
		// Before any event, Event Hubs says -1.
		last := int64(info.LastSequence)
		if info.LastSequence == 0 {
			last = -1
		}
		lastTime := info.LastEnqueued.UTC()
		if last < 0 {
			lastTime = time.UnixMilli(0).UTC()
		}
		return http.StatusOK, "OK", wire.Map{
			{Key: "name", Value: h.EventHubName()},
			{Key: "type", Value: partitionType},
			{Key: "partition", Value: strconv.Itoa(p)},
			{Key: "begin_sequence_number", Value: int64(info.FirstSequence)},
			{Key: "last_enqueued_sequence_number", Value: last},
			{Key: "last_enqueued_offset", Value: strconv.FormatInt(last, 10)},
			{Key: "last_enqueued_time_utc", Value: lastTime},
			{Key: "is_partition_empty", Value: info.Empty},
		}
	}
	return http.StatusBadRequest, fmt.Sprintf("type %q is neither %s nor %s", get("type"), eventHubType, partitionType), nil
}
