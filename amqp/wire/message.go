package wire

import "time"

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
// skipped.
func DecodeMessage(b []byte) (Message, error) {
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
			m.Durable = f.boolean(0)
			m.DeliveryCount = f.uint(4, 0)
			if f.err != nil {
				return Message{}, f.err
			}
		case codeDeliveryAnnotations, codeMessageAnnotations, codeApplicationProperties:
			mp, ok := s.Value.(Map)
			if !ok && s.Value != nil {
				return Message{}, malformed("section %#x is a %T, not a map", code, s.Value)
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
			m.Properties = Properties{
				MessageID: f.at(0), UserID: f.binary(1), To: f.address(2), Subject: f.str(3),
				ReplyTo: f.address(4), CorrelationID: f.at(5), ContentType: f.symbol(6),
				ContentEncoding: f.symbol(7), AbsoluteExpiryTime: f.timestamp(8), CreationTime: f.timestamp(9),
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
				m.Data = data // the decoder's own copy; empty, not nil: an empty body is not none
				break
			}
			m.Data = append(m.Data, data...)
		case codeAmqpValue:
			m.Value = s.Value
		case codeAmqpSequence, codeFooter:
		default:
			return Message{}, malformed("no message section has code %#x", code)
		}
	}
	return m, nil
}

// address reads an address field: a string (some clients send a symbol).
func (f *fields) address(i int) string {
	if s, ok := f.at(i).(Symbol); ok {
		return string(s)
	}
	return f.str(i)
}

func (f *fields) timestamp(i int) time.Time {
	switch v := f.at(i).(type) {
	case nil:
		return time.Time{}
	case time.Time:
		return v
	}
	f.bad(i, "timestamp")
	return time.Time{}
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
