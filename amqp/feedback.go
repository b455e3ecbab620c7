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

// The feedback receiver: a back end attaches a receiver to
// /messages/serviceBound/feedback and gets the C2D feedback records as
// batches, a JSON array a message, in IoT Hub's shape. A batch is locked
// while it is out: accepted, it is completed (gone for good); rejected,
// released or modified, or left unsettled when the link goes, it is
// abandoned and comes again. A client that receives settled (at most
// once) has each batch completed as it is sent.

const (
	feedbackNode        = "messages/serviceBound/feedback"
	feedbackContentType = "application/vnd.microsoft.iothub.feedback.json"
	// feedbackPollMin and feedbackPollMax bound how long a feedback
	// receiver waits before looking again when there was none.
	feedbackPollMin = 100 * time.Millisecond
	feedbackPollMax = time.Second
)

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
// receives settled).
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
	if err != nil {
		return err
	}
	if settled {
		go settle(wire.CodeAccepted)
		return nil
	}
	l.s.unsettled[id] = &tracked{link: l, settle: settle}
	return nil
}

// attachFeedback checks a feedback receiver (a grant with
// ServiceConnect) and arranges for the batches to be sent once the
// attach is answered.
func (c *conn) attachFeedback(l *link) *wire.Error {
	if l.receiving {
		return &wire.Error{Condition: condNotAllowed, Description: "feedback is received from " + feedbackNode + ", not sent to it"}
	}
	if err := c.authorizedService("", sas.ServiceConnect); err != nil {
		return &wire.Error{Condition: condUnauthorized, Description: twinhub.AsError(err).Message}
	}
	l.awaitOutcome = true
	l.start = func() { c.sendFeedback(l) }
	return nil
}

// isFeedback says whether address is the feedback node's.
func isFeedback(address string) bool { return strings.EqualFold(address, feedbackNode) }

// sendFeedback sends the feedback batches on l as they come, until the
// link or connection goes.
func (c *conn) sendFeedback(l *link) {
	ctx, cancel := context.WithCancel(context.Background())
	l.stop = cancel
	h := c.srv.hub
	c.senders.Add(1)
	go func() {
		defer c.senders.Done()
		wait := feedbackPollMin
		for ctx.Err() == nil {
			token, records, err := h.ReceiveFeedback(ctx)
			if err != nil {
				if !errors.Is(err, twinhub.ErrNotFound) && ctx.Err() == nil {
					c.srv.log.Warn("amqp feedback receive failed", "err", err)
				}
				select {
				case <-ctx.Done():
				case <-time.After(wait):
				}
				wait = min(2*wait, feedbackPollMax)
				continue
			}
			wait = feedbackPollMin
			body, err := json.Marshal(records)
			if err != nil {
				h.AbandonFeedback(context.Background(), token)
				continue
			}
			m := wire.Message{
				Properties: wire.Properties{MessageID: token, ContentType: feedbackContentType},
				Data:       body,
			}
			err = c.deliverTracked(l, m, func(state uint64) {
				sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				var err error
				if state == wire.CodeAccepted {
					err = h.CompleteFeedback(sctx, token)
				} else {
					err = h.AbandonFeedback(sctx, token)
				}
				if err != nil {
					c.srv.log.Debug("amqp feedback not settled", "err", err)
				}
			})
			if err != nil {
				h.AbandonFeedback(context.Background(), token)
				return
			}
		}
	}()
}
