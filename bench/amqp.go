package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	goamqp "github.com/Azure/go-amqp"

	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/sas"
)

// The AMQP scenarios: eventhub (devices send telemetry over MQTT while a
// reader a partition takes it from the Event Hubs-compatible endpoint),
// and c2d-amqp (back ends send cloud-to-device messages over the AMQP
// link the service SDKs use, beside c2d-rest, the same over REST).

// amqpSession connects to the hub's AMQP listener as the service SDKs do
// (SASL ANONYMOUS, then the owner policy's token for the whole hub on
// $cbs).
func (e *env) amqpSession(ctx context.Context) (*goamqp.Conn, *goamqp.Session, error) {
	tok, err := sas.NewToken(e.t.Host, e.t.PolicyName, e.t.PolicyKey, time.Now().Add(time.Hour))
	if err != nil {
		return nil, nil, err
	}
	return e.amqpSessionAs(ctx, e.t.Host, tok)
}

// amqpSessionAs connects with no SASL, as the device SDKs do, and puts
// token for audience on $cbs.
func (e *env) amqpSessionAs(ctx context.Context, audience, token string) (*goamqp.Conn, *goamqp.Session, error) {
	if e.t.AMQPAddr == "" {
		return nil, nil, errors.New("the hub's AMQP address is not known (--amqp-addr)")
	}
	conn, err := goamqp.Dial("amqps://"+e.t.AMQPAddr, &goamqp.ConnOptions{
		TLSConfig: e.t.tlsConfig(e.cfg.TLSVersion), HostName: e.t.Host, Timeout: requestTimeout})
	if err != nil {
		return nil, nil, err
	}
	s, err := conn.NewSession(ctx, nil)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if err := putToken(ctx, s, audience, token); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, s, nil
}

// putToken puts token for audience on $cbs.
func putToken(ctx context.Context, s *goamqp.Session, audience, token string) error {
	res, err := request(ctx, s, "$cbs", map[string]any{"operation": "put-token", "type": "servicebus.windows.net:sastoken", "name": audience}, token)
	if err != nil {
		return err
	}
	if code, _ := res.ApplicationProperties["status-code"].(int32); code != 200 {
		return fmt.Errorf("put-token: status %v %v", res.ApplicationProperties["status-code"], res.ApplicationProperties["status-description"])
	}
	return nil
}

// request sends one request to a request-response node and returns the
// answer.
func request(ctx context.Context, s *goamqp.Session, node string, props map[string]any, value any) (*goamqp.Message, error) {
	snd, err := s.NewSender(ctx, node, nil)
	if err != nil {
		return nil, err
	}
	defer snd.Close(ctx)
	reply := node + "-reply"
	rcv, err := s.NewReceiver(ctx, node, &goamqp.ReceiverOptions{TargetAddress: reply})
	if err != nil {
		return nil, err
	}
	defer rcv.Close(ctx)
	m := &goamqp.Message{Properties: &goamqp.MessageProperties{MessageID: "1", ReplyTo: &reply}, ApplicationProperties: props, Value: value}
	if err := snd.Send(ctx, m); err != nil {
		return nil, err
	}
	return rcv.Receive(ctx)
}

