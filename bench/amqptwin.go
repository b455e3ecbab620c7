package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	goamqp "github.com/Azure/go-amqp"

	"github.com/twinhub/twinhub/sas"
)

// amqpTwinDevice is a device on its twin channel over AMQP, as
// azure-iot-device-amqp uses it: a connection of its own, its token on
// $cbs, a sender and a receiver on /devices/<id>/twin paired by a channel
// correlation id. Answers are matched to requests by correlation-id;
// messages without one are desired changes.
type amqpTwinDevice struct {
	conn *goamqp.Conn
	snd  *goamqp.Sender

	mu      sync.Mutex
	waiting map[string]chan *goamqp.Message
	next    atomic.Int64
}

// connectAMQPTwin connects device id's twin channel; onDesired, when set,
// gets each desired change (after a PUT of the notification resource).
func (e *env) connectAMQPTwin(id string, onDesired func(payload []byte, at time.Time)) (*amqpTwinDevice, error) {
	ctx, cancel := context.WithTimeout(e.ctx, requestTimeout)
	defer cancel()
	audience := e.t.Host + "/devices/" + id
	tok, err := sas.NewToken(audience, "", e.key, time.Now().Add(time.Hour))
	if err != nil {
		return nil, err
	}
	conn, s, err := e.amqpSessionAs(ctx, audience, tok)
	if err != nil {
		return nil, err
	}
	d := &amqpTwinDevice{conn: conn, waiting: map[string]chan *goamqp.Message{}}
	props := map[string]any{"com.microsoft:channel-correlation-id": "twin:" + id, "com.microsoft:api-version": "2021-04-12"}
	address := "/devices/" + id + "/twin"
	if d.snd, err = s.NewSender(ctx, address, &goamqp.SenderOptions{Properties: props}); err != nil {
		conn.Close()
		return nil, err
	}
	rcv, err := s.NewReceiver(ctx, address, &goamqp.ReceiverOptions{Properties: props, Credit: 100})
	if err != nil {
		conn.Close()
		return nil, err
	}
	go func() {
		for {
			m, err := rcv.Receive(context.Background())
			if err != nil {
				return // the connection closed
			}
			at := time.Now()
			rcv.AcceptMessage(context.Background(), m)
			var cid string
			if m.Properties != nil {
				cid, _ = m.Properties.CorrelationID.(string)
			}
			if cid == "" {
				if onDesired != nil {
					onDesired(m.GetData(), at)
				}
				continue
			}
			d.mu.Lock()
			ch := d.waiting[cid]
			delete(d.waiting, cid)
			d.mu.Unlock()
			if ch != nil {
				ch <- m
			}
		}
	}()
	if onDesired != nil {
		if err := d.request("PUT", "/notifications/twin/properties/desired", nil, requestTimeout); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return d, nil
}

// request sends one twin request and waits for its answer, an error
// unless its status is 2xx.
func (d *amqpTwinDevice) request(op, resource string, body []byte, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cid := strconv.FormatInt(d.next.Add(1), 10)
	ch := make(chan *goamqp.Message, 1)
	d.mu.Lock()
	d.waiting[cid] = ch
	d.mu.Unlock()
	forget := func() {
		d.mu.Lock()
		delete(d.waiting, cid)
		d.mu.Unlock()
	}
	m := &goamqp.Message{
		Annotations: goamqp.Annotations{"operation": op, "resource": resource},
		Properties:  &goamqp.MessageProperties{CorrelationID: cid},
		Data:        [][]byte{body},
	}
	if err := d.snd.Send(ctx, m); err != nil {
		forget()
		return err
	}
	select {
	case res := <-ch:
		if status, _ := res.Annotations["status"].(int32); status < 200 || status > 299 {
			return fmt.Errorf("%s %s: status %d: %s", op, resource, status, res.GetData())
		}
		return nil
	case <-ctx.Done():
		forget()
		return fmt.Errorf("%s %s: no answer within %s", op, resource, timeout)
	}
}

func (d *amqpTwinDevice) patchReported(body []byte, timeout time.Duration) error {
	return d.request("PATCH", "/properties/reported", body, timeout)
}

func (d *amqpTwinDevice) close() { d.conn.Close() }

// connectAMQPTwins connects ids' twin channels, ConnectConcurrency at a
// time (not measured); any failure fails them all.
func (e *env) connectAMQPTwins(ids []string, onDesired func(payload []byte, at time.Time)) ([]twinDevice, error) {
	devs := make([]twinDevice, len(ids))
	var mu sync.Mutex
	var first error
	forEach(len(ids), e.cfg.ConnectConcurrency, func(i int) {
		d, err := e.connectAMQPTwin(ids[i], onDesired)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if first == nil {
				first = fmt.Errorf("device %s: %w", ids[i], err)
			}
			return
		}
		devs[i] = d
	})
	if first != nil {
		closeTwinDevices(devs)
		return nil, first
	}
	return devs, nil
}
