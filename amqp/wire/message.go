package wire

import (
	"bytes"
	"time"
)

// Message is an AMQP message (part 3, section 3.2) with the sections
// IoT Hub's clients use: header, delivery and message annotations,
// properties, application properties, and a body of data sections or one
// amqp-value.
type Message struct {
	Durable bool
	// DeliveryCount is the header's delivery-count: how many earlier
	// deliveries of the message failed (a C2D message abandoned, or
	// never settled).
	DeliveryCount uint32
	// DeliveryAnnotations are for the receiving peer only (Event Hubs'
	// runtime metrics: last_enqueued_...).
	DeliveryAnnotations Map
	Annotations         Map // message annotations (x-opt-..., iothub-...)
	Properties          Properties
	// ApplicationProperties are the message's own properties (string
	// keys): the device's properties, CBS's operation and status-code.
	ApplicationProperties Map
	// Data is the body as data sections, joined; Value the body as an
	// amqp-value section. A message has one or the other.
	Data  []byte
	Value any
}

// Properties are a message's standard properties. MessageID and
// CorrelationID keep the type they came in (string, uint64, UUID or
// binary): a reply's correlation-id must have the type of the request's
// message-id.
type Properties struct {
	MessageID          any
	UserID             []byte
	To                 string
	Subject            string
	ReplyTo            string
	CorrelationID      any
	ContentType        Symbol
	ContentEncoding    Symbol
	AbsoluteExpiryTime time.Time
	CreationTime       time.Time
}

// The descriptors of the message sections.
const (
	codeHeader                = 0x70
	codeDeliveryAnnotations   = 0x71
	codeMessageAnnotations    = 0x72
	codeProperties            = 0x73
	codeApplicationProperties = 0x74
	codeData                  = 0x75
	codeAmqpSequence          = 0x76
	codeAmqpValue             = 0x77
	codeFooter                = 0x78
)

// DecodeMessage reads a message from the payload of its transfers.
// Sections it does not keep (footer, sequence bodies) are checked and
// skipped. The sections of every telemetry message (properties, data,
// application properties and annotations) are read into their fields
// directly, not through Value's tree of interfaces: the hub decodes a
// message for each device message, and that tree was most of the
// decoding's time and allocations (BenchmarkDecodeMessage). The others
// go through Value. The message shares no memory with b, which the hub
// reads in place from its frame buffer (TestDecodeMessageOwnsItsMemory).
func DecodeMessage(b []byte) (Message, error) {
	var m Message
	d := Decoder{b: b}
	for !d.Done() {
		if err := d.section(&m); err != nil {
			return Message{}, err
		}
	}
	return m, nil
}

// section reads one section into m: a described value whose descriptor
// is the section's ulong code.
func (d *Decoder) section(m *Message) error {
	if d.b[d.i] != codeDescribed {
		v, err := d.Value()
		if err != nil {
			return err
		}
		return malformed("a message section is a %T", v)
	}
	d.i++
	if err := d.enter(); err != nil {
		return err
	}
	defer d.leave()
	desc, err := d.Value()
	if err != nil {
		return err
	}
	code, ok := desc.(uint64)
	if !ok {
		return malformed("a message section's descriptor is a %T", desc)
	}
	switch code {
	case codeProperties:
		return d.properties(&m.Properties)
	case codeData:
		data, err := d.binary()
		if err != nil {
			return err
		}
		if m.Data == nil {
			m.Data = data // the decoder's own copy; empty, not nil: an empty body is not none
		} else {
			m.Data = append(m.Data, data...)
		}
		return nil
	case codeDeliveryAnnotations, codeMessageAnnotations, codeApplicationProperties:
		mp, err := d.mapOrNull(code)
		switch code {
		case codeDeliveryAnnotations:
			m.DeliveryAnnotations = mp
		case codeMessageAnnotations:
			m.Annotations = mp
		default:
			m.ApplicationProperties = mp
		}
		return err
	}
	v, err := d.Value()
	if err != nil {
		return err
	}
	switch code {
	case codeHeader:
		l, ok := v.(List)
		if !ok {
			return malformed("header is a %T", v)
		}
		f := fields{l: l, name: "header"}
		m.Durable = f.boolean(0)
		m.DeliveryCount = f.uint(4, 0)
		return f.err
	case codeAmqpValue:
		m.Value = v
	case codeAmqpSequence, codeFooter:
	default:
		return malformed("no message section has code %#x", code)
	}
	return nil
}

// binary reads a data section's binary, copied out of the frame.
func (d *Decoder) binary() ([]byte, error) {
	if !d.Done() {
		if c := d.b[d.i]; c == codeVbin8 || c == codeVbin32 {
			d.i++
			b, err := d.variableBytes(c)
			if err != nil {
				return nil, err
			}
			return bytes.Clone(b), nil // empty, not nil, for an empty section
		}
	}
	v, err := d.Value()
	if err != nil {
		return nil, err
	}
	return nil, malformed("data is a %T", v)
}

