package mqtt

import (
	"errors"
	"reflect"
	"testing"

	"github.com/twinhub/twinhub"
)

func TestParseTopic(t *testing.T) {
	tests := []struct {
		topic string
		want  Topic // Kind TopicInvalid: an error is expected
	}{
		// Twin requests as the SDKs send them: Node a uuid, Go hex.
		{"$iothub/twin/GET/?$rid=6f1c4b6e-8d1f-4a4e-9e0e-7c1b8b7f3f10", Topic{Kind: TopicTwinGet, RequestID: "6f1c4b6e-8d1f-4a4e-9e0e-7c1b8b7f3f10"}},
		{"$iothub/twin/GET/?$rid=1f", Topic{Kind: TopicTwinGet, RequestID: "1f"}},
		{"$iothub/twin/PATCH/properties/reported/?$rid=2", Topic{Kind: TopicTwinPatchReported, RequestID: "2"}},
		{"$iothub/twin/PATCH/properties/reported/?$rid=2&$version=5", Topic{Kind: TopicTwinPatchReported, RequestID: "2", Properties: []Property{{"$version", "5"}}}},
		{"$iothub/twin/GET/?x=1&$rid=a%20b", Topic{Kind: TopicTwinGet, RequestID: "a%20b", Properties: []Property{{"x", "1"}}}},
		{"$iothub/methods/res/200/?$rid=7", Topic{Kind: TopicMethodResponse, RequestID: "7", Status: 200}},
		{"$iothub/methods/res/504/?$rid=abc", Topic{Kind: TopicMethodResponse, RequestID: "abc", Status: 504}},
		// Telemetry: Node encodes '$' as %24, Go module events spaces as '+'.
		{"devices/dev1/messages/events/", Topic{Kind: TopicTelemetry, DeviceID: "dev1"}},
		{"devices/dev1/messages/events", Topic{Kind: TopicTelemetry, DeviceID: "dev1"}},
		{"devices/dev1/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8&temp=high",
			Topic{Kind: TopicTelemetry, DeviceID: "dev1", Properties: []Property{{"$.ct", "application/json"}, {"$.ce", "utf-8"}, {"temp", "high"}}}},
		{"devices/d/modules/m/messages/events/a=b+c&%24.on=out1/",
			Topic{Kind: TopicTelemetry, DeviceID: "d", ModuleID: "m", Properties: []Property{{"a", "b c"}, {"$.on", "out1"}}}},
		{"devices/d/messages/events/k%2Bk=v%2Bv&flag", Topic{Kind: TopicTelemetry, DeviceID: "d", Properties: []Property{{"k+k", "v+v"}, {"flag", ""}}}},
		{"devices/a=b$c/messages/events/", Topic{Kind: TopicTelemetry, DeviceID: "a=b$c"}},

		// Refused.
		{"", Topic{}},
		{"hello", Topic{}},
		{"$iothub/twin/GET/", Topic{}},
		{"$iothub/twin/GET/?", Topic{}},
		{"$iothub/twin/GET/?$rid=", Topic{}},
		{"$iothub/twin/GET/?$rid=1&$rid=2", Topic{}},
		{"$iothub/twin/GET?$rid=1", Topic{}},
		{"$iothub/twin/PATCH/properties/desired/?$rid=1", Topic{}},
		{"$iothub/twin/res/200/?$rid=1", Topic{}},
		{"$iothub/methods/POST/m/?$rid=1", Topic{}},
		{"$iothub/methods/res/abc/?$rid=1", Topic{}},
		{"$iothub/methods/res/99/?$rid=1", Topic{}},
		{"$iothub/methods/res/+200/?$rid=1", Topic{}},
		{"$iothub/methods/res/200?$rid=1", Topic{}},
		{"devices//messages/events/", Topic{}},
		{"devices/d", Topic{}},
		{"devices/d/messages/devicebound/", Topic{}},
		{"devices/d/messages/eventsX", Topic{}},
		{"devices/d/modules//messages/events/", Topic{}},
		{"devices/d/messages/events/a=1/b=2", Topic{}},
		{"devices/d/messages/events/a=%zz", Topic{}},
		{"devices/d/messages/events/=v", Topic{}},
	}
	for _, tc := range tests {
		got, err := ParseTopic(tc.topic)
		if tc.want.Kind == TopicInvalid {
			if err == nil {
				t.Errorf("ParseTopic(%q) = %+v, want an error", tc.topic, got)
			} else if !errors.Is(err, ErrTopic) {
				t.Errorf("ParseTopic(%q) error %v does not wrap ErrTopic", tc.topic, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseTopic(%q): %v", tc.topic, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseTopic(%q) =\n %+v, want\n %+v", tc.topic, got, tc.want)
		}
	}
}

func TestParseFilter(t *testing.T) {
	dev := twinhub.DeviceKey("dev1")
	mod := twinhub.ModuleKey("dev1", "m1")
	tests := []struct {
		filter string
		k      twinhub.Key
		want   Filter
	}{
		{"$iothub/twin/res/#", dev, FilterTwinResponses},
		{"$iothub/twin/PATCH/properties/desired/#", dev, FilterDesired},
		{"$iothub/methods/POST/#", dev, FilterMethods},
		{"devices/dev1/messages/devicebound/#", dev, FilterC2D},
		{"devices/dev1/modules/m1/messages/devicebound/#", mod, FilterC2D},
		{"devices/dev1/modules/m1/inputs/#", mod, FilterModuleInputs},
		{"$iothub/methods/POST/#", mod, FilterMethods},

		{"devices/dev2/messages/devicebound/#", dev, FilterInvalid},
		{"devices/dev1/messages/devicebound/#", mod, FilterInvalid},
		{"devices/dev1/modules/m1/inputs/#", dev, FilterInvalid},
		{"devices/dev1/modules/m2/inputs/#", mod, FilterInvalid},
		{"devices/+/messages/devicebound/#", dev, FilterInvalid},
		{"devices/dev1/messages/devicebound/+", dev, FilterInvalid},
		{"devices/dev1/messages/events/#", dev, FilterInvalid},
		{"$iothub/twin/#", dev, FilterInvalid},
		{"$iothub/#", dev, FilterInvalid},
		{"#", dev, FilterInvalid},
		{"+/+", dev, FilterInvalid},
		{"$iothub/twin/res/200", dev, FilterInvalid},
		{"", dev, FilterInvalid},
	}
	for _, tc := range tests {
		got, err := ParseFilter(tc.filter, tc.k)
		if got != tc.want || (err == nil) != (tc.want != FilterInvalid) {
			t.Errorf("ParseFilter(%q, %s) = %v, %v; want %v", tc.filter, tc.k, got, err, tc.want)
		}
	}
}

func TestPropertyBagRoundTrip(t *testing.T) {
	props := []Property{{"$.mid", "id 1"}, {"a&b", "c=d"}, {"plus", "1+1"}, {"slash", "x/y"}, {"unicode", "größe"}, {"empty", ""}}
	bag := EncodePropertyBag(props)
	got, err := ParsePropertyBag(bag)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, props) {
		t.Errorf("round trip through %q gave %v", bag, got)
	}
	for _, c := range []string{"/", "+", " "} {
		if containsAny(bag, c) {
			t.Errorf("encoded bag %q holds %q", bag, c)
		}
	}
}

