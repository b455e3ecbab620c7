package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	amqp "github.com/Azure/go-amqp"
)

var at = time.Date(2026, 12, 5, 10, 20, 30, 123_000_000, time.UTC)

// values has one value of every type, in the forms the encoder picks
// between (small and large numbers, short and long strings, 8- and
// 32-bit compounds).
func values() []any {
	long := strings.Repeat("x", 300)
	many := make(List, 300)
	for i := range many {
		many[i] = uint32(i)
	}
	return []any{
		nil, true, false,
		uint8(7), uint16(65535), uint32(0), uint32(200), uint32(1 << 30),
		uint64(0), uint64(255), uint64(1 << 40),
		int8(-3), int16(-300), int32(-100), int32(1 << 20), int64(-1), int64(1 << 40),
		float32(1.5), math.Pi, Char('é'), at,
		UUID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		Decimal32{1, 2, 3, 4}, Decimal64{1, 2, 3, 4, 5, 6, 7, 8}, Decimal128{15: 1},
		[]byte{}, []byte("payload"), []byte(long),
		"", "héllo", long, Symbol("amqp:not-found"), Symbol(long),
		List{}, List{uint32(1), "two", Symbol("three"), nil}, many,
		Map{}, Map{{Symbol("x-opt-offset"), "12"}, {"k", int64(5)}, {uint64(3), List{true}}},
		Array{}, Array{Symbol("a"), Symbol("bb")}, Array{"0", "1", "2", "3"}, Array{true, false},
		Array{uint32(1), uint32(1 << 31)}, Array{uint64(9)}, Array{int32(-1)}, Array{int64(-5), int64(6)},
		Array{UUID{1}}, Array{at},
		Described{Descriptor: uint64(0x10), Value: List{"container", "host"}},
		Described{Descriptor: Symbol("apache.org:selector-filter:string"), Value: "amqp.annotation.x-opt-offset > '5'"},
	}
}

// TestRoundTrip: every value decodes to itself, taking all of its bytes.
func TestRoundTrip(t *testing.T) {
	for _, v := range values() {
		b, err := Append(nil, v)
		if err != nil {
			t.Fatalf("Append(%#v): %v", v, err)
		}
		got, n, err := Decode(b)
		if err != nil || n != len(b) {
			t.Fatalf("Decode(Append(%#v)) = %v after %d of %d bytes", v, err, n, len(b))
		}
		if tm, ok := v.(time.Time); ok {
			if !got.(time.Time).Equal(tm) {
				t.Errorf("timestamp %v came back %v", tm, got)
			}
			continue
		}
		if !reflect.DeepEqual(got, v) {
			t.Errorf("%#v came back %#v", v, got)
		}
	}
}

// TestEncodings: the encoder's choice of form, byte for byte, for values
// whose encoding the spec fixes.
func TestEncodings(t *testing.T) {
	for _, c := range []struct {
		v    any
		want []byte
	}{
		{nil, []byte{0x40}},
		{uint32(0), []byte{0x43}},
		{uint32(5), []byte{0x52, 5}},
		{uint32(256), []byte{0x70, 0, 0, 1, 0}},
		{uint64(0x10), []byte{0x53, 0x10}},
		{int32(-1), []byte{0x54, 0xff}},
		{"ab", []byte{0xa1, 2, 'a', 'b'}},
		{Symbol("x"), []byte{0xa3, 1, 'x'}},
		{List{}, []byte{0x45}},
		{List{true}, []byte{0xc0, 2, 1, 0x41}},
		{Map{{Symbol("a"), uint32(1)}}, []byte{0xc1, 6, 2, 0xa3, 1, 'a', 0x52, 1}},
		{Array{Symbol("a"), Symbol("b")}, []byte{0xe0, 12, 2, 0xb3, 0, 0, 0, 1, 'a', 0, 0, 0, 1, 'b'}},
		{Described{uint64(0x18), List{}}, []byte{0x00, 0x53, 0x18, 0x45}},
	} {
		got, err := Append(nil, c.v)
		if err != nil || !bytes.Equal(got, c.want) {
			t.Errorf("Append(%#v) = % x, %v; want % x", c.v, got, err, c.want)
		}
	}
}

