package wire

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

// roundTrip writes a performative as a frame body and parses it back.
func roundTrip(t *testing.T, code uint64, l List) any {
	t.Helper()
	body, err := AppendPerformative(nil, code, l, []byte("payload"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := DecodePerformative(body)
	if err != nil {
		t.Fatal(err)
	}
	v, err := Parse(p)
	if err != nil {
		t.Fatalf("%#x: %v", code, err)
	}
	return v
}

// TestPerformatives: each performative the hub writes reads back as it
// was, with the spec's defaults for what it leaves out.
func TestPerformatives(t *testing.T) {
	open := Open{ContainerID: "twinhub", Hostname: "hub.example", MaxFrameSize: 65536, ChannelMax: 4999,
		IdleTimeout: 240 * time.Second, OfferedCapabilities: []Symbol{"ANONYMOUS-RELAY"}, Properties: Map{{Symbol("product"), "twinhub"}}}
	begin := Begin{RemoteChannel: ptr(uint16(3)), NextOutgoingID: 1, IncomingWindow: 5000, OutgoingWindow: 5000, HandleMax: 255}
	attach := Attach{Name: "cbs-sender", Handle: 7, Role: RoleReceiver, SndSettleMode: 2, RcvSettleMode: 0,
		Source: &Terminus{Address: "/messages/events/ConsumerGroups/$Default/Partitions/0",
			Filter: Map{{Symbol("apache.org:selector-filter:string"), Described{Symbol("apache.org:selector-filter:string"), "amqp.annotation.x-opt-offset > '-1'"}}}},
		Target: &Terminus{Address: "$cbs"}, MaxMessageSize: 262144,
		OfferedCapabilities: []Symbol{"com.microsoft:enable-receiver-runtime-metric"}, DesiredCapabilities: []Symbol{"a", "b"}}
	senderAttach := Attach{Name: "c2d", Handle: 1, Role: RoleSender, SndSettleMode: 0, RcvSettleMode: 0, InitialDeliveryCount: 9}
	flow := Flow{NextIncomingID: ptr(uint32(0)), IncomingWindow: 5000, NextOutgoingID: 1, OutgoingWindow: 5000,
		Handle: ptr(uint32(7)), DeliveryCount: ptr(uint32(0)), LinkCredit: ptr(uint32(100)), Drain: true}
	transfer := Transfer{Handle: 7, DeliveryID: ptr(uint32(12)), DeliveryTag: []byte{1, 2}, MessageFormat: ptr(uint32(0)),
		Settled: ptr(false), More: true, Payload: []byte("payload")}
	disposition := Disposition{Role: RoleReceiver, First: 3, Last: ptr(uint32(5)), Settled: true, State: State(CodeAccepted)}
	detach := Detach{Handle: 7, Closed: true, Error: &Error{Condition: "amqp:link:redirect", Description: "use the Event Hubs endpoint",
		Info: Map{{Symbol("hostname"), "hub.example"}, {Symbol("port"), int32(5671)}}}}
	for _, c := range []struct {
		code uint64
		l    List
		want any
	}{
		{CodeOpen, open.List(), open},
		{CodeBegin, begin.List(), begin},
		{CodeAttach, attach.List(), attach},
		{CodeAttach, senderAttach.List(), senderAttach},
		{CodeFlow, flow.List(), flow},
		{CodeTransfer, transfer.List(), transfer},
		{CodeDisposition, disposition.List(), disposition},
		{CodeDetach, detach.List(), detach},
		{CodeClose, ErrorList(&Error{Condition: "amqp:decode-error"}), &Error{Condition: "amqp:decode-error"}},
		{CodeEnd, ErrorList(nil), (*Error)(nil)},
	} {
		if got := roundTrip(t, c.code, c.l); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%#x:\n got %#v\nwant %#v", c.code, got, c.want)
		}
	}

	// What a client may leave out takes the defaults.
	o, err := ParseOpen(Performative{Code: CodeOpen, Fields: List{"client"}})
	if err != nil || o.MaxFrameSize != 4294967295 || o.ChannelMax != 65535 || o.IdleTimeout != 0 {
		t.Errorf("open with only a container id: %+v, %v", o, err)
	}
	a, err := ParseAttach(Performative{Code: CodeAttach, Fields: List{"l", uint32(0), false}})
	if err != nil || a.SndSettleMode != 2 || a.RcvSettleMode != 0 || a.Source != nil || a.Target != nil {
		t.Errorf("attach with only the mandatory fields: %+v, %v", a, err)
	}
	if StateCode(State(CodeRejected, nil)) != CodeRejected || StateCode(Described{Symbol("amqp:released:list"), List{}}) != CodeReleased || StateCode(nil) != 0 {
		t.Error("StateCode")
	}
	s, err := ParseSASLInit(Performative{Code: CodeSASLInit, Fields: List{Symbol("PLAIN"), []byte("\x00iothubowner@sas.root.hub\x00SharedAccessSignature sr=x")}})
	if err != nil || s.Mechanism != "PLAIN" || len(s.InitialResponse) == 0 {
		t.Errorf("sasl-init %+v, %v", s, err)
	}
}

// TestPerformativeTypes: a mandatory field left out, or a field of the
// wrong type, is malformed input.
func TestPerformativeTypes(t *testing.T) {
	for name, p := range map[string]Performative{
		"open without container id": {Code: CodeOpen, Fields: List{}},
		"open max frame a string":   {Code: CodeOpen, Fields: List{"c", nil, "big"}},
		"begin without windows":     {Code: CodeBegin, Fields: List{nil, uint32(0)}},
		"attach handle a long":      {Code: CodeAttach, Fields: List{"l", int64(0), false}},
		"attach source not a list":  {Code: CodeAttach, Fields: List{"l", uint32(0), false, nil, nil, Described{uint64(CodeSource), "x"}}},
		"attach target as a source": {Code: CodeAttach, Fields: List{"l", uint32(0), false, nil, nil, Described{uint64(CodeTarget), List{}}}},
		"flow credit a string":      {Code: CodeFlow, Fields: List{nil, uint32(1), uint32(1), uint32(1), uint32(0), nil, "lots"}},
		"transfer without handle":   {Code: CodeTransfer, Fields: List{}},
		"disposition first missing": {Code: CodeDisposition, Fields: List{true}},
		"detach error not an error": {Code: CodeDetach, Fields: List{uint32(1), true, "oops"}},
		"capabilities not symbols":  {Code: CodeOpen, Fields: List{"c", nil, nil, nil, nil, nil, nil, Array{"str"}}},
		"unknown performative":      {Code: 0x99},
	} {
		if _, err := Parse(p); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// TestAppendDispositionFrame: the disposition written field by field is
// the frame of its List, byte for byte, for small and large outcomes.
func TestAppendDispositionFrame(t *testing.T) {
	long := (&Error{Condition: "amqp:not-found", Description: strings.Repeat("no such device. ", 40)}).Field()
	for _, d := range []Disposition{
		{Role: RoleReceiver, First: 0, Settled: true, State: Accepted},
		{Role: RoleReceiver, First: 255, Last: ptr(uint32(256)), Settled: true, State: State(CodeRejected, long)},
		{Role: RoleSender, First: 1 << 31, Settled: false},
		{First: 70000, Last: ptr(uint32(0)), State: State(CodeModified, true, false)},
	} {
		want, err := AppendPerformativeFrame([]byte("x"), FrameAMQP, 9, CodeDisposition, d.List(), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := AppendDispositionFrame([]byte("x"), 9, d)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%+v:\n got %x\nwant %x", d, got, want)
		}
	}
	if _, err := AppendDispositionFrame(nil, 0, Disposition{State: struct{}{}}); err == nil {
		t.Error("a state of no AMQP type encoded")
	}
}

// TestStateOf: an outcome as a Disposition's State is the outcome itself;
// the accepted one costs no allocation.
func TestStateOf(t *testing.T) {
	for _, o := range []Described{Accepted, State(CodeAccepted), State(CodeRejected, (&Error{Condition: "amqp:not-found"}).Field()), State(CodeAccepted, "a field")} {
		if got := StateOf(o); !reflect.DeepEqual(got, any(o)) {
			t.Errorf("StateOf(%v) = %v", o, got)
		}
	}
	outcome := State(CodeAccepted)
	if n := testing.AllocsPerRun(100, func() { _ = StateOf(outcome) }); n != 0 {
		t.Errorf("StateOf(accepted): %v allocations", n)
	}
}
