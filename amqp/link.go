package amqp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/amqp/wire"
	"github.com/twinhub/twinhub/sas"
)

// Credit and sizes of the links the hub accepts.
const (
	// linkCredit is the credit the hub gives a client's sender, renewed
	// when half is used: rhea and the Node SDKs send nothing without it.
	linkCredit = 100
	// maxMessageSize bounds a message received in several transfers
	// (IoT Hub's largest, telemetry, is 256 KB).
	maxMessageSize = 1 << 20
)

// The sender settle modes of an attach (part 2, section 2.8.2).
const (
	sndUnsettled uint8 = 0
	sndSettled   uint8 = 1
	sndMixed     uint8 = 2
)

// link is one end of a link the hub accepted, in the session of the
// client's link: the hub receives on it when the client sends, and sends
// when the client receives. Its fields are grouped to keep it within 160
// bytes, a size class of Go's allocator: each of thousands of idle
// devices multiplexed on connections has a session of several links
// (TestLinkSize). Their address is the attach's, not kept.
type link struct {
	s *session
	// name is the client's name for the link, kept (with replyTo) for
	// the receivers of a request-response node's answers only.
	name   string
	handle uint32 // the client's handle, which the hub uses for its end too
	// receiving reports whether the hub receives on the link.
	receiving bool
	sndSettle uint8
	// awaitOutcome makes the hub send unsettled when the client lets it
	// choose (mixed), for a node that acts on the outcome (feedback).
	awaitOutcome bool
	// gone is set when the link is detached or its session or
	// connection ends: nothing is sent on it after that.
	gone bool

	// The hub receiving: the client's delivery-count as the hub knows it,
	// the credit left, and the delivery whose message spans transfers,
	// put together as they come (nil between such deliveries).
	deliveryCount uint32
	credit        uint32
	assembling    *assembling
	// onMessage handles a whole message, and says how the delivery ends
	// (an accepted or rejected state).
	onMessage func(m wire.Message) wire.Described
	// work, when set, takes the messages off the reader (worker.go).
	work *sendQueue[queued]
	// store, when set, starts storing a message, with mu held and without
	// waiting: the outcome comes later, from any goroutine, through
	// c.settleWith(st, outcome) (settle.go). storing counts the messages
	// not settled yet.
	store   func(m wire.Message, st settlement)
	storing uint32

	// The hub sending: runtimeMetric has the hub's attach offer the
	// capability of that name (an Event Hubs reader's last-enqueued
	// metrics); the credit the client gave and the deliveries sent;
	// replyTo is the client's name for its end (the target address of its
	// receiver), which requests name as their reply-to.
	runtimeMetric bool
	sendCredit    uint32
	sendCount     uint32
	queue         []wire.Message
	replyTo       string
	// start, when set, runs once the attach is answered (a partition
	// reader begins sending); stop ends what it started.
	start func()
	stop  func()
	// device is the identity a device link (devices.go) acts for.
	device *deviceOnConn
}

// assembling is a delivery whose message spans transfers: its
// delivery-id, whether it is unsettled, and its message so far. A message
// of one transfer, the usual, is read in place, without a copy; a link
// keeps no buffer between messages.
type assembling struct {
	id        uint32
	unsettled bool
	payload   []byte
}

// offered are the capabilities the hub's attach of l offers.
func (l *link) offered() []wire.Symbol {
	if l.runtimeMetric {
		return []wire.Symbol{runtimeMetric}
	}
	return nil
}

// normalizeAddress strips what clients put around a node's address:
// "amqps://host[:port]" (uamqp and pyamqp send full URLs) and the
// leading "/" (AMQP.md).
func normalizeAddress(a string) string {
	if i := strings.Index(a, "://"); i >= 0 {
		a = a[i+3:]
		if j := strings.IndexByte(a, '/'); j >= 0 {
			a = a[j:]
		} else {
			a = ""
		}
	}
	return strings.TrimPrefix(a, "/")
}