// TestMalformed: input that is not AMQP is refused with ErrMalformed,
// also where a count or size promises more than the input has.
func TestMalformed(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":                  {},
		"unknown code":           {0x99},
		"uint cut short":         {0x70, 0, 0},
		"string cut short":       {0xa1, 5, 'a'},
		"str32 length past end":  {0xb1, 0xff, 0xff, 0xff, 0xff, 'a'},
		"bad UTF-8":              {0xa1, 1, 0xff},
		"symbol not ASCII":       {0xa3, 1, 0xc3},
		"bool byte":              {0x56, 2},
		"char not a code point":  {0x73, 0, 0x11, 0, 0},
		"list size past end":     {0xc0, 10, 1, 0x40},
		"list count past size":   {0xc0, 2, 5, 0x40},
		"list32 huge count":      {0xd0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x40},
		"list bytes left over":   {0xc0, 3, 1, 0x40, 0x40},
		"map odd count":          {0xc1, 2, 1, 0x40},
		"array huge empty count": {0xf0, 0, 0, 0, 5, 0x7f, 0xff, 0xff, 0xff, 0x40},
		"array count past bytes": {0xe0, 3, 9, 0x50, 1},
		"described twice":        {0xe0, 5, 1, 0x00, 0x40, 0x00, 0x40},
		"described, no value":    {0x00, 0x53, 0x10},
	} {
		if _, _, err := Decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s (% x): %v, want ErrMalformed", name, b, err)
		}
	}
	deep := bytes.Repeat([]byte{0x00, 0x40}, maxDepth+1)
	deep = append(deep, 0x40)
	if _, _, err := Decode(deep); !errors.Is(err, ErrMalformed) {
		t.Errorf("values nested %d deep: %v, want ErrMalformed", maxDepth+1, err)
	}
}