// eventhub: devices publish QoS 1 telemetry stamped with its send time
// while one reader a partition takes it from the Event Hubs-compatible
// endpoint; the read rate over the ingest rate says whether readers keep
// up, and the latency is from the device's publish to the reader.
func (e *env) eventhub() error {
	ctx := e.ctx
	conn, s, err := e.amqpSession(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	entity := hub.DefaultEventHubName(e.t.Host)
	res, err := request(ctx, s, "$management", map[string]any{"operation": "READ", "name": entity, "type": "com.microsoft:eventhub"}, "")
	if err != nil {
		return fmt.Errorf("$management READ: %w", err)
	}
	info, _ := res.Value.(map[string]any)
	partitions, _ := info["partition_ids"].([]string)
	if len(partitions) == 0 {
		return fmt.Errorf("$management READ: no partition_ids in %v", res.Value)
	}

	ids := e.ids("eventhub", e.cfg.Clients)
	if err := e.createDevices(ids, nil); err != nil {
		return err
	}
	devs, err := e.connectDevices(ids, e.deviceOptions())
	if err != nil {
		return err
	}
	defer closeAll(devs)

	// One reader a partition, from what comes next, on the one
	// connection (as an Event Hubs processor with one client).
	read := newRecorder()
	var readers []*goamqp.Receiver
	for _, p := range partitions {
		r, err := s.NewReceiver(ctx, entity+"/ConsumerGroups/$Default/Partitions/"+p, &goamqp.ReceiverOptions{
			Credit: 1000, Filters: []goamqp.LinkFilter{goamqp.NewSelectorFilter("amqp.annotation.x-opt-offset > '@latest'")}})
		if err != nil {
			return fmt.Errorf("reader of partition %s: %w", p, err)
		}
		readers = append(readers, r)
	}
	readCtx, stopReading := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, r := range readers {
		wg.Go(func() {
			for {
				m, err := r.Receive(readCtx)
				if err != nil {
					return
				}
				r.AcceptMessage(readCtx, m)
				var body struct {
					T int64 `json:"t"`
				}
				if err := json.Unmarshal(m.GetData(), &body); err != nil || body.T == 0 {
					read.doneLatency(0, fmt.Errorf("an event that no device of the run sent: %.60q", m.GetData()))
					continue
				}
				read.doneLatency(time.Since(time.Unix(0, body.T)), nil)
			}
		})
	}
	pad := padding(e.cfg.PayloadBytes - 40)
	ingest := newRecorder()
	start := time.Now()
	ing := e.measure("eventhub/ingest", "messages", len(devs), ingest, func() {
		e.forDuration(len(devs), e.cfg.Duration, func(w int) {
			t0 := time.Now()
			body := []byte(`{"t":` + strconv.FormatInt(t0.UnixNano(), 10) + `,"pad":"` + pad + `"}`)
			ingest.done(t0, devs[w].sendTelemetry("devices/"+devs[w].id+"/messages/events/", body, requestTimeout))
		})
	})
	window := time.Since(start)
	readInWindow := read.ops.Load()
	// Then let the readers take what is left, for the lag at the end.
	drainStart := time.Now()
	for read.ops.Load()+read.errs.Load() < ingest.ops.Load() && time.Since(drainStart) < 10*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	drain := time.Since(drainStart)
	stopReading()
	wg.Wait()
	rd := read.result("eventhub/read", "twinhub", "events", window, len(readers))
	rd.Ops, rd.Rate = readInWindow, float64(readInWindow)/window.Seconds()
	rd.extra("events_read_in_all", float64(read.ops.Load()))
	rd.extra("lag_at_end_events", float64(ingest.ops.Load()-readInWindow))
	rd.extra("drain_ms", float64(drain.Milliseconds()))
	rd.note("one reader a partition (%d) on one AMQP connection, credit 1000, from @latest; latency from the device's publish to the reader; rate counts the events read while devices sent, then the lag was read in %s", len(readers), drain.Round(time.Millisecond))
	e.add(rd)
	ing.note("devices publish QoS 1 telemetry over MQTT, each waiting for its PUBACK, while the readers read")
	return nil
}

// c2dDevicesPerWorker is how many devices a C2D worker sends to: each
// takes 50 messages (IoT Hub's queue limit), so a worker has room for
// 3,000, more than any run here sends in its time.
const c2dDevicesPerWorker = 60

// c2dLoad sends cloud-to-device messages through send, one outstanding
// per worker, each worker to devices of its own that are not connected:
// what is measured is the send path into the devices' JetStream queues.
// A worker stops when the duration ends or its devices' queues are full.
func (e *env) c2dLoad(name string, workers int, send func(w int, device string, body []byte) error) error {
	ids := e.ids(name, workers*c2dDevicesPerWorker)
	if err := e.createDevices(ids, nil); err != nil {
		return err
	}
	body := []byte(fmt.Sprintf(`{"cmd":"set","pad":%q}`, padding(e.cfg.PayloadBytes-20)))
	rec := newRecorder()
	res := e.measure(name, "messages", workers, rec, func() {
		ctx, cancel := context.WithTimeout(e.ctx, e.cfg.Duration)
		defer cancel()
		var wg sync.WaitGroup
		for w := range workers {
			pool := ids[w*c2dDevicesPerWorker : (w+1)*c2dDevicesPerWorker]
			wg.Go(func() {
				for k := 0; k < len(pool)*c2dQueueLimit && ctx.Err() == nil; k++ {
					t0 := time.Now()
					rec.done(t0, send(w, pool[k%len(pool)], body))
				}
			})
		}
		wg.Wait()
	})
	res.extra("devices", float64(len(ids)))
	return nil
}

// c2dQueueLimit is IoT Hub's limit of pending messages a device.
const c2dQueueLimit = 50

// c2dAMQP: back ends send C2D messages on /messages/devicebound, each
// send waiting for its disposition (stored in the device's queue).
func (e *env) c2dAMQP() error {
	conn, s, err := e.amqpSession(e.ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	workers := e.cfg.Clients
	senders := make([]*goamqp.Sender, workers)
	for i := range senders {
		if senders[i], err = s.NewSender(e.ctx, "/messages/devicebound", nil); err != nil {
			return err
		}
	}
	if err := e.c2dLoad("c2d-amqp", workers, func(w int, device string, body []byte) error {
		to := "/devices/" + device + "/messages/devicebound"
		return senders[w].Send(e.ctx, &goamqp.Message{Properties: &goamqp.MessageProperties{To: &to}, Data: [][]byte{body}})
	}); err != nil {
		return err
	}
	if r := find(e.report.Results, "c2d-amqp"); r != nil {
		r.note("%d sender links on one AMQP connection, each send waiting for its disposition (the message is in the device's JetStream queue)", workers)
	}
	return nil
}

// c2dREST: the same load through POST /twinhub/c2d/{id}.
func (e *env) c2dREST() error {
	if err := e.c2dLoad("c2d-rest", e.cfg.Clients, func(_ int, device string, body []byte) error {
		_, _, err := e.svc.do(e.ctx, "POST", "/twinhub/c2d/"+device, nil, body)
		return err
	}); err != nil {
		return err
	}
	if r := find(e.report.Results, "c2d-rest"); r != nil {
		r.note("POST /twinhub/c2d/{id} over keep-alive HTTPS, one outstanding per worker")
	}
	return nil
}

// telemetryAMQP: devices send telemetry over AMQP, a connection each (as
// the device SDKs connect: no SASL, the device's token on $cbs), each
// message waiting for its disposition (accepted once stored), beside
// the telemetry scenario's MQTT QoS 1.
func (e *env) telemetryAMQP() error {
	ids := e.ids("telemetry-amqp", e.cfg.Clients)
	if err := e.createDevices(ids, nil); err != nil {
		return err
	}
	senders := make([]*goamqp.Sender, len(ids))
	for i, id := range ids {
		audience := e.t.Host + "/devices/" + id
		tok, err := sas.NewToken(audience, "", e.key, time.Now().Add(time.Hour))
		if err != nil {
			return err
		}
		conn, s, err := e.amqpSessionAs(e.ctx, audience, tok)
		if err != nil {
			return fmt.Errorf("device %s: %w", id, err)
		}
		defer conn.Close()
		if senders[i], err = s.NewSender(e.ctx, "/devices/"+id+"/messages/events", nil); err != nil {
			return fmt.Errorf("device %s: %w", id, err)
		}
	}
	body := []byte(fmt.Sprintf(`{"temp":21.5,"pad":%q}`, padding(e.cfg.PayloadBytes-20)))
	ct, ce := "application/json", "utf-8"
	rec := newRecorder()
	res := e.measure("telemetry-amqp", "messages", len(senders), rec, func() {
		e.forDuration(len(senders), e.cfg.Duration, func(w int) {
			t0 := time.Now()
			rec.done(t0, senders[w].Send(e.ctx, &goamqp.Message{
				Properties:            &goamqp.MessageProperties{ContentType: &ct, ContentEncoding: &ce},
				ApplicationProperties: map[string]any{"bench": "1"},
				Data:                  [][]byte{body},
			}))
		})
	})
	res.note("devices send over AMQP, a TLS connection each, each message waiting for its disposition (accepted once in JetStream)")
	res.extra("payload_bytes", float64(e.cfg.PayloadBytes))
	return nil
}

// devicesPerAMQPConnection is how many device sessions sessions-amqp puts
// on one connection: under the hub's channel-max (4999), one channel left
// for the connection's $cbs session.
const devicesPerAMQPConnection = 4000

// sessionsAMQP: devices multiplexed over a few AMQP connections, as the C
// and C# SDKs multiplex them to save sockets: each device puts its own
// token on its connection's one $cbs link, begins a session of its own and
// opens the links of a device that uses telemetry, C2D, methods and its
// desired properties (openDeviceLinks), then stays idle. The
// hub's memory before and after gives the memory per idle device session.
func (e *env) sessionsAMQP() error {
	ids := e.ids("sessions-amqp", e.cfg.Devices)
	if err := e.createDevices(ids, nil); err != nil {
		return err
	}
	before := e.usageNow()
	groups := (len(ids) + devicesPerAMQPConnection - 1) / devicesPerAMQPConnection
	conns := make([]*goamqp.Conn, groups)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	rec := newRecorder()
	var setupErr error
	var mu sync.Mutex
	res := e.measure("sessions-amqp", "sessions", groups, rec, func() {
		var wg sync.WaitGroup
		for g := range groups {
			group := ids[g*devicesPerAMQPConnection : min(len(ids), (g+1)*devicesPerAMQPConnection)]
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := e.multiplexDevices(group, rec)
				mu.Lock()
				defer mu.Unlock()
				conns[g] = conn
				if err != nil && setupErr == nil {
					setupErr = err
				}
			}()
		}
		wg.Wait()
	})
	if setupErr != nil {
		return setupErr
	}
	res.note("%d devices a connection, a session each with its own $cbs token and the six links of a device that uses telemetry, C2D, methods and desired properties", devicesPerAMQPConnection)
	e.weighIdle(res, before, e.cfg.Duration, "sessions", "session", "go-amqp's side of each session")
	return nil
}

// multiplexDevices opens one connection for ids: their tokens put on one
// $cbs link (pipelined, answered in order), then a session a device with
// its two links, each recorded in rec. An error that ends the connection
// is returned; one device's refusal is only recorded.
func (e *env) multiplexDevices(ids []string, rec *recorder) (*goamqp.Conn, error) {
	ctx := e.ctx
	conn, err := goamqp.Dial("amqps://"+e.t.AMQPAddr, &goamqp.ConnOptions{
		TLSConfig: e.t.tlsConfig(e.cfg.TLSVersion), HostName: e.t.Host, Timeout: requestTimeout})
	if err != nil {
		return nil, err
	}
	cbs, err := conn.NewSession(ctx, nil)
	if err != nil {
		return conn, err
	}
	snd, err := cbs.NewSender(ctx, "$cbs", nil)
	if err != nil {
		return conn, err
	}
	reply := "cbs-reply"
	rcv, err := cbs.NewReceiver(ctx, "$cbs", &goamqp.ReceiverOptions{TargetAddress: reply, Credit: 100})
	if err != nil {
		return conn, err
	}
	sent := make(chan error, 1)
	go func() {
		for i, id := range ids {
			audience := e.t.Host + "/devices/" + id
			tok, err := sas.NewToken(audience, "", e.key, time.Now().Add(time.Hour))
			if err == nil {
				err = snd.Send(ctx, &goamqp.Message{
					Properties:            &goamqp.MessageProperties{MessageID: uint64(i), ReplyTo: &reply},
					ApplicationProperties: map[string]any{"operation": "put-token", "type": "servicebus.windows.net:sastoken", "name": audience},
					Value:                 tok,
				})
			}
			if err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	granted := make([]bool, len(ids))
	for range ids {
		m, err := rcv.Receive(ctx)
		if err != nil {
			return conn, fmt.Errorf("put-token answers: %w", err)
		}
		rcv.AcceptMessage(ctx, m)
		i, _ := m.Properties.CorrelationID.(uint64)
		if code, _ := m.ApplicationProperties["status-code"].(int32); code == 200 && int(i) < len(ids) {
			granted[i] = true
		}
	}
	if err := <-sent; err != nil {
		return conn, err
	}
	for i, id := range ids {
		start := time.Now()
		if !granted[i] {
			rec.done(start, fmt.Errorf("put-token of %s refused", id))
			continue
		}
		s, err := conn.NewSession(ctx, nil)
		if err == nil {
			err = openDeviceLinks(ctx, s, id)
		}
		rec.done(start, err)
	}
	return conn, nil
}

// openDeviceLinks opens on s the links azure-iot-device-amqp opens for a
// device that sends telemetry, receives C2D messages, serves direct
// methods and follows its desired properties: a telemetry sender, a C2D
// receiver, the methods pair, and the twin pair with the desired
// notifications PUT.
func openDeviceLinks(ctx context.Context, s *goamqp.Session, id string) error {
	base := "/devices/" + id
	if _, err := s.NewSender(ctx, base+"/messages/events", nil); err != nil {
		return err
	}
	if _, err := s.NewReceiver(ctx, base+"/messages/devicebound", nil); err != nil {
		return err
	}
	methods := map[string]any{"com.microsoft:channel-correlation-id": "methods:" + id}
	if _, err := s.NewReceiver(ctx, base+"/methods/devicebound", &goamqp.ReceiverOptions{Properties: methods}); err != nil {
		return err
	}
	if _, err := s.NewSender(ctx, base+"/methods/devicebound", &goamqp.SenderOptions{Properties: methods}); err != nil {
		return err
	}
	twin := map[string]any{"com.microsoft:channel-correlation-id": "twin:" + id}
	snd, err := s.NewSender(ctx, base+"/twin", &goamqp.SenderOptions{Properties: twin})
	if err != nil {
		return err
	}
	rcv, err := s.NewReceiver(ctx, base+"/twin", &goamqp.ReceiverOptions{Properties: twin})
	if err != nil {
		return err
	}
	err = snd.Send(ctx, &goamqp.Message{
		Annotations: goamqp.Annotations{"operation": "PUT", "resource": "/notifications/twin/properties/desired"},
		Properties:  &goamqp.MessageProperties{CorrelationID: "put"},
		Data:        [][]byte{nil},
	})
	if err != nil {
		return err
	}
	res, err := rcv.Receive(ctx)
	if err != nil {
		return err
	}
	rcv.AcceptMessage(ctx, res)
	if status, _ := res.Annotations["status"].(int32); status != 200 {
		return fmt.Errorf("%s: PUT of the desired notifications: status %d", id, status)
	}
	return nil
}
