package mqtt

import (
	"errors"
	"strings"
	"testing"

	"github.com/twinhub/twinhub"
)

// Seeds beyond these are in testdata/fuzz/<target>/.
var topicSeeds = []string{
	"$iothub/twin/GET/?$rid=1",
	"$iothub/twin/PATCH/properties/reported/?$rid=6f1c4b6e-8d1f-4a4e-9e0e-7c1b8b7f3f10&$version=3",
	"$iothub/methods/res/200/?$rid=abc",
	"devices/dev1/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8&a=b",
	"devices/d/modules/m/messages/events/a=b+c&%24.on=out/",
	"devices/d/messages/events/a=%zz",
}

// FuzzParseTopic: ParseTopic never panics, refuses only with ErrTopic, and
// what it accepts is consistent: a request id that can go back into a
// topic name, telemetry ids without '/', a status in range.
func FuzzParseTopic(f *testing.F) {
	for _, s := range topicSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		got, err := ParseTopic(topic)
		if err != nil {
			if !errors.Is(err, ErrTopic) {
				t.Fatalf("error %v does not wrap ErrTopic", err)
			}
			return
		}
		switch got.Kind {
		case TopicTwinGet, TopicTwinPatchReported, TopicMethodResponse:
			if got.RequestID == "" || strings.ContainsAny(got.RequestID, "#+") || !strings.Contains(topic, "$rid="+got.RequestID) {
				t.Fatalf("request id %q of %q", got.RequestID, topic)
			}
			reply := TwinResponseTopic(200, got.RequestID, 1)
			if strings.ContainsAny(reply, "#+") {
				t.Fatalf("reply topic %q would hold a wildcard", reply)
			}
			if got.Kind == TopicMethodResponse && (got.Status < 100 || got.Status > 999) {
				t.Fatalf("status %d", got.Status)
			}
		case TopicTelemetry:
			if got.DeviceID == "" || strings.Contains(got.DeviceID, "/") || strings.Contains(got.ModuleID, "/") {
				t.Fatalf("ids %q/%q of %q", got.DeviceID, got.ModuleID, topic)
			}
			if !got.BelongsTo(twinhub.Key{DeviceID: got.DeviceID, ModuleID: got.ModuleID}) {
				t.Fatal("BelongsTo its own ids is false")
			}
			if len(got.Properties) > MaxProperties {
				t.Fatalf("%d properties", len(got.Properties))
			}
		default:
			t.Fatalf("accepted with kind %v", got.Kind)
		}
		for _, p := range got.Properties {
			if p.Key == "" {
				t.Fatalf("empty property name from %q", topic)
			}
		}
	})
}

// FuzzParsePropertyBag: parsing never panics, and whatever parses with
// valid UTF-8 survives EncodePropertyBag and parsing again unchanged.
func FuzzParsePropertyBag(f *testing.F) {
	for _, s := range []string{"", "a=b", "%24.mid=1&%24.cid=2&x=y%20z", "k%2Bk=v+v&flag", "a=%zz", "=v", "a&&b", "%C3%BC=%E2%82%AC"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, bag string) {
		props, err := ParsePropertyBag(bag)
		if err != nil {
			if !errors.Is(err, ErrTopic) {
				t.Fatalf("error %v does not wrap ErrTopic", err)
			}
			return
		}
		enc := EncodePropertyBag(props)
		if strings.ContainsAny(enc, "/#+ ") {
			t.Fatalf("encoding %q holds a character a topic level cannot", enc)
		}
		again, err := ParsePropertyBag(enc)
		if err != nil {
			t.Fatalf("re-parsing %q: %v", enc, err)
		}
		if len(again) != len(props) {
			t.Fatalf("%d properties became %d through %q", len(props), len(again), enc)
		}
		for i := range props {
			if props[i] != again[i] {
				t.Fatalf("%q became %q through %q", props[i], again[i], enc)
			}
		}
	})
}

// FuzzParseFilter: a filter is accepted only if it is one of the IoT Hub
// filters about the identity; in particular never a filter naming another
// device, whatever ids the fuzzer picks.
func FuzzParseFilter(f *testing.F) {
	f.Add("$iothub/twin/res/#", "dev1", "")
	f.Add("devices/dev1/messages/devicebound/#", "dev1", "")
	f.Add("devices/dev1/modules/m1/inputs/#", "dev1", "m1")
	f.Add("devices/dev2/messages/devicebound/#", "dev1", "")
	f.Add("#", "d", "")
	f.Fuzz(func(t *testing.T, filter, dev, mod string) {
		k := twinhub.Key{DeviceID: dev, ModuleID: mod}
		got, err := ParseFilter(filter, k)
		if err != nil {
			if got != FilterInvalid || !errors.Is(err, ErrTopic) {
				t.Fatalf("refusal %v with filter %v", err, got)
			}
			return
		}
		switch got {
		case FilterTwinResponses, FilterDesired, FilterMethods:
			if !strings.HasPrefix(filter, "$iothub/") {
				t.Fatalf("%q accepted as %v", filter, got)
			}
		case FilterC2D, FilterModuleInputs:
			own := "devices/" + dev + "/"
			if mod != "" {
				own += "modules/" + mod + "/"
			}
			if !strings.HasPrefix(filter, own) {
				t.Fatalf("%q accepted for %s", filter, k)
			}
		default:
			t.Fatalf("accepted as %v", got)
		}
	})
}

// FuzzCheckUsername: never panics; an accepted user name starts with the
// hub's host and names exactly the client id.
func FuzzCheckUsername(f *testing.F) {
	f.Add("hub.example/dev1/?api-version=2021-04-12", "dev1")
	f.Add("hub.example/dev1/api-version=2020-09-30", "dev1")
	f.Add("hub.example/dev1/m1/?api-version=2018-06-30", "dev1/m1")
	f.Add("hub.example/dev1/m1/?api-version=2018-06-30", "dev1")
	f.Fuzz(func(t *testing.T, user, clientID string) {
		if checkUsername(user, "hub.example", clientID) != nil {
			return
		}
		host, path, _ := strings.Cut(user, "/")
		if !strings.EqualFold(host, "hub.example") || !strings.HasPrefix(path, clientID) {
			t.Fatalf("%q accepted for client %q", user, clientID)
		}
		// What follows the client id is options, never another path level
		// (such as a module id).
		rest := path[len(clientID):]
		if seg, more, ok := strings.Cut(strings.TrimPrefix(rest, "/"), "/"); ok && strings.HasPrefix(rest, "/") && !strings.HasPrefix(seg, "?") {
			t.Fatalf("%q accepted for client %q: level %q then %q", user, clientID, seg, more)
		}
	})
}