// TestGoAMQPMessages: the message sections go-amqp (the client the Go
// SDKs use) encodes decode as it meant them, and sections encoded here
// decode in go-amqp.
func TestGoAMQPMessages(t *testing.T) {
	to, contentType := "/devices/d1/messages/devicebound", "application/json"
	m := &amqp.Message{
		Header:      &amqp.MessageHeader{Durable: true, DeliveryCount: 3},
		Annotations: amqp.Annotations{"x-opt-sequence-number": int64(42), "iothub-connection-device-id": "d1"},
		Properties: &amqp.MessageProperties{
			MessageID: "mid-1", To: &to, CorrelationID: uint64(7),
			ContentType: &contentType, CreationTime: &at,
		},
		ApplicationProperties: map[string]any{"iothub-ack": "full", "n": int32(-2)},
		Data:                  [][]byte{[]byte(`{"temp":21}`)},
	}
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	sections := map[uint64]any{}
	d := NewDecoder(b)
	for !d.Done() {
		v, err := d.Value()
		if err != nil {
			t.Fatalf("go-amqp's message at offset %d: %v", d.Pos(), err)
		}
		s, ok := v.(Described)
		if !ok {
			t.Fatalf("a section is a %T", v)
		}
		code, _ := DescriptorCode(s.Descriptor)
		sections[code] = s.Value
	}
	header := sections[0x70].(List)
	if header[0] != true || header[4] != uint32(3) {
		t.Errorf("header %#v", header)
	}
	ann := sections[0x72].(Map)
	if v, _ := ann.Get(Symbol("x-opt-sequence-number")); v != int64(42) {
		t.Errorf("message annotations %#v", ann)
	}
	props := sections[0x73].(List)
	if props[0] != "mid-1" || props[2] != "/devices/d1/messages/devicebound" || props[5] != uint64(7) ||
		props[6] != Symbol("application/json") || !props[9].(time.Time).Equal(at) { // creation-time
		t.Errorf("properties %#v", props)
	}
	app := sections[0x74].(Map)
	if v, _ := app.Get("iothub-ack"); v != "full" {
		t.Errorf("application properties %#v", app)
	}
	if v, _ := app.Get("n"); v != int32(-2) {
		t.Errorf("application property n = %#v", v)
	}
	if data := sections[0x75].([]byte); string(data) != `{"temp":21}` {
		t.Errorf("data %q", data)
	}

	// The other way: a message as the hub would send one.
	var out []byte
	for _, s := range []Described{
		{uint64(0x72), Map{{Symbol("x-opt-offset"), "100"}, {Symbol("x-opt-enqueued-time"), at}}},
		{uint64(0x73), List{"mid-2", nil, nil, nil, nil, "corr-2", Symbol("text/plain")}},
		{uint64(0x74), Map{{"color", "red"}}},
		{uint64(0x75), []byte("hello")},
	} {
		if out, err = Append(out, s); err != nil {
			t.Fatal(err)
		}
	}
	var back amqp.Message
	if err := back.UnmarshalBinary(out); err != nil {
		t.Fatalf("go-amqp refuses the message: %v", err)
	}
	if back.Properties == nil || back.Properties.MessageID != "mid-2" || back.Properties.CorrelationID != "corr-2" ||
		back.Properties.ContentType == nil || *back.Properties.ContentType != "text/plain" {
		t.Errorf("go-amqp read properties %+v", back.Properties)
	}
	if back.Annotations["x-opt-offset"] != "100" || back.ApplicationProperties["color"] != "red" || string(back.GetData()) != "hello" {
		t.Errorf("go-amqp read %+v", back)
	}
	if tm, ok := back.Annotations["x-opt-enqueued-time"].(time.Time); !ok || !tm.Equal(at) {
		t.Errorf("go-amqp read the enqueued time as %#v", back.Annotations["x-opt-enqueued-time"])
	}
}

// TestWholeFieldLists: the hub sends every field of a performative, as
// many as the spec lists, trailing nulls too (pyamqp reads them by
// position).
func TestWholeFieldLists(t *testing.T) {
	a := Attach{Source: &Terminus{}, Target: &Terminus{}}.List()
	for name, c := range map[string]struct {
		l List
		n int
	}{
		"open": {Open{}.List(), 10}, "begin": {Begin{}.List(), 8}, "attach": {a, 14},
		"source": {a[5].(Described).Value.(List), 11}, "target": {a[6].(Described).Value.(List), 7},
		"flow": {Flow{}.List(), 11}, "transfer": {Transfer{}.List(), 11}, "disposition": {Disposition{}.List(), 6},
		"detach": {Detach{}.List(), 3}, "close": {ErrorList(nil), 1}, "sasl-outcome": {SASLOutcomeList(0), 2},
		"error": {(&Error{}).Field().(Described).Value.(List), 3},
	} {
		if len(c.l) != c.n {
			t.Errorf("%s: %d fields, the spec lists %d", name, len(c.l), c.n)
		}
	}
}

