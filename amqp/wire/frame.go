package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A connection begins with a protocol header from each side (part 2,
// section 2.2): "AMQP", the protocol id (0 AMQP, 2 TLS, 3 SASL), then
// version 1.0.0. Clients that skip SASL send protocol id 0 at once.
const (
	ProtocolAMQP = 0
	ProtocolTLS  = 2
	ProtocolSASL = 3
)

// Header is a protocol header.
type Header struct {
	Protocol               byte
	Major, Minor, Revision byte
}

// Bytes is the header as sent.
func (h Header) Bytes() []byte {
	return []byte{'A', 'M', 'Q', 'P', h.Protocol, h.Major, h.Minor, h.Revision}
}

// ErrNotAMQP is returned for a connection that does not begin with an
// AMQP protocol header (an HTTP request, say).
var ErrNotAMQP = errors.New("amqp: the connection does not begin with an AMQP protocol header")

// ReadHeader reads a protocol header.
func ReadHeader(r io.Reader) (Header, error) {
	var b [8]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return Header{}, err
	}
	if string(b[:4]) != "AMQP" {
		return Header{}, ErrNotAMQP
	}
	return Header{Protocol: b[4], Major: b[5], Minor: b[6], Revision: b[7]}, nil
}

// Frame types (part 2, section 2.3).
const (
	FrameAMQP = 0x00
	FrameSASL = 0x01
)

// MinMaxFrameSize is the smallest max-frame-size a peer may announce
// (part 2, section 2.7.1): frames up to it are always allowed, also
// before the open frames have set the real limit.
const MinMaxFrameSize = 512

// Frame is one frame: its type, channel and body (after any extended
// header). An empty body is a heartbeat.
type Frame struct {
	Type    byte
	Channel uint16
	Body    []byte
}

// ReadFrame reads one frame of at most maxSize bytes (the max-frame-size
// this side announced). A larger or malformed frame is an error wrapping
// ErrMalformed (or ErrFrameTooLarge), after which the connection must be
// closed: the stream cannot be resynchronised.
func ReadFrame(r *bufio.Reader, maxSize uint32) (Frame, error) {
	return ReadFrameInto(r, maxSize, nil)
}

// ReadFrameInto is ReadFrame with the body in buf's memory when it fits,
// for a reader that is done with the previous frame before the next: a
// connection's frames need not be an allocation each (the decoders copy
// what they keep).
func ReadFrameInto(r *bufio.Reader, maxSize uint32, buf []byte) (Frame, error) {
	var h [8]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Frame{}, err
	}
	size := binary.BigEndian.Uint32(h[:4])
	doff := uint32(h[4]) * 4
	f := Frame{Type: h[5], Channel: binary.BigEndian.Uint16(h[6:])}
	switch {
	case size > maxSize && size > MinMaxFrameSize:
		return Frame{}, fmt.Errorf("%w: %d bytes, the limit is %d", ErrFrameTooLarge, size, maxSize)
	case doff < 8 || doff > size:
		return Frame{}, malformed("frame of %d bytes with data offset %d", size, doff)
	}
	if _, err := r.Discard(int(doff - 8)); err != nil { // extended header, unused
		return Frame{}, err
	}
	if n := int(size - doff); n <= cap(buf) {
		f.Body = buf[:n]
	} else {
		f.Body = make([]byte, n)
	}
	if _, err := io.ReadFull(r, f.Body); err != nil {
		return Frame{}, err
	}
	return f, nil
}

// ErrFrameTooLarge is a frame over the announced max-frame-size; the
// endpoint answers it with amqp:connection:framing-error.
var ErrFrameTooLarge = errors.New("amqp: frame too large")

// AppendFrame appends a frame with body (no extended header).
func AppendFrame(b []byte, typ byte, channel uint16, body []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(8+len(body)))
	b = append(b, 2, typ)
	b = binary.BigEndian.AppendUint16(b, channel)
	return append(b, body...)
}

// Performative is a frame body decoded: the performative's code (Open,
// Begin ... SASLOutcome), its fields (the described list, nil for the
// fields a peer left out at the end), and the payload after it (the
// message bytes of a transfer).
type Performative struct {
	Code    uint64
	Fields  List
	Payload []byte
}

