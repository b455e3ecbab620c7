package wire

import (
	"strings"
	"testing"
)

// BenchmarkDecodeMessage decodes the telemetry message of `twinhub bench
// telemetry-amqp` (content type and encoding, one application property,
// a 256-byte data body): the hub decodes one for every device message.
func BenchmarkDecodeMessage(b *testing.B) {
	body := []byte(`{"temp":21.5,"pad":"` + strings.Repeat("x", 234) + `"}`)
	enc, err := AppendMessage(nil, Message{
		Properties:            Properties{ContentType: "application/json", ContentEncoding: "utf-8"},
		ApplicationProperties: Map{{Key: "bench", Value: "1"}},
		Data:                  body,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeMessage(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeTransfer decodes the transfer performative that carries
// each such message (its payload left to the link).
func BenchmarkDecodeTransfer(b *testing.B) {
	id := uint32(7)
	settled := false
	body, err := AppendPerformative(nil, CodeTransfer, Transfer{Handle: 1, DeliveryID: &id, DeliveryTag: []byte{0, 0, 0, 7}, Settled: &settled}.List(), make([]byte, 330))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodePerformative(body); err != nil {
			b.Fatal(err)
		}
	}
}