// TestFrames: a performative written as a frame reads back, with its
// payload; a frame over the limit and one with a bad data offset are
// refused.
func TestFrames(t *testing.T) {
	stream, err := AppendPerformativeFrame(nil, FrameAMQP, 3, CodeTransfer, List{uint32(0), uint32(1), []byte{1}, nil, nil}, []byte("payload"))
	if err != nil {
		t.Fatal(err)
	}
	stream = AppendFrame(stream, FrameAMQP, 0, nil) // heartbeat
	r := bufio.NewReader(bytes.NewReader(stream))
	f, err := ReadFrame(r, 65536)
	if err != nil || f.Channel != 3 || f.Type != FrameAMQP {
		t.Fatalf("frame %+v, %v", f, err)
	}
	p, err := DecodePerformative(f.Body)
	if err != nil || p.Code != CodeTransfer || len(p.Fields) != 5 || string(p.Payload) != "payload" || p.Field(4) != nil || p.Field(7) != nil {
		t.Fatalf("performative %+v, %v", p, err)
	}
	if f, err := ReadFrame(r, 65536); err != nil || len(f.Body) != 0 {
		t.Fatalf("heartbeat %+v, %v", f, err)
	}
	// Frames read into one buffer: what a frame decoded to does not
	// change when the next is read over it.
	var two []byte
	for _, tag := range []string{"first-tag", "other-tag"} {
		two, err = AppendPerformativeFrame(two, FrameAMQP, 1, CodeTransfer, List{uint32(0), uint32(1), []byte(tag), nil, nil, nil, nil, nil, nil, nil, "str-" + tag}, []byte("body-"+tag))
		if err != nil {
			t.Fatal(err)
		}
	}
	r = bufio.NewReader(bytes.NewReader(two))
	buf := make([]byte, 0, 256)
	f1, err := ReadFrameInto(r, 65536, buf)
	if err != nil || &f1.Body[0] != &buf[:1][0] {
		t.Fatalf("first frame %v, or not read into the buffer", err)
	}
	p1, err := DecodePerformative(f1.Body)
	if err != nil {
		t.Fatal(err)
	}
	payload := string(p1.Payload) // the payload is the frame's: its reader copies it
	if _, err := ReadFrameInto(r, 65536, f1.Body[:0]); err != nil {
		t.Fatal(err)
	}
	if tag, s := p1.Field(2), p1.Field(10); string(tag.([]byte)) != "first-tag" || s != "str-first-tag" || payload != "body-first-tag" {
		t.Errorf("the first frame's fields after the second was read: %q %q %q", tag, s, payload)
	}
	big := AppendFrame(nil, FrameAMQP, 0, make([]byte, 2000))
	if _, err := ReadFrame(bufio.NewReader(bytes.NewReader(big)), 1024); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("a 2,008-byte frame under a 1,024 limit: %v", err)
	}
	bad := []byte{0, 0, 0, 8, 1, 0, 0, 0} // data offset 4 bytes, inside the header
	if _, err := ReadFrame(bufio.NewReader(bytes.NewReader(bad)), 1024); !errors.Is(err, ErrMalformed) {
		t.Errorf("a data offset of 1: %v", err)
	}
	if _, err := DecodePerformative([]byte{0x00, 0xa3, 3, 'f', 'o', 'o', 0x45}); !errors.Is(err, ErrMalformed) {
		t.Errorf("an unknown symbolic descriptor: %v", err)
	}
	if p, err := DecodePerformative([]byte{0x00, 0xa3, 14, 'a', 'm', 'q', 'p', ':', 'o', 'p', 'e', 'n', ':', 'l', 'i', 's', 't', 0x45}); err != nil || p.Code != CodeOpen {
		t.Errorf("amqp:open:list: %+v, %v", p, err)
	}
	h, err := ReadHeader(bytes.NewReader(Header{Protocol: ProtocolSASL, Major: 1}.Bytes()))
	if err != nil || h.Protocol != ProtocolSASL || h.Major != 1 {
		t.Errorf("header %+v, %v", h, err)
	}
	if _, err := ReadHeader(strings.NewReader("GET / HTTP/1.1\r\n")); !errors.Is(err, ErrNotAMQP) {
		t.Errorf("an HTTP request: %v", err)
	}
}