// attach accepts or refuses a link the client attaches: the nodes the
// hub serves are $cbs (both directions); for a connection with a
// policy's grant, /messages/devicebound (C2D send), the serviceBound
// receivers (feedback and file notifications: servicebound.go), the
// Event Hubs entity's $management node and partitions (eventhub.go), and
// the redirect from the IoT Hub name of the telemetry, messages/events.
func (c *conn) attach(s *session, a wire.Attach) error {
	if a.Handle > handleMax {
		return closeWith(condFramingError, "handle %d is over the handle-max %d", a.Handle, handleMax)
	}
	if s.links[a.Handle] != nil {
		return closeWith(condFramingError, "handle %d is attached already", a.Handle)
	}
	address := ""
	if a.Role == wire.RoleReceiver && a.Source != nil {
		address = a.Source.Address
	} else if a.Role == wire.RoleSender && a.Target != nil {
		address = a.Target.Address
	}
	l := &link{s: s, handle: a.Handle, receiving: a.Role == wire.RoleSender, sndSettle: a.SndSettleMode}
	node := normalizeAddress(address)
	if rest, ok := redirectedAddress(node); ok {
		return c.redirect(s, a, rest)
	}
	switch {
	case node == cbsNode && l.receiving:
		l.onMessage = c.putToken
	case c.isManagement(node) && l.receiving:
		l.onMessage = c.manage
	case node == cbsNode || c.isManagement(node):
		if node != cbsNode {
			node = managementNode
		}
		// The client's receiver of the node's answers: a request names
		// it as its reply-to by its name or its target address.
		l.name = a.Name
		if a.Target != nil {
			l.replyTo = a.Target.Address
		}
		c.replies[node] = append(c.replies[node], l)
	case strings.EqualFold(node, c2dNode) && l.receiving:
		if err := c.authorizedService("", sas.ServiceConnect); err != nil {
			return c.refuseLink(s, a, condUnauthorized, twinhub.AsError(err).Message)
		}
		// Each send waits for JetStream: off the reader, a worker a
		// link, so that links send in parallel and each in order.
		c.startWorker(l, func(m wire.Message) (wire.Described, func()) { return c.sendC2D(m), nil })
	default:
		if k, rest, ok := parseDeviceAddress(node); ok {
			if e := c.attachDevice(l, a, node, k, rest); e != nil {
				return c.refuseLinkWith(s, a, e)
			}
			break
		}
		if src, ok := c.serviceBoundSource(node); ok {
			if e := c.attachServiceBound(l, node, src); e != nil {
				return c.refuseLinkWith(s, a, e)
			}
			break
		}
		p, ok := parsePartitionAddress(node)
		if !ok {
			return c.refuseLink(s, a, condNotFound, fmt.Sprintf("twinhub serves no AMQP node %q yet", address))
		}
		if e := c.attachPartition(l, a, p); e != nil {
			return c.refuseLinkWith(s, a, e)
		}
	}
	s.links[a.Handle] = l
	// The client's link properties come back (an epoch, say): pyamqp
	// merges the answer's into its own and fails on none.
	reply := wire.Attach{Name: a.Name, Handle: a.Handle, Role: !a.Role, SndSettleMode: a.SndSettleMode,
		RcvSettleMode: a.RcvSettleMode, Source: a.Source, Target: a.Target, Properties: a.Properties,
		OfferedCapabilities: l.offered()}
	if err := c.send(s.channel, wire.CodeAttach, reply.List(), nil); err != nil {
		return err
	}
	if l.start != nil {
		l.start()
	}
	if l.receiving {
		l.deliveryCount = a.InitialDeliveryCount
		l.credit = linkCredit
		return c.flow(l)
	}
	return nil
}

// flow tells the client the session's window and, for a link the hub
// receives on, its credit.
func (c *conn) flow(l *link) error {
	s := l.s
	f := wire.Flow{NextIncomingID: &s.nextIncomingID, IncomingWindow: sessionWindow,
		NextOutgoingID: s.nextOutgoingID, OutgoingWindow: sessionWindow}
	if l.receiving {
		h, dc, cr := l.handle, l.deliveryCount, l.credit
		f.Handle, f.DeliveryCount, f.LinkCredit = &h, &dc, &cr
	}
	s.windowUsed = 0
	return c.send(s.channel, wire.CodeFlow, f.List(), nil)
}

