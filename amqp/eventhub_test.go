package amqp_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	goamqp "github.com/Azure/go-amqp"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/amqp"
	"github.com/twinhub/twinhub/internal/hubtest"
	"github.com/twinhub/twinhub/jetstream"
	"github.com/twinhub/twinhub/sas"
)

// eventHubSession is a session of a reader of the Event Hubs-compatible
// entity, with a token of policy put on $cbs for audience (the way the
// Event Hubs SDKs authenticate: no SASL, then CBS).
func (e *endpoint) eventHubSession(t *testing.T, policy, audience string) *goamqp.Session {
	t.Helper()
	s := e.session(t, goamqp.SASLTypeAnonymous())
	p := e.hub.Policy(policy)
	tok, err := sas.NewToken(audience, p.Name, p.PrimaryKey, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if code, desc := putToken(t, s, "servicebus.windows.net:sastoken", audience, tok, "eh-"+policy); code != 200 {
		t.Fatalf("put-token for %s: %d %s", audience, code, desc)
	}
	return s
}

// management sends a READ request to $management and returns the
// status code and the body of the answer.
func management(t *testing.T, s *goamqp.Session, props map[string]any) (int32, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	snd, err := s.NewSender(ctx, "$management", nil)
	if err != nil {
		t.Fatalf("sender to $management: %v", err)
	}
	defer snd.Close(ctx)
	rcv, err := s.NewReceiver(ctx, "$management", &goamqp.ReceiverOptions{TargetAddress: "reply-1"})
	if err != nil {
		t.Fatalf("receiver from $management: %v", err)
	}
	defer rcv.Close(ctx)
	reply := "reply-1"
	req := &goamqp.Message{
		Properties:            &goamqp.MessageProperties{MessageID: uint64(7), ReplyTo: &reply},
		ApplicationProperties: props,
		Value:                 "",
	}
	if err := snd.Send(ctx, req); err != nil {
		t.Fatalf("sending to $management: %v", err)
	}
	res, err := rcv.Receive(ctx)
	if err != nil {
		t.Fatalf("receiving the answer: %v", err)
	}
	if res.Properties == nil || res.Properties.CorrelationID != uint64(7) {
		t.Errorf("answer correlates with %#v", res.Properties)
	}
	code, _ := res.ApplicationProperties["status-code"].(int32)
	body, _ := res.Value.(map[string]any)
	return code, body
}

// TestEventHubEndpoint: events that devices sent are read from their
// partition of the Event Hubs-compatible entity, with IoT Hub's
// annotations and the device's properties, from the position the
// reader's filter asks for; $management describes the entity and its
// partitions; messages/events is redirected to the entity; a reader
// without ServiceConnect, of an unknown partition or entity, is refused.
func TestEventHubEndpoint(t *testing.T) {
	e := newEndpointWith(t, amqp.Options{}, hubtest.WithMessaging())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	host, entity := e.hub.Host(), e.hub.EventHubName()
	const partitions = jetstream.DefaultTelemetryPartitions
	dev := "thermo-1"
	p := jetstream.TelemetryPartition(dev, partitions)
	for i := range 5 {
		ev := &twinhub.Event{Identity: twinhub.DeviceKey(dev), AuthMethod: "sas", MessageID: "m" + strconv.Itoa(i),
			CorrelationID: "c", ContentType: "application/json", ContentEncoding: "utf-8",
			Properties: []twinhub.Property{{Key: "temperatureAlert", Value: "true"}},
			Body:       []byte(`{"i":` + strconv.Itoa(i) + `}`)}
		if err := e.hub.SendEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
		// Each in a millisecond of its own, for the enqueued-time
		// filter (events carry milliseconds): no timing is asserted.
		time.Sleep(2 * time.Millisecond)
	}
	base := "sb://" + host + "/" + entity
	address := entity + "/ConsumerGroups/$Default/Partitions/" + strconv.Itoa(p)

	t.Run("management", func(t *testing.T) {
		s := e.eventHubSession(t, "service", base+"/$management")
		code, body := management(t, s, map[string]any{"operation": "READ", "name": entity, "type": "com.microsoft:eventhub"})
		ids, _ := body["partition_ids"].([]string)
		if code != 200 || body["name"] != entity || body["partition_count"] != int32(partitions) || len(ids) != partitions || ids[3] != "3" {
			t.Errorf("READ eventhub: %d %#v", code, body)
		}
		if c, _ := body["created_at"].(time.Time); c.IsZero() {
			t.Errorf("created_at %#v", body["created_at"])
		}
		code, body = management(t, s, map[string]any{"operation": "READ", "name": entity, "type": "com.microsoft:partition", "partition": strconv.Itoa(p)})
		if code != 200 || body["partition"] != strconv.Itoa(p) || body["last_enqueued_sequence_number"] != int64(5) ||
			body["last_enqueued_offset"] != "5" || body["begin_sequence_number"] != int64(1) || body["is_partition_empty"] != false {
			t.Errorf("READ partition %d: %d %#v", p, code, body)
		}
		other := (p + 1) % partitions
		if code, body = management(t, s, map[string]any{"operation": "READ", "name": entity, "type": "com.microsoft:partition", "partition": strconv.Itoa(other)}); code != 200 || body["is_partition_empty"] != true || body["last_enqueued_sequence_number"] != int64(-1) {
			t.Errorf("READ empty partition %d: %d %#v", other, code, body)
		}
		if code, _ = management(t, s, map[string]any{"operation": "READ", "name": entity, "type": "com.microsoft:partition", "partition": "99"}); code != 404 {
			t.Errorf("READ partition 99: %d", code)
		}
		if code, _ = management(t, s, map[string]any{"operation": "READ", "name": "other", "type": "com.microsoft:eventhub"}); code != 404 {
			t.Errorf("READ of another entity: %d", code)
		}
		r := e.eventHubSession(t, "registryRead", base)
		if code, _ = management(t, r, map[string]any{"operation": "READ", "name": entity, "type": "com.microsoft:eventhub"}); code != 401 {
			t.Errorf("READ with registryRead's token: %d", code)
		}
	})

	t.Run("read", func(t *testing.T) {
		s := e.eventHubSession(t, "service", base+"/ConsumerGroups/$Default/Partitions/"+strconv.Itoa(p))
		receive := func(filter string, n int) []*goamqp.Message {
			t.Helper()
			rcv, err := s.NewReceiver(ctx, address, &goamqp.ReceiverOptions{Credit: 2,
				Filters: []goamqp.LinkFilter{goamqp.NewSelectorFilter(filter)}})
			if err != nil {
				t.Fatalf("receiver with %s: %v", filter, err)
			}
			defer rcv.Close(ctx)
			var got []*goamqp.Message
			for range n {
				m, err := rcv.Receive(ctx)
				if err != nil {
					t.Fatalf("receive with %s: %v", filter, err)
				}
				rcv.AcceptMessage(ctx, m)
				got = append(got, m)
			}
			return got
		}
		all := receive("amqp.annotation.x-opt-offset > '-1'", 5)
		m := all[2]
		ann := m.Annotations
		if string(m.GetData()) != `{"i":2}` || ann["x-opt-sequence-number"] != int64(3) || ann["x-opt-offset"] != "3" ||
			ann["iothub-connection-device-id"] != dev || ann["iothub-message-source"] != "Telemetry" ||
			!strings.Contains(ann["iothub-connection-auth-method"].(string), `"type":"sas"`) {
			t.Errorf("third event: %s %#v", m.GetData(), ann)
		}
		if at, _ := ann["x-opt-enqueued-time"].(time.Time); at.IsZero() || time.Since(at) > time.Minute {
			t.Errorf("x-opt-enqueued-time %#v", ann["x-opt-enqueued-time"])
		}
		if m.Properties == nil || m.Properties.MessageID != "m2" || m.Properties.CorrelationID != "c" ||
			*m.Properties.ContentType != "application/json" || *m.Properties.ContentEncoding != "utf-8" {
			t.Errorf("properties %#v", m.Properties)
		}
		if m.ApplicationProperties["temperatureAlert"] != "true" {
			t.Errorf("application properties %#v", m.ApplicationProperties)
		}
		if got := receive("amqp.annotation.x-opt-offset > '3'", 2); string(got[0].GetData()) != `{"i":3}` {
			t.Errorf("after offset 3: %s", got[0].GetData())
		}
		if got := receive("amqp.annotation.x-opt-sequence-number >= 2", 1); got[0].Annotations["x-opt-sequence-number"] != int64(2) {
			t.Errorf("from sequence number 2: %#v", got[0].Annotations)
		}
		at := all[1].Annotations["x-opt-enqueued-time"].(time.Time)
		if got := receive("amqp.annotation.x-opt-enqueued-time > '"+strconv.FormatInt(at.UnixMilli(), 10)+"'", 1); got[0].Annotations["x-opt-sequence-number"].(int64) < 3 {
			t.Errorf("after the second's enqueued time: %#v", got[0].Annotations)
		}

		// @latest: what is sent once the attach is answered, at once.
		rcv, err := s.NewReceiver(ctx, address, &goamqp.ReceiverOptions{Credit: 10,
			Filters: []goamqp.LinkFilter{goamqp.NewSelectorFilter("amqp.annotation.x-opt-offset > '@latest'")}})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.hub.SendEvent(ctx, &twinhub.Event{Identity: twinhub.DeviceKey(dev), Body: []byte("new")}); err != nil {
			t.Fatal(err)
		}
		got, err := rcv.Receive(ctx)
		if err != nil || string(got.GetData()) != "new" {
			t.Errorf("@latest: %v %v", got, err)
		}
	})

	t.Run("redirect", func(t *testing.T) {
		s := e.eventHubSession(t, "service", "sb://"+host)
		_, err := s.NewReceiver(ctx, "messages/events/ConsumerGroups/$Default/Partitions/0", nil)
		wantCondition(t, "receiver on messages/events", err, "amqp:link:redirect")
		var ae *goamqp.Error
		if de, ok := err.(*goamqp.DetachError); ok && de.RemoteErr != nil {
			ae = de.RemoteErr
		} else if x, ok := err.(*goamqp.Error); ok {
			ae = x
		}
		_, port, _ := strings.Cut(e.addr, ":")
		want := "amqps://" + host + ":" + port + "/" + entity + "/ConsumerGroups/$Default/Partitions/0"
		if ae == nil || ae.Info["address"] != want || ae.Info["hostname"] != host {
			t.Errorf("redirect info %#v, want address %s", ae, want)
		}
	})

	t.Run("epoch", func(t *testing.T) {
		s := e.eventHubSession(t, "service", base)
		other := e.eventHubSession(t, "service", base) // another connection
		reader := func(s *goamqp.Session, epoch any) (*goamqp.Receiver, error) {
			o := &goamqp.ReceiverOptions{Credit: 10, Filters: []goamqp.LinkFilter{goamqp.NewSelectorFilter("amqp.annotation.x-opt-offset > '@latest'")}}
			if epoch != nil {
				o.Properties = map[string]any{"com.microsoft:epoch": epoch}
			}
			return s.NewReceiver(ctx, address, o)
		}
		first, err := reader(s, int64(1))
		if err != nil {
			t.Fatal(err)
		}
		second, err := reader(other, int64(2))
		if err != nil {
			t.Fatalf("reader of a higher epoch: %v", err)
		}
		_, err = first.Receive(ctx)
		wantCondition(t, "the reader of epoch 1 after one of epoch 2", err, "amqp:link:stolen")
		_, err = reader(s, int64(1))
		wantCondition(t, "a new reader of a lower epoch", err, "amqp:link:stolen")
		_, err = reader(s, nil)
		wantCondition(t, "a new reader without an epoch", err, "amqp:link:stolen")
		// Another consumer group is not held.
		if _, err := e.hub.CreateConsumerGroup(ctx, "other"); err != nil {
			t.Fatal(err)
		}
		if r, err := s.NewReceiver(ctx, entity+"/ConsumerGroups/OTHER/Partitions/"+strconv.Itoa(p), nil); err != nil {
			t.Errorf("reader of another group: %v", err)
		} else {
			r.Close(ctx)
		}
		if err := second.Close(ctx); err != nil {
			t.Fatal(err)
		}
		// Once the epoch reader has gone, readers without one may come.
		r, err := reader(s, nil)
		if err != nil {
			t.Fatalf("reader without an epoch after the epoch reader left: %v", err)
		}
		r.Close(ctx)
	})

	t.Run("refused", func(t *testing.T) {
		s := e.eventHubSession(t, "registryRead", base)
		_, err := s.NewReceiver(ctx, address, nil)
		wantCondition(t, "reader with registryRead's token", err, "amqp:unauthorized-access")
		s = e.eventHubSession(t, "service", base)
		_, err = s.NewReceiver(ctx, entity+"/ConsumerGroups/$Default/Partitions/"+strconv.Itoa(partitions), nil)
		wantCondition(t, "reader of a partition past the last", err, "amqp:not-found")
		_, err = s.NewReceiver(ctx, "other/ConsumerGroups/$Default/Partitions/0", nil)
		wantCondition(t, "reader of another entity", err, "amqp:not-found")
		_, err = s.NewReceiver(ctx, entity+"/ConsumerGroups/nobody/Partitions/0", nil)
		wantCondition(t, "reader of a consumer group that does not exist", err, "amqp:not-found")
		_, err = s.NewReceiver(ctx, address, &goamqp.ReceiverOptions{
			Filters: []goamqp.LinkFilter{goamqp.NewSelectorFilter("amqp.annotation.x-opt-offset > 'x'")}})
		wantCondition(t, "reader with a bad filter", err, "amqp:invalid-field")
		// A token for one partition does not read another.
		s = e.eventHubSession(t, "service", base+"/ConsumerGroups/$Default/Partitions/"+strconv.Itoa((p+1)%partitions))
		_, err = s.NewReceiver(ctx, address, nil)
		wantCondition(t, "reader with another partition's token", err, "amqp:unauthorized-access")
	})
}
