package wire

import (
	"errors"
	"reflect"
	"testing"

	amqp "github.com/Azure/go-amqp"
)

// TestMessages: messages round-trip, and go-amqp reads and writes the
// same bytes for the fields the hub uses.
func TestMessages(t *testing.T) {
	for _, m := range []Message{
		{Properties: Properties{MessageID: "m1", To: "$cbs", ReplyTo: "cbs", CorrelationID: uint64(4)},
			ApplicationProperties: Map{{"operation", "put-token"}, {"type", "servicebus.windows.net:sastoken"}, {"name", "hub.example"}},
			Value:                 "SharedAccessSignature sr=hub.example&sig=x&se=1&skn=iothubowner"},
		{Durable: true, DeliveryAnnotations: Map{{Symbol("last_enqueued_sequence_number"), int64(9)}},
			Annotations: Map{{Symbol("x-opt-sequence-number"), int64(7)}, {Symbol("x-opt-enqueued-time"), at}},
			Properties:  Properties{MessageID: UUID{1}, ContentType: "application/json", ContentEncoding: "utf-8", CreationTime: at, AbsoluteExpiryTime: at, UserID: []byte("u")},
			Data:        []byte(`{"temp":21}`)},
		{Data: []byte{}},
		{DeliveryCount: 2, Data: []byte("again")},
	} {
		b, err := AppendMessage(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeMessage(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip:\n got %#v\nwant %#v", got, m)
		}
		var g amqp.Message
		if err := g.UnmarshalBinary(b); err != nil {
			t.Fatalf("go-amqp refuses %x: %v", b, err)
		}
		if m.Properties.MessageID != nil && g.Properties.MessageID != m.Properties.MessageID && !reflect.DeepEqual(g.Properties.MessageID, amqp.UUID(m.Properties.MessageID.(UUID))) {
			t.Errorf("go-amqp read message-id %#v", g.Properties.MessageID)
		}
		if len(m.DeliveryAnnotations) > 0 && g.DeliveryAnnotations["last_enqueued_sequence_number"] != int64(9) {
			t.Errorf("go-amqp read delivery annotations %#v", g.DeliveryAnnotations)
		}
		if m.DeliveryCount > 0 && (g.Header == nil || g.Header.DeliveryCount != m.DeliveryCount) {
			t.Errorf("go-amqp read header %#v, want delivery-count %d", g.Header, m.DeliveryCount)
		}
	}

	to, reply := "$cbs", "cbs"
	g := &amqp.Message{
		Properties:            &amqp.MessageProperties{MessageID: "req-1", To: &to, ReplyTo: &reply},
		ApplicationProperties: map[string]any{"operation": "put-token", "name": "hub.example"},
		Value:                 "token",
	}
	b, err := g.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	m, err := DecodeMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	op, _ := m.ApplicationProperties.Get("operation")
	if m.Properties.MessageID != "req-1" || m.Properties.To != "$cbs" || m.Properties.ReplyTo != "cbs" || op != "put-token" || m.Value != "token" {
		t.Errorf("go-amqp's put-token read as %#v", m)
	}
}

// FuzzMessage: any payload either fails with ErrMalformed or decodes to
// a message that encodes again.
func FuzzMessage(f *testing.F) {
	b, _ := AppendMessage(nil, Message{Properties: Properties{MessageID: "m1", To: "$cbs"}, ApplicationProperties: Map{{"operation", "put-token"}}, Value: "x"})
	f.Add(b)
	b, _ = AppendMessage(nil, Message{Durable: true, Annotations: Map{{Symbol("a"), int64(1)}}, Data: []byte("d")})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("an error that is not ErrMalformed: %v", err)
			}
			return
		}
		if _, err := AppendMessage(nil, m); err != nil {
			return // arrays of types the encoder does not write
		}
	})
}