// The descriptor codes of the performatives (part 2, section 2.7; part 5,
// section 5.3.3).
const (
	CodeOpen        = 0x10
	CodeBegin       = 0x11
	CodeAttach      = 0x12
	CodeFlow        = 0x13
	CodeTransfer    = 0x14
	CodeDisposition = 0x15
	CodeDetach      = 0x16
	CodeEnd         = 0x17
	CodeClose       = 0x18

	CodeSASLMechanisms = 0x40
	CodeSASLInit       = 0x41
	CodeSASLChallenge  = 0x42
	CodeSASLResponse   = 0x43
	CodeSASLOutcome    = 0x44
)

// descriptorNames are the symbolic descriptors peers may use instead of
// the codes.
var descriptorNames = map[Symbol]uint64{
	"amqp:open:list": CodeOpen, "amqp:begin:list": CodeBegin, "amqp:attach:list": CodeAttach,
	"amqp:flow:list": CodeFlow, "amqp:transfer:list": CodeTransfer, "amqp:disposition:list": CodeDisposition,
	"amqp:detach:list": CodeDetach, "amqp:end:list": CodeEnd, "amqp:close:list": CodeClose,
	"amqp:sasl-mechanisms:list": CodeSASLMechanisms, "amqp:sasl-init:list": CodeSASLInit,
	"amqp:sasl-challenge:list": CodeSASLChallenge, "amqp:sasl-response:list": CodeSASLResponse,
	"amqp:sasl-outcome:list": CodeSASLOutcome,
	"amqp:source:list":       CodeSource, "amqp:target:list": CodeTarget, "amqp:error:list": CodeError,
	"amqp:received:list": CodeReceived, "amqp:accepted:list": CodeAccepted, "amqp:rejected:list": CodeRejected,
	"amqp:released:list": CodeReleased, "amqp:modified:list": CodeModified,
}

// DecodePerformative reads the performative at the start of a frame body.
func DecodePerformative(body []byte) (Performative, error) {
	d := Decoder{b: body}
	v, err := d.Value()
	if err != nil {
		return Performative{}, err
	}
	desc, ok := v.(Described)
	if !ok {
		return Performative{}, malformed("frame body is a %T, not a performative", v)
	}
	code, ok := DescriptorCode(desc.Descriptor)
	if !ok {
		return Performative{}, malformed("performative descriptor %v", desc.Descriptor)
	}
	fields, ok := desc.Value.(List)
	if !ok {
		return Performative{}, malformed("performative %#x is a %T, not a list", code, desc.Value)
	}
	return Performative{Code: code, Fields: fields, Payload: d.Rest()}, nil
}

// DescriptorCode is the numeric code of a descriptor given as a ulong or
// as the symbol of a performative, terminus, error or delivery state.
func DescriptorCode(desc any) (uint64, bool) {
	switch x := desc.(type) {
	case uint64:
		return x, true
	case Symbol:
		c, ok := descriptorNames[x]
		return c, ok
	}
	return 0, false
}

