package wire

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

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
		b, got := encodeDecode(t, m)
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

// TestDecodeMessageOwnsItsMemory: a decoded message shares no memory
// with its payload, which the hub reads in place from the frame buffer
// and reuses for the next frame (onTransfer).
func TestDecodeMessageOwnsItsMemory(t *testing.T) {
	m := Message{
		Durable:               true,
		DeliveryAnnotations:   Map{{Symbol("k"), "delivery"}},
		Annotations:           Map{{Symbol("x-opt-a"), []byte("bin")}, {Symbol("x-opt-s"), Symbol("sym")}},
		Properties:            Properties{MessageID: []byte("mid"), UserID: []byte("u"), To: "to", Subject: "s", ReplyTo: "r", CorrelationID: "c", ContentType: "application/json", ContentEncoding: "utf-8", CreationTime: at},
		ApplicationProperties: Map{{"p", "v"}, {"list", List{"a", []byte("b")}}, {"arr", Array{Symbol("x"), Symbol("y")}}},
		Data:                  []byte("body"),
	}
	b, got := encodeDecode(t, m)
	for i := range b {
		b[i] = 'Z'
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("after its payload was overwritten:\n got %#v\nwant %#v", got, m)
	}
	for _, v := range []Message{
		{Value: []byte("value")},
		// A $management request's body: a map, with a described value
		// and a UUID in it.
		{Value: Map{{"d", Described{Descriptor: Symbol("x:d"), Value: []byte("described")}}, {"u", UUID{1, 2}}, {"l", List{Symbol("s"), "t"}}}},
	} {
		b, got = encodeDecode(t, v)
		clear(b)
		if !reflect.DeepEqual(got, v) {
			t.Errorf("amqp-value after its payload was cleared:\n got %#v\nwant %#v", got, v)
		}
	}
	// A body of two data sections.
	b, _ = encodeDecode(t, Message{Data: []byte("first,")})
	second, _ := encodeDecode(t, Message{Data: []byte("second")})
	b = append(b, second...)
	joined, err := DecodeMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	clear(b)
	if string(joined.Data) != "first,second" {
		t.Errorf("two data sections after their payload was cleared: %q", joined.Data)
	}
}

// encodeDecode encodes m and decodes the encoding, failing t on an
// error of either.
func encodeDecode(t *testing.T, m Message) (encoded []byte, decoded Message) {
	t.Helper()
	b, err := AppendMessage(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	return b, got
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
		want, wantErr := decodeMessageByValue(b)
		// Compared as printed: a NaN is not DeepEqual to itself.
		if (err == nil) != (wantErr == nil) || err == nil && fmt.Sprintf("%#v", m) != fmt.Sprintf("%#v", want) {
			t.Fatalf("DecodeMessage(%x) = %#v, %v; read through Value: %#v, %v", b, m, err, want, wantErr)
		}
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

// decodeMessageByValue is what DecodeMessage must give, read the plain
// way: each section a value of Value's tree, then its fields picked out.
// (DecodeMessage reads the common sections without the tree.)
func decodeMessageByValue(b []byte) (Message, error) {
	var m Message
	d := Decoder{b: b}
	for !d.Done() {
		v, err := d.Value()
		if err != nil {
			return Message{}, err
		}
		s, ok := v.(Described)
		code, known := uint64(0), false
		if ok {
			code, known = s.Descriptor.(uint64)
		}
		if !known {
			return Message{}, malformed("a message section is a %T", v)
		}
		switch code {
		case codeHeader:
			l, ok := s.Value.(List)
			if !ok {
				return Message{}, malformed("header is a %T", s.Value)
			}
			f := fields{l: l, name: "header"}
			m.Durable, m.DeliveryCount = f.boolean(0), f.uint(4, 0)
			if f.err != nil {
				return Message{}, f.err
			}
		case codeDeliveryAnnotations, codeMessageAnnotations, codeApplicationProperties:
			mp, ok := s.Value.(Map)
			if !ok && s.Value != nil {
				return Message{}, malformed("section %#x is a %T", code, s.Value)
			}
			switch code {
			case codeDeliveryAnnotations:
				m.DeliveryAnnotations = mp
			case codeMessageAnnotations:
				m.Annotations = mp
			default:
				m.ApplicationProperties = mp
			}
		case codeProperties:
			l, ok := s.Value.(List)
			if !ok {
				return Message{}, malformed("properties is a %T", s.Value)
			}
			f := fields{l: l, name: "properties"}
			address := func(i int) string {
				if s, ok := f.at(i).(Symbol); ok {
					return string(s)
				}
				return f.str(i)
			}
			timestamp := func(i int) time.Time {
				t, ok := f.at(i).(time.Time)
				if !ok && f.at(i) != nil {
					f.bad(i, "timestamp")
				}
				return t
			}
			m.Properties = Properties{
				MessageID: f.at(0), UserID: f.binary(1), To: address(2), Subject: f.str(3),
				ReplyTo: address(4), CorrelationID: f.at(5), ContentType: f.symbol(6),
				ContentEncoding: f.symbol(7), AbsoluteExpiryTime: timestamp(8), CreationTime: timestamp(9),
			}
			if f.err != nil {
				return Message{}, f.err
			}
		case codeData:
			data, ok := s.Value.([]byte)
			if !ok {
				return Message{}, malformed("data is a %T", s.Value)
			}
			if m.Data == nil {
				m.Data = data
			} else {
				m.Data = append(m.Data, data...)
			}
		case codeAmqpValue:
			m.Value = s.Value
		case codeAmqpSequence, codeFooter:
		default:
			return Message{}, malformed("no message section has code %#x", code)
		}
	}
	return m, nil
}