// FuzzDecode: any input either fails with ErrMalformed or decodes to
// values that encode again, and whose encoding is a fixed point.
func FuzzDecode(f *testing.F) {
	for _, v := range values() {
		b, _ := Append(nil, v)
		f.Add(b)
	}
	f.Add([]byte{0xf0, 0, 0, 0, 5, 0x7f, 0xff, 0xff, 0xff, 0x40})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, _, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("an error that is not ErrMalformed: %v", err)
			}
			return
		}
		once, err := Append(nil, v)
		if err != nil {
			return // arrays of types the encoder does not write
		}
		w, n, err := Decode(once)
		if err != nil || n != len(once) {
			t.Fatalf("re-encoded % x does not decode: %v", once, err)
		}
		twice, err := Append(nil, w)
		if err != nil || !bytes.Equal(once, twice) {
			t.Fatalf("encoding is not a fixed point: % x then % x (%v)", once, twice, err)
		}
	})
}

// FuzzFrame: any byte stream reads as frames and performatives without a
// panic, an error being either a short read or malformed input.
func FuzzFrame(f *testing.F) {
	body, _ := AppendPerformative(nil, CodeAttach, List{"link", uint32(0), true, nil, nil, Described{uint64(0x28), List{"/messages/events"}}}, nil)
	f.Add(AppendFrame(nil, FrameAMQP, 0, body))
	f.Add(AppendFrame(nil, FrameSASL, 0, []byte{0x00, 0x53, 0x41, 0xc0, 3, 1, 0xa3, 0}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(bytes.NewReader(b))
		for {
			fr, err := ReadFrame(r, 4096)
			if err != nil {
				return
			}
			if len(fr.Body) == 0 {
				continue
			}
			p, err := DecodePerformative(fr.Body)
			if err == nil {
				_, err = Parse(p)
			}
			if err != nil && !errors.Is(err, ErrMalformed) {
				t.Fatalf("an error that is not ErrMalformed: %v", err)
			}
		}
	})
}

// FuzzTransfer: DecodeTransfer reads every frame body it takes as
// DecodePerformative and ParseTransfer read it: the same transfer, or an
// error from both; a body it does not take is no transfer of the common
// encoding.
func FuzzTransfer(f *testing.F) {
	id, settled := uint32(70000), false
	for _, tr := range []Transfer{
		{Handle: 1, DeliveryID: &id, DeliveryTag: []byte{0, 1, 0x11, 0x70}, Settled: &settled},
		{Handle: 300, More: true, MessageFormat: &id},
		{Handle: 2, Aborted: true, State: State(CodeAccepted)},
	} {
		body, _ := AppendPerformative(nil, CodeTransfer, tr.List(), []byte("payload"))
		f.Add(body)
	}
	f.Add([]byte{0x00, 0x53, 0x14, 0xc0, 0x03, 0x01, 0x52, 0x07})
	f.Add([]byte{0x00, 0x53, 0x14, 0xd0, 0, 0, 0, 8, 0, 0, 0, 2, 0x43, 0x56, 0x01, 0x40})
	f.Fuzz(func(t *testing.T, body []byte) {
		got, ok, err := DecodeTransfer(body)
		if !ok {
			if err != nil {
				t.Fatalf("not taken, yet an error: %v", err)
			}
			if len(body) >= 4 && body[0] == 0 && body[1] == codeSmallUlong && body[2] == CodeTransfer && (body[3] == codeList8 || body[3] == codeList32) {
				t.Fatalf("a transfer of the common encoding not taken: %x", body)
			}
			return
		}
		p, wantErr := DecodePerformative(body)
		var want Transfer
		if wantErr == nil {
			want, wantErr = ParseTransfer(p)
		}
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("DecodeTransfer(%x): %v; DecodePerformative and ParseTransfer: %v", body, err, wantErr)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("an error that is not ErrMalformed: %v", err)
			}
			return
		}
		// The state compared as printed: a NaN is not DeepEqual to itself.
		if fmt.Sprintf("%#v", got.State) != fmt.Sprintf("%#v", want.State) {
			t.Fatalf("DecodeTransfer(%x): state %#v, want %#v", body, got.State, want.State)
		}
		got.State, want.State = nil, nil
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("DecodeTransfer(%x) = %+v, want %+v", body, got, want)
		}
	})
}