func containsAny(s, chars string) bool {
	for i := range len(s) {
		for j := range len(chars) {
			if s[i] == chars[j] {
				return true
			}
		}
	}
	return false
}

func TestTooManyProperties(t *testing.T) {
	bag := ""
	for i := range MaxProperties + 1 {
		if i > 0 {
			bag += "&"
		}
		bag += "k=v"
	}
	if _, err := ParsePropertyBag(bag); err == nil {
		t.Errorf("a bag of %d pairs was accepted", MaxProperties+1)
	}
}

func TestReplyTopics(t *testing.T) {
	if got := TwinResponseTopic(200, "abc", 0); got != "$iothub/twin/res/200/?$rid=abc" {
		t.Error(got)
	}
	if got := TwinResponseTopic(204, "1f", 7); got != "$iothub/twin/res/204/?$rid=1f&$version=7" {
		t.Error(got)
	}
	if got := DesiredTopic(12); got != "$iothub/twin/PATCH/properties/desired/?$version=12" {
		t.Error(got)
	}
}

func TestCheckUsername(t *testing.T) {
	tests := []struct {
		user, client string
		ok           bool
	}{
		{"hub.example/dev1/?api-version=2021-04-12&DeviceClientType=azure-iot-device%2F1.18.4", "dev1", true},
		{"HUB.example/dev1/?api-version=2021-04-12", "dev1", true},
		{"hub.example/dev1/api-version=2020-09-30", "dev1", true},
		{"hub.example/dev1/api-version=2020-09-30&model-id=dtmi%3Acom%3Aexample%3B1", "dev1", true},
		{"hub.example/dev1/m1/?api-version=2018-06-30", "dev1/m1", true},
		{"hub.example/dev1", "dev1", true},
		{"hub.example/dev1/", "dev1", true},
		{"hub.example/dev1?api-version=2021-04-12", "dev1", true},
		{"hub.example/a=b/api-version=2020-09-30", "a=b", true},

		{"other.example/dev1/?api-version=2021-04-12", "dev1", false},
		{"hub.example/dev2/?api-version=2021-04-12", "dev1", false},
		{"hub.example/dev1x/?api-version=2021-04-12", "dev1", false},
		{"hub.example/dev1/m1/?api-version=2021-04-12", "dev1", false},
		{"hub.example/dev1/?api-version=2021-04-12", "dev1/m1", false},
		{"hub.example/dev1/m=1/?api-version=2021-04-12", "dev1", false},
		{"hub.example", "dev1", false},
		{"", "dev1", false},
		{"dev1", "dev1", false},
	}
	for _, tc := range tests {
		err := checkUsername(tc.user, "hub.example", tc.client)
		if (err == nil) != tc.ok {
			t.Errorf("checkUsername(%q, client %q) = %v, want ok=%v", tc.user, tc.client, err, tc.ok)
		}
	}
}

func TestParseClientID(t *testing.T) {
	tests := []struct {
		id   string
		want twinhub.Key
		ok   bool
	}{
		{"dev1", twinhub.DeviceKey("dev1"), true},
		{"dev1/m1", twinhub.ModuleKey("dev1", "m1"), true},
		{"a-b.c+d%e_f#g*h?i!j(k)l,m:n=o@p$q'r", twinhub.DeviceKey("a-b.c+d%e_f#g*h?i!j(k)l,m:n=o@p$q'r"), true},
		{"", twinhub.Key{}, false},
		{"dev 1", twinhub.Key{}, false},
		{"dev1/", twinhub.Key{}, false},
		{"/m1", twinhub.Key{}, false},
		{"a/b/c", twinhub.Key{}, false},
		{"größe", twinhub.Key{}, false},
	}
	for _, tc := range tests {
		got, err := parseClientID(tc.id)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("parseClientID(%q) = %v, %v; want %v ok=%v", tc.id, got, err, tc.want, tc.ok)
		}
	}
}