// mapOrNull reads the map of section code, or its null.
func (d *Decoder) mapOrNull(code uint64) (Map, error) {
	if !d.Done() {
		switch c := d.b[d.i]; c {
		case codeNull:
			d.i++
			return nil, nil
		case codeMap8, codeMap32:
			d.i++
			if err := d.enter(); err != nil {
				return nil, err
			}
			defer d.leave()
			sub, count, err := d.compoundBody(c)
			if err != nil {
				return nil, err
			}
			mp, err := sub.mapOf(count)
			if err != nil {
				return nil, err
			}
			return mp, sub.end()
		}
	}
	v, err := d.Value()
	if err != nil {
		return nil, err
	}
	return nil, malformed("section %#x is a %T, not a map", code, v)
}

// properties reads the properties section's list field by field into
// p, whose earlier fields it clears (a message with two such sections is
// malformed, but read as the last one says).
func (d *Decoder) properties(p *Properties) error {
	*p = Properties{}
	var c byte
	if !d.Done() {
		c = d.b[d.i]
	}
	switch c {
	case codeList0:
		d.i++
		return nil
	case codeList8, codeList32:
	default:
		v, err := d.Value()
		if err != nil {
			return err
		}
		return malformed("properties is a %T", v)
	}
	d.i++
	if err := d.enter(); err != nil {
		return err
	}
	defer d.leave()
	sub, count, err := d.fieldList(c)
	if err != nil {
		return err
	}
	for i := range count {
		var err error
		switch i {
		case 0, 5: // message-id, correlation-id: of any of their types
			var v any
			if v, err = sub.Value(); i == 0 {
				p.MessageID = v
			} else {
				p.CorrelationID = v
			}
		case 1:
			var b []byte
			b, err = sub.variableField("properties", i, "binary", codeVbin8, codeVbin32)
			p.UserID = bytes.Clone(b) // nil for null, empty for empty
		case 2, 4: // addresses: strings (some clients send symbols)
			var b []byte
			if b, err = sub.variableField("properties", i, "string", codeStr8, codeStr32, codeSym8, codeSym32); i == 2 {
				p.To = string(b)
			} else {
				p.ReplyTo = string(b)
			}
		case 3:
			var b []byte
			b, err = sub.variableField("properties", i, "string", codeStr8, codeStr32)
			p.Subject = string(b)
		case 6, 7:
			var b []byte
			if b, err = sub.variableField("properties", i, "symbol", codeSym8, codeSym32); i == 6 {
				p.ContentType = Symbol(b)
			} else {
				p.ContentEncoding = Symbol(b)
			}
		case 8, 9:
			var t time.Time
			if t, err = sub.timestampField("properties", i); i == 8 {
				p.AbsoluteExpiryTime = t
			} else {
				p.CreationTime = t
			}
		default: // fields of later versions: checked, not kept
			_, err = sub.Value()
		}
		if err != nil {
			return err
		}
	}
	return sub.end()
}

// AppendMessage appends m's sections: those it has, body last (data when
// Value is nil).
func AppendMessage(b []byte, m Message) ([]byte, error) {
	var err error
	add := func(code uint64, v any) {
		if err == nil {
			b, err = Append(b, Described{Descriptor: code, Value: v})
		}
	}
	if m.Durable || m.DeliveryCount > 0 {
		h := List{m.Durable}
		if m.DeliveryCount > 0 {
			h = List{m.Durable, nil, nil, nil, m.DeliveryCount}
		}
		add(codeHeader, h)
	}
	if len(m.DeliveryAnnotations) > 0 {
		add(codeDeliveryAnnotations, m.DeliveryAnnotations)
	}
	if len(m.Annotations) > 0 {
		add(codeMessageAnnotations, m.Annotations)
	}
	if p := m.Properties; !p.empty() {
		var userID any
		if p.UserID != nil {
			userID = p.UserID
		}
		add(codeProperties, trimNils(List{p.MessageID, userID, orNil(p.To), orNil(p.Subject), orNil(p.ReplyTo),
			p.CorrelationID, orNil(p.ContentType), orNil(p.ContentEncoding), timeOrNil(p.AbsoluteExpiryTime), timeOrNil(p.CreationTime)}))
	}
	if len(m.ApplicationProperties) > 0 {
		add(codeApplicationProperties, m.ApplicationProperties)
	}
	if m.Value != nil {
		add(codeAmqpValue, m.Value)
	} else {
		data := m.Data
		if data == nil {
			data = []byte{}
		}
		add(codeData, data)
	}
	return b, err
}

func (p Properties) empty() bool {
	return p.MessageID == nil && p.UserID == nil && p.To == "" && p.Subject == "" && p.ReplyTo == "" &&
		p.CorrelationID == nil && p.ContentType == "" && p.ContentEncoding == "" &&
		p.AbsoluteExpiryTime.IsZero() && p.CreationTime.IsZero()
}

func trimNils(l List) List {
	for len(l) > 0 && l[len(l)-1] == nil {
		l = l[:len(l)-1]
	}
	return l
}

func timeOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}