// onFlow takes the client's flow: new credit for a link the hub sends on
// (and the queued messages go), an echo request answered.
func (c *conn) onFlow(s *session, f wire.Flow) error {
	if f.Handle == nil {
		return nil // session windows: the hub's outgoing traffic is small
	}
	l := s.links[*f.Handle]
	if l == nil {
		return nil // a link refused, or detached
	}
	if !l.receiving && f.LinkCredit != nil {
		dc := l.sendCount
		if f.DeliveryCount != nil {
			dc = *f.DeliveryCount
		}
		l.sendCredit = creditLeft(dc, *f.LinkCredit, l.sendCount)
		if err := c.drain(l); err != nil {
			return err
		}
		c.credit.Broadcast()
	}
	if f.Echo {
		return c.flow(l)
	}
	return nil
}

// creditLeft is what a client's flow leaves the hub to send: the credit
// counts from the client's delivery-count, which lags behind the hub's
// (sent) by the transfers in flight. What those use is not granted again,
// and a grant they overtake (a client lowering its credit) is none:
// serial-number arithmetic, never an underflow into a huge credit.
func creditLeft(deliveryCount, credit, sent uint32) uint32 {
	if left := int32(deliveryCount + credit - sent); left > 0 {
		return uint32(left)
	}
	return 0
}

// onTransfer takes a transfer on a link the hub receives on: the payload
// joins the message being put together; a whole message goes to the
// link's node, and an unsettled delivery is settled with its outcome.
func (c *conn) onTransfer(s *session, t wire.Transfer) error {
	s.nextIncomingID++
	s.windowUsed++
	l := s.links[t.Handle]
	if l == nil || !l.receiving {
		return closeWith(condFramingError, "a transfer on handle %d, which is no link the hub receives on", t.Handle)
	}
	if t.Aborted {
		l.assembling = nil
		return nil
	}
	// The delivery: the one being put together, or one that begins.
	payload := t.Payload // a message of one transfer is read in place
	var id uint32
	var unsettled bool
	if a := l.assembling; a != nil {
		id, unsettled = a.id, a.unsettled
		if len(a.payload)+len(t.Payload) > maxMessageSize {
			return closeWith(condResourceLimit, "a message over %d bytes", maxMessageSize)
		}
		a.payload = append(a.payload, t.Payload...)
		payload = a.payload
	} else {
		if t.DeliveryID == nil {
			return closeWith(condFramingError, "the first transfer of a delivery has no delivery-id")
		}
		if l.credit == 0 {
			return closeWith(condResourceLimit, "a transfer on the link of handle %d in the session of channel %d without credit", t.Handle, s.channel)
		}
		if len(t.Payload) > maxMessageSize {
			return closeWith(condResourceLimit, "a message over %d bytes", maxMessageSize)
		}
		id, unsettled = *t.DeliveryID, t.Settled == nil || !*t.Settled
		if t.More {
			l.assembling = &assembling{id: id, unsettled: unsettled, payload: bytes.Clone(t.Payload)}
		}
	}
	if t.More {
		return nil
	}
	l.assembling = nil
	l.deliveryCount++
	l.credit--
	m, err := wire.DecodeMessage(payload)
	if l.store != nil {
		l.storing++
		st := settlement{l: l, id: id, unsettled: unsettled}
		if err != nil {
			c.settleWith(st, decodeRejected(err))
		} else {
			l.store(m, st)
		}
		if s.windowUsed >= sessionWindow/2 {
			return c.flow(l) // settling renews the link's credit
		}
		return nil
	}
	if l.work != nil {
		l.work.add(queued{m: m, decodeErr: err, id: id, unsettled: unsettled})
		if s.windowUsed >= sessionWindow/2 {
			return c.flow(l) // the worker renews the link's credit
		}
		return nil
	}
	outcome := wire.Accepted
	if err != nil {
		outcome = decodeRejected(err)
	} else {
		outcome = l.onMessage(m)
	}
	if unsettled {
		if err := c.sendSettled(s.channel, id, outcome); err != nil {
			return err
		}
	}
	if l.credit <= linkCredit/2 || s.windowUsed >= sessionWindow/2 {
		l.credit = linkCredit
		return c.flow(l)
	}
	return nil
}

// sendMessage sends m on a link the hub sends on, or queues it until the
// client gives credit.
func (c *conn) sendMessage(l *link, m wire.Message) error {
	l.queue = append(l.queue, m)
	return c.drain(l)
}