// AppendPerformativeFrame appends a whole frame of type typ on channel,
// carrying the performative and payload (AppendPerformative), built in
// place: the frame header's size is filled in once the body is written.
func AppendPerformativeFrame(b []byte, typ byte, channel uint16, code uint64, fields List, payload []byte) ([]byte, error) {
	start := len(b)
	b = AppendFrame(b, typ, channel, nil)
	b, err := AppendPerformative(b, code, fields, payload)
	if err != nil {
		return nil, err
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b, nil
}

// AppendDispositionFrame appends a whole frame carrying d on channel, as
// AppendPerformativeFrame with d.List() does, written field by field:
// the hub settles every message a device sends with one, and the list of
// interfaces cost five allocations (BenchmarkEncodeDisposition).
func AppendDispositionFrame(b []byte, channel uint16, d Disposition) ([]byte, error) {
	start := len(b)
	b = AppendFrame(b, FrameAMQP, channel, nil)
	b = append(b, codeDescribed, codeSmallUlong, CodeDisposition)
	b, err := appendCompound(b, codeList8, codeList32, 6, func(b []byte) ([]byte, error) {
		b = appendUint(appendBool(b, d.Role), d.First)
		if d.Last != nil {
			b = appendUint(b, *d.Last)
		} else {
			b = append(b, codeNull)
		}
		b, err := Append(appendBool(b, d.Settled), d.State)
		return append(b, codeFalse), err // batchable
	})
	if err != nil {
		return nil, err
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b, nil
}

// AppendPerformative appends a frame body: the performative code with its
// fields, then payload. Every field is sent, trailing nulls too, though
// the spec lets them be left out: the Python Event Hubs SDK's AMQP stack
// (pyamqp) reads fields by position and fails on a shorter list, so each
// List method gives the performative's whole field list.
func AppendPerformative(b []byte, code uint64, fields List, payload []byte) ([]byte, error) {
	b, err := Append(b, Described{Descriptor: code, Value: fields})
	if err != nil {
		return nil, err
	}
	return append(b, payload...), nil
}

// Field returns field i of a performative's list, nil when the peer left
// it out.
func (p Performative) Field(i int) any {
	if i < len(p.Fields) {
		return p.Fields[i]
	}
	return nil
}

// transferFields holds the optional fields of a transfer that Transfer
// points to, in one allocation rather than one each (DecodeTransfer).
type transferFields struct {
	deliveryID, messageFormat uint32
	settled                   bool
}

func (f *transferFields) orNew() *transferFields {
	if f == nil {
		return new(transferFields)
	}
	return f
}

// DecodeTransfer reads a frame body that is a transfer, in the encoding
// every client gives it (the ulong descriptor, a list), field by field
// rather than through Value's tree: a transfer comes with every message
// a device sends. ok is false, and nothing read, for any other body,
// which DecodePerformative and Parse read. As with DecodePerformative,
// the transfer's Payload is the rest of body, not a copy: it is the
// caller's to decode or copy before body's memory is reused (onTransfer
// decodes a message of one transfer in place, and copies the parts of
// one over several).
func DecodeTransfer(body []byte) (t Transfer, ok bool, err error) {
	if len(body) < 4 || body[0] != codeDescribed || body[1] != codeSmallUlong || body[2] != CodeTransfer {
		return Transfer{}, false, nil
	}
	c := body[3]
	if c != codeList8 && c != codeList32 {
		return Transfer{}, false, nil
	}
	d := Decoder{b: body, i: 4, depth: 2} // in the described value, in the list
	sub, count, err := d.fieldList(c)
	if err != nil {
		return Transfer{}, true, err
	}
	const name = "transfer"
	var present bool
	var opt *transferFields // made at the first optional field present
	for i := range count {
		switch i {
		case 0:
			t.Handle, present, err = sub.uintField(name, i)
			if err == nil && !present {
				err = malformed("transfer field 0 is mandatory")
			}
		case 1, 3:
			var v uint32
			if v, present, err = sub.uintField(name, i); present {
				opt = opt.orNew()
				if i == 1 {
					opt.deliveryID, t.DeliveryID = v, &opt.deliveryID
				} else {
					opt.messageFormat, t.MessageFormat = v, &opt.messageFormat
				}
			}
		case 2:
			var tag []byte
			tag, err = sub.variableField(name, i, "binary", codeVbin8, codeVbin32)
			t.DeliveryTag = bytes.Clone(tag) // nil for null, empty for empty
		case 4:
			var v bool
			if v, present, err = sub.boolField(name, i); present {
				opt = opt.orNew()
				opt.settled, t.Settled = v, &opt.settled
			}
		case 5:
			t.More, _, err = sub.boolField(name, i)
		case 7:
			t.State, err = sub.Value()
		case 9:
			t.Aborted, _, err = sub.boolField(name, i)
		default: // rcv-settle-mode, resume, batchable and later fields: checked, not kept
			_, err = sub.Value()
		}
		if err != nil {
			return Transfer{}, true, err
		}
	}
	if count == 0 {
		return Transfer{}, true, malformed("transfer field 0 is mandatory")
	}
	if err := sub.end(); err != nil {
		return Transfer{}, true, err
	}
	t.Payload = d.Rest()
	return t, true, nil
}
