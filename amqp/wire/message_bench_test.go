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
// each such message (its payload left to the link): as the hub does
// (DecodeTransfer), and through Value's tree (DecodePerformative, then
// ParseTransfer), as other performatives are.
func BenchmarkDecodeTransfer(b *testing.B) {
	id := uint32(70000)
	settled := false
	body, err := AppendPerformative(nil, CodeTransfer, Transfer{Handle: 1, DeliveryID: &id, DeliveryTag: []byte{0, 1, 0x11, 0x70}, Settled: &settled}.List(), make([]byte, 330))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("typed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok, err := DecodeTransfer(body); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("tree", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p, err := DecodePerformative(body)
			if err == nil {
				_, err = ParseTransfer(p)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEncodeDisposition encodes the frame that settles each such
// message, the receiver's accepted disposition of one delivery: as the
// hub does (direct), and through the performative's List (list).
func BenchmarkEncodeDisposition(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			d := Disposition{Role: RoleReceiver, First: uint32(1000 + i), Settled: true, State: Accepted}
			var err error
			if buf, err = AppendDispositionFrame(buf[:0], 1, d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("list", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			d := Disposition{Role: RoleReceiver, First: uint32(1000 + i), Settled: true, State: State(CodeAccepted)}
			var err error
			if buf, err = AppendPerformativeFrame(buf[:0], FrameAMQP, 1, CodeDisposition, d.List(), nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
