package jetstream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twinhub/twinhub"
)

// A telemetry event is stored as one JetStream message whose data is the
// event, properties and body, behind one byte that names the format; the
// identity is in the subject, and the message has no headers unless
// JetStream's duplicate detection needs its Nats-Msg-Id.
//
//	eventFormat1
//	varint   enqueued time, Unix nanoseconds
//	string   auth method (sas, selfSigned, certificateAuthority)
//	string   auth generation id
//	string   message id, correlation id, content type, content
//	         encoding, user id, to (six strings)
//	uvarint  count of application properties
//	string   key, string value (each property, in the order sent)
//	bytes    the body: the rest of the data
//
// where a string is its length (uvarint) and its bytes.
//
// Why not headers, as events were stored before: the headers of a
// message cost a map and its text encoding (nats.go's http.Header writer)
// to build, and the server scans them a dozen times while it stores the
// message (for Nats-Msg-Id, Nats-TTL, Nats-Expected-..., trace headers).
// For a 256-byte message that was about a sixth of the hub's CPU a
// telemetry message (BENCHMARKS.md, issue 17). The data also keeps
// properties exactly as sent: a header name had to be escaped, a value
// lost its line breaks, and their order was the map's.
//
// Events stored before in headers (a message with an
// iothub-connection-device-id header) read as they always did; nothing is
// migrated.
const eventFormat1 byte = 0x01

// eventStrings is the number of system properties stored as strings.
const eventStrings = 8

var errEventFormat = errors.New("stored telemetry event: not in a format this twinhub reads")

// eventBufs recycles the buffers that events are encoded into: nats.go
// copies a message into its connection's buffer before the publish
// returns.
var eventBufs = sync.Pool{New: func() any { return new([]byte) }}

// appendEvent appends the stored form of e to dst.
func appendEvent(dst []byte, e *twinhub.Event) []byte {
	dst = append(dst, eventFormat1)
	var enqueued int64
	if !e.Enqueued.IsZero() {
		enqueued = e.Enqueued.UnixNano()
	}
	dst = binary.AppendVarint(dst, enqueued)
	for _, s := range [eventStrings]string{e.AuthMethod, e.AuthGenerationID, e.MessageID, e.CorrelationID,
		e.ContentType, e.ContentEncoding, e.UserID, e.To} {
		dst = appendEventString(dst, s)
	}
	dst = binary.AppendUvarint(dst, uint64(len(e.Properties)))
	for _, p := range e.Properties {
		dst = appendEventString(dst, p.Key)
		dst = appendEventString(dst, p.Value)
	}
	return append(dst, e.Body...)
}

func appendEventString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// parseEvent fills e's properties and body from data in eventFormat1. The
// body is a slice of data.
func parseEvent(data []byte, e *twinhub.Event) error {
	if len(data) == 0 || data[0] != eventFormat1 {
		if len(data) == 0 {
			return fmt.Errorf("%w: no data", errEventFormat)
		}
		return fmt.Errorf("%w: format byte %#02x (written by a newer twinhub?)", errEventFormat, data[0])
	}
	d := eventDecoder{data: data[1:]}
	enqueued := d.varint()
	if enqueued != 0 {
		e.Enqueued = twinhub.Time{Time: time.Unix(0, enqueued).UTC()}
	}
	for _, s := range [eventStrings]*string{&e.AuthMethod, &e.AuthGenerationID, &e.MessageID, &e.CorrelationID,
		&e.ContentType, &e.ContentEncoding, &e.UserID, &e.To} {
		*s = d.string()
	}
	n := d.uvarint()
	// Each property takes at least two bytes: a count beyond that is
	// corrupt, and allocates nothing.
	if n > uint64(len(d.data))/2 {
		return fmt.Errorf("%w: %d properties in %d bytes", errEventFormat, n, len(d.data))
	}
	if n > 0 {
		e.Properties = make([]twinhub.Property, n)
		for i := range e.Properties {
			e.Properties[i] = twinhub.Property{Key: d.string(), Value: d.string()}
		}
	}
	if d.err != nil {
		return d.err
	}
	e.Body = d.data
	return nil
}

// eventDecoder reads eventFormat1's fields; the first error sticks and
// the fields after it read as zero.
type eventDecoder struct {
	data []byte
	err  error
}

func (d *eventDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.data)
	if n <= 0 {
		d.err = fmt.Errorf("%w: a length runs past the data", errEventFormat)
		return 0
	}
	d.data = d.data[n:]
	return v
}

func (d *eventDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.data)
	if n <= 0 {
		d.err = fmt.Errorf("%w: the enqueued time runs past the data", errEventFormat)
		return 0
	}
	d.data = d.data[n:]
	return v
}

func (d *eventDecoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.data)) {
		d.err = fmt.Errorf("%w: a %d-byte string in %d bytes", errEventFormat, n, len(d.data))
		return ""
	}
	s := string(d.data[:n])
	d.data = d.data[n:]
	return s
}
