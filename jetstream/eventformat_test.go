package jetstream

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/twinhub/twinhub"
)

// fullEvent has every field eventFormat1 stores set, with property
// names and values that headers could not hold as they are.
func fullEvent() *twinhub.Event {
	return &twinhub.Event{
		Identity: twinhub.ModuleKey("d 1", "m.1"), AuthMethod: "selfSigned", AuthGenerationID: "638",
		MessageID: "mid", CorrelationID: "cid", ContentType: "application/json", ContentEncoding: "utf-8",
		UserID: "user", To: "/devices/d/messages/events",
		Properties: []twinhub.Property{{Key: "z", Value: "last sent first"}, {Key: "a b:%", Value: "1\r\n2"},
			{Key: "content-type", Value: "an application property"}, {Key: "é", Value: ""}, {Key: "z", Value: "again"}},
		Body:     []byte(`{"temperature":21.5}`),
		Enqueued: twinhub.Time{Time: time.Date(2026, 12, 6, 15, 4, 5, 123456700, time.UTC)},
	}
}

// storedFields is what eventFormat1 keeps of an event: all but the
// identity (the subject's), the retransmit key (the duplicate
// detection's) and the read position.
func storedFields(e *twinhub.Event) twinhub.Event {
	c := *e
	c.Identity, c.Retransmit, c.Sequence, c.Partition = twinhub.Key{}, "", 0, 0
	if len(c.Properties) == 0 {
		c.Properties = nil
	}
	if len(c.Body) == 0 {
		c.Body = nil
	}
	return c
}

func TestEventFormatRoundTrip(t *testing.T) {
	for _, e := range []*twinhub.Event{fullEvent(), {Identity: twinhub.DeviceKey("d")}, {Body: []byte{eventFormat1, 0}}} {
		data := appendEvent(nil, e)
		var back twinhub.Event
		if err := parseEvent(data, &back); err != nil {
			t.Fatalf("%+v: %v", e, err)
		}
		if want := storedFields(e); !reflect.DeepEqual(storedFields(&back), want) {
			t.Errorf("read back %+v\nwant %+v", back, want)
		}
	}
}

func TestEventFormatRefusesCorruptData(t *testing.T) {
	good := appendEvent(nil, fullEvent())
	for name, data := range map[string][]byte{
		"empty":                    nil,
		"a newer format":           append([]byte{0x02}, good[1:]...),
		"cut in the strings":       good[:12],
		"a string past the end":    {eventFormat1, 0, 0xff, 0x7f},
		"too many properties":      {eventFormat1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"a varint that never ends": {eventFormat1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80},
	} {
		var e twinhub.Event
		if err := parseEvent(data, &e); !errors.Is(err, errEventFormat) {
			t.Errorf("%s: %v, want errEventFormat", name, err)
		}
	}
}

// TestTelemetryReadsBothFormats: an event stored in headers, as before
// eventFormat1, reads as it did; one in a format this twinhub does not
// know is skipped, and the events after it are read.
func TestTelemetryReadsBothFormats(t *testing.T) {
	ctx := context.Background()
	tel := openTestTelemetry(t, 1)
	k := twinhub.DeviceKey("d")
	old := &nats.Msg{Subject: tel.Subject(k), Data: []byte("old"), Header: nats.Header{
		HeaderDeviceID: {"d"}, HeaderEnqueuedTime: {"2026-12-06T15:04:05.1234567Z"}, HeaderMessageID: {"m-old"},
		HeaderAuthMethod: {twinhub.AuthMethodJSON(k, "sas")}, "site": {"a"},
	}}
	if _, err := tel.js.PublishMsg(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := tel.js.PublishMsg(ctx, &nats.Msg{Subject: tel.Subject(k), Data: []byte{0x7f, 'x'}}); err != nil {
		t.Fatal(err)
	}
	ev := fullEvent()
	ev.Identity = k
	if err := tel.Append(ctx, ev); err != nil {
		t.Fatal(err)
	}
	got := readN(t, tel, twinhub.EventFilter{Group: "g", FromStart: true}, 2)
	if g := got[0]; string(g.Body) != "old" || g.MessageID != "m-old" || g.AuthMethod != "sas" ||
		g.Enqueued.String() != "2026-12-06T15:04:05.1234567Z" || !slices.Equal(g.Properties, []twinhub.Property{{Key: "site", Value: "a"}}) {
		t.Errorf("the event stored in headers read as %+v", g)
	}
	if g := got[1]; g.Identity != k || g.Sequence != 3 || !reflect.DeepEqual(storedFields(g), storedFields(ev)) {
		t.Errorf("the event read as %+v\nwant %+v", g, ev)
	}
}

// FuzzParseEvent: no data makes parseEvent panic or allocate beyond its
// size, an event it reads is written back as it was read, and any event
// built of the fuzzed strings reads back as it was.
func FuzzParseEvent(f *testing.F) {
	f.Add(appendEvent(nil, fullEvent()), "k", "v", []byte("body"))
	f.Add([]byte{eventFormat1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 'a', 0}, "", "", []byte{})
	f.Add([]byte{eventFormat1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "a b:%", "1\r\n2", []byte{eventFormat1})
	f.Fuzz(func(t *testing.T, data []byte, key, value string, body []byte) {
		var e twinhub.Event
		if err := parseEvent(data, &e); err == nil {
			again := appendEvent(nil, &e)
			var back twinhub.Event
			if err := parseEvent(again, &back); err != nil || !reflect.DeepEqual(storedFields(&back), storedFields(&e)) {
				t.Fatalf("%x read as %+v, written as %x, read back as %+v (%v)", data, e, again, back, err)
			}
		}
		built := &twinhub.Event{MessageID: key, To: value, Properties: []twinhub.Property{{Key: key, Value: value}, {Key: value, Value: key}}, Body: body}
		var back twinhub.Event
		if err := parseEvent(appendEvent(nil, built), &back); err != nil || !reflect.DeepEqual(storedFields(&back), storedFields(built)) {
			t.Fatalf("%+v read back as %+v (%v)", built, back, err)
		}
		if !bytes.Equal(back.Body, body) {
			t.Fatalf("body %q read back as %q", body, back.Body)
		}
	})
}