// drain sends queued messages while there is credit.
func (c *conn) drain(l *link) error {
	for len(l.queue) > 0 && l.sendCredit > 0 {
		m := l.queue[0]
		l.queue[0] = wire.Message{}
		l.queue = l.queue[1:]
		if _, _, err := c.transfer(l, m); err != nil {
			return err
		}
	}
	if len(l.queue) == 0 {
		l.queue = nil // an idle link keeps no array of sent messages
	}
	return nil
}

// transfer sends one message on l, which must have credit, split into
// transfers that fit the client's max-frame-size. It returns the
// delivery-id, and whether the delivery went settled, as the client's
// snd-settle-mode asks: settled; unsettled, its outcome to come in a
// disposition; mixed, settled unless the link's node awaits the outcome.
func (c *conn) transfer(l *link, m wire.Message) (id uint32, settled bool, err error) {
	payload, err := wire.AppendMessage(nil, m)
	if err != nil {
		return 0, false, err
	}
	id = l.s.nextOutgoingID
	tag := binary.BigEndian.AppendUint32(nil, l.sendCount)
	settled = l.sndSettle == sndSettled || l.sndSettle == sndMixed && !l.awaitOutcome
	// Room for the transfer's fields and the frame header.
	room := int(c.maxOut) - 64
	for first := true; first || len(payload) > 0; first = false {
		chunk := payload[:min(room, len(payload))]
		payload = payload[len(chunk):]
		t := wire.Transfer{Handle: l.handle, More: len(payload) > 0}
		if first {
			format := uint32(0)
			t.DeliveryID, t.DeliveryTag, t.MessageFormat, t.Settled = &id, tag, &format, &settled
		}
		if err := c.send(l.s.channel, wire.CodeTransfer, t.List(), chunk); err != nil {
			return 0, false, err
		}
		l.s.nextOutgoingID++
	}
	l.sendCount++
	l.sendCredit--
	return id, settled, nil
}

// detach answers the client's detach of an accepted link.
func (c *conn) detach(s *session, d wire.Detach) error {
	l := s.links[d.Handle]
	if l == nil {
		return nil // the client's answer to the hub's detach of a refused link
	}
	delete(s.links, d.Handle)
	c.forget(l)
	return c.send(s.channel, wire.CodeDetach, wire.Detach{Handle: d.Handle, Closed: true}.List(), nil)
}

// closeLink detaches a link from the hub's side with an error (a
// partition reader whose store failed, or whose partition a reader of a
// higher epoch took). The client's detach that answers finds no link.
func (c *conn) closeLink(l *link, e *wire.Error) error {
	if l.gone {
		return nil
	}
	delete(l.s.links, l.handle)
	c.forget(l)
	return c.send(l.s.channel, wire.CodeDetach, wire.Detach{Handle: l.handle, Closed: true, Error: e}.List(), nil)
}

// forget marks a link gone: its sender stops, requests no longer answer
// on it. Called with mu held.
func (c *conn) forget(l *link) {
	if l.gone {
		return
	}
	l.gone = true
	if l.stop != nil {
		l.stop()
	}
	releaseDeliveries(l.s, l)
	c.deviceLinkClosed(l)
	for node, ls := range c.replies {
		for i, r := range ls {
			if r == l {
				c.replies[node] = append(ls[:i:i], ls[i+1:]...)
				break
			}
		}
	}
	c.credit.Broadcast()
}

// endLinks forgets every link, when the connection ends.
func (c *conn) endLinks() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.sessions {
		for _, l := range s.links {
			c.forget(l)
		}
	}
}

// reply sends a request-response node's answer on the client's receiver
// that the request's reply-to names, else on the last one it attached.
func (c *conn) reply(node, replyTo string, m wire.Message) {
	ls := c.replies[node]
	if len(ls) == 0 {
		c.srv.log.Debug("amqp answer dropped: no receiver from the node", "node", node)
		return
	}
	l := ls[len(ls)-1]
	for _, r := range ls {
		if replyTo != "" && (r.replyTo == replyTo || r.name == replyTo) {
			l = r
		}
	}
	if err := c.sendMessage(l, m); err != nil {
		c.srv.log.Debug("amqp answer not sent", "node", node, "err", err)
	}
}
