package amqp

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/amqp/wire"
	"github.com/twinhub/twinhub/sas"
)

// The receivers of /messages/serviceBound: a back end attaches a receiver
// to /messages/serviceBound/feedback and gets the C2D feedback records as
// batches, a JSON array a message, or to
// /messages/serviceBound/filenotifications and gets the file-upload
// notifications, a JSON object a message, in IoT Hub's shapes. What is
// out is locked: accepted, it is completed (gone for good); rejected,
// released or modified, or left unsettled when the link goes, it is
// abandoned and comes again. A client that receives settled (at most
// once) has each completed as it is sent.

const (
	feedbackNode        = "messages/serviceBound/feedback"
	feedbackContentType = "application/vnd.microsoft.iothub.feedback.json"
	fileNode            = "messages/serviceBound/filenotifications"
	fileContentType     = "application/vnd.microsoft.iothub.filenotification.json"
	// lockedPollMin and lockedPollMax bound how long a receiver waits
	// before looking again when there was nothing.
	lockedPollMin = 100 * time.Millisecond
	lockedPollMax = time.Second
)

// lockedSource is what a serviceBound node hands out under locks: the
// next item as a message body with its lock token, and how to settle it.
type lockedSource struct {
	contentType       string
	receive           func(ctx context.Context) (token string, body []byte, err error)
	complete, abandon func(ctx context.Context, token string) error
}

// serviceBoundSource is the source of a serviceBound node's address, if
// it is one.
func (c *conn) serviceBoundSource(address string) (lockedSource, bool) {
	h := c.srv.hub
	switch {
	case strings.EqualFold(address, feedbackNode):
		return lockedSource{
			contentType: feedbackContentType,
			receive: func(ctx context.Context) (string, []byte, error) {
				token, records, err := h.ReceiveFeedback(ctx)
				if err != nil {
					return "", nil, err
				}
				body, err := json.Marshal(records)
				return token, body, err
			},
			complete: h.CompleteFeedback, abandon: h.AbandonFeedback,
		}, true
	case strings.EqualFold(address, fileNode):
		return lockedSource{
			contentType: fileContentType,
			receive: func(ctx context.Context) (string, []byte, error) {
				token, n, err := h.ReceiveFileNotification(ctx)
				if err != nil {
					return "", nil, err
				}
				body, err := json.Marshal(n)
				return token, body, err
			},
			complete: h.CompleteFileNotification, abandon: h.AbandonFileNotification,
		}, true
	}
	return lockedSource{}, false
}

// tracked is a delivery the hub sent unsettled: settle runs once with
// the outcome the client gives it (a state's code, or released when the
// link or session goes first). It runs on a goroutine of its own.
type tracked struct {
	link   *link
	settle func(state uint64)
}

// onDisposition takes the client's outcome of the hub's deliveries.
func (c *conn) onDisposition(s *session, d wire.Disposition) {
	if d.Role != wire.RoleReceiver {
		return // the client settling its own deliveries: nothing to do
	}
	last := d.First
	if d.Last != nil {
		last = *d.Last
	}
	for id := d.First; ; id++ {
		if t := s.unsettled[id]; t != nil && (d.Settled || d.State != nil) {
			delete(s.unsettled, id)
			go t.settle(wire.StateCode(d.State))
		}
		if id == last || id-d.First > sessionWindow {
			break
		}
	}
}

// releaseDeliveries settles as released the deliveries of link l (all of
// the session's when l is nil) that await an outcome.
func releaseDeliveries(s *session, l *link) {
	for id, t := range s.unsettled {
		if l == nil || t.link == l {
			delete(s.unsettled, id)
			go t.settle(wire.CodeReleased)
		}
	}
}

// deliverTracked sends m on l once the client has credit for it; the
// delivery's outcome goes to settle (accepted at once for a client that
// receives settled). With settle nil the outcome is not awaited (deliver).
func (c *conn) deliverTracked(l *link, m wire.Message, settle func(state uint64)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for !l.gone && l.sendCredit == 0 {
		c.credit.Wait()
	}
	if l.gone {
		return errLinkGone
	}
	id, settled, err := c.transfer(l, m)
	if err != nil || settle == nil {
		return err
	}
	if settled {
		go settle(wire.CodeAccepted)
		return nil
	}
	l.s.unsettled[id] = &tracked{link: l, settle: settle}
	return nil
}

// attachServiceBound checks a serviceBound receiver (a grant with
// ServiceConnect) and arranges for its items to be sent once the attach
// is answered.
func (c *conn) attachServiceBound(l *link, address string, src lockedSource) *wire.Error {
	if l.receiving {
		return &wire.Error{Condition: condNotAllowed, Description: "/" + address + " is received from, not sent to"}
	}
	if err := c.authorizedService("", sas.ServiceConnect); err != nil {
		return &wire.Error{Condition: condUnauthorized, Description: twinhub.AsError(err).Message}
	}
	l.awaitOutcome = true
	l.start = func() { c.sendLocked(l, address, src) }
	return nil
}

// sendLocked sends a serviceBound node's items on l as they come, until
// the link or connection goes.
func (c *conn) sendLocked(l *link, address string, src lockedSource) {
	ctx, cancel := context.WithCancel(context.Background())
	l.stop = cancel
	c.senders.Add(1)
	go func() {
		defer c.senders.Done()
		wait := lockedPollMin
		for ctx.Err() == nil {
			token, body, err := src.receive(ctx)
			if err != nil {
				if !errors.Is(err, twinhub.ErrNotFound) && ctx.Err() == nil {
					c.srv.log.Warn("amqp serviceBound receive failed", "node", address, "err", err)
				}
				select {
				case <-ctx.Done():
				case <-time.After(wait):
				}
				wait = min(2*wait, lockedPollMax)
				continue
			}
			wait = lockedPollMin
			m := wire.Message{
				Properties: wire.Properties{MessageID: token, ContentType: wire.Symbol(src.contentType)},
				Data:       body,
			}
			err = c.deliverTracked(l, m, func(state uint64) {
				sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				settle := src.abandon
				if state == wire.CodeAccepted {
					settle = src.complete
				}
				if err := settle(sctx, token); err != nil {
					c.srv.log.Debug("amqp serviceBound item not settled", "node", address, "err", err)
				}
			})
			if err != nil {
				src.abandon(context.Background(), token)
				return
			}
		}
	}()
}
