package jetstream

import (
	"errors"
	"fmt"

	"github.com/klauspost/compress/s2"
)

// A registry record is stored as its JSON (package recordjson) compressed
// with S2 against a dictionary of the record's own field names and
// common values, behind one byte that names the format:
//
//   - '{': the JSON as it is. Records written before compression read as
//     they always did; a data folder needs no migration, and each record
//     is stored compressed from its next write on.
//   - recordS2Dict1: an S2 block (no framing, no checksum: JetStream
//     checksums its messages) made with recordDict1.
//
// Why: random twin writes make JetStream load the message blocks that
// hold the twins' previous revisions (it reads each message it removes),
// so at a million twins its block buffers hold about the whole registry
// stream, beside the disk. Halving the bytes of a record halves both. A
// small record's JSON is mostly field names, which no general compressor
// finds within one record, and the dictionary gives them: a twin of the
// million benchmark goes from 435 to 227 bytes, in about 3 µs, and reads
// back in under 1 µs (BenchmarkRecordFormat). S2's block
// format with a dictionary is klauspost/compress's, which JetStream's own
// stream compression uses.
const recordS2Dict1 byte = 0x01

// recordDict1 is the dictionary of recordS2Dict1. Records stored with it
// read with it forever: it never changes (TestRecordDictFrozen). A better
// dictionary is a new format byte beside it.
var recordDict1 = s2.MakeDict([]byte(
	`{"module":{"moduleId":"","deviceId":"","managedBy":"IotEdge","generationId":"","etag":"","connectionState":"Connected",`+
		`"authentication":{"type":"selfSigned","x509Thumbprint":{"primaryThumbprint":"","secondaryThumbprint":""}}},`+
		`"type":"certificateAuthority","type":"none","statusReason":"","capabilities":{"iotEdge":true},`+
		`"deviceScope":"ms-azure-iot-edge://","parentScopes":["ms-azure-iot-edge://"],"configurations":{},"modelId":"dtmi:",`+
		`"desired":{"values":{},"version":1,"metadata":{"t":"2026-12-06T12:00:00.0000000Z","v":1,"c":{"":{"t":"2026-12-06T12:00:00.0000000Z","v":1}}}},`+
		`"reported":{"values":{},"version":1,"metadata":{"t":"2026-12-06T12:00:00.0000000Z","c":{"":{"t":"2026-12-06T12:00:00.0000000Z"}}}},`+
		`"desired":{"values":null,"version":0,"metadata":null},"reported":{"values":null,"version":0,"metadata":null}}}`+
		`{"device":{"deviceId":"","generationId":"","etag":"","connectionState":"Disconnected","status":"enabled",`+
		`"connectionStateUpdatedTime":"2026-12-06T12:00:00.0000000Z","statusUpdatedTime":"2026-12-06T12:00:00.0000000Z",`+
		`"lastActivityTime":"2026-12-06T12:00:00.0000000Z","cloudToDeviceMessageCount":0,`+
		`"authentication":{"type":"sas","symmetricKey":{"primaryKey":"","secondaryKey":""}}},"identityVersion":1,"twin":{"version":1,"tags":{`),
	[]byte(`{"device":{"deviceId":"`))

// maxRecordBytes bounds the JSON a stored record may unpack to: far
// above what the twin limits let a record grow to, and a stop for a
// corrupt length that would have a read allocate gigabytes.
const maxRecordBytes = 16 << 20

// packRecord is the stored form of a record's JSON, in dst's memory when
// it has room.
func packRecord(dst, data []byte) []byte {
	need := 1 + s2.MaxEncodedLen(len(data))
	if cap(dst) < need {
		dst = make([]byte, need)
	}
	dst = dst[:need]
	dst[0] = recordS2Dict1
	block := recordDict1.Encode(dst[1:], data) // in place: dst[1:] has room
	return dst[:1+len(block)]
}

// errRecordFormat: a stored record in no format this version reads.
var errRecordFormat = errors.New("stored record in an unknown format")

// unpackRecord is the JSON of a stored record, in either format.
func unpackRecord(stored []byte) ([]byte, error) {
	if len(stored) == 0 || stored[0] == '{' {
		return stored, nil
	}
	switch stored[0] {
	case recordS2Dict1:
		n, err := s2.DecodedLen(stored[1:])
		if err != nil {
			return nil, fmt.Errorf("stored record: %w", err)
		}
		if n > maxRecordBytes {
			return nil, fmt.Errorf("stored record: %d bytes unpacked, above %d", n, maxRecordBytes)
		}
		data, err := recordDict1.Decode(nil, stored[1:])
		if err != nil {
			return nil, fmt.Errorf("stored record: %w", err)
		}
		return data, nil
	}
	return nil, fmt.Errorf("%w (first byte %#x: written by a newer twinhub?)", errRecordFormat, stored[0])
}
