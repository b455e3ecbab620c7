package mqtt

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/twinhub/twinhub"
)

// IoT Hub is not a general broker: a device may publish to a handful of
// topic shapes and subscribe to a handful of filters, all of them about
// itself. This file turns topic names into those shapes, and refuses
// everything else.

// TopicKind is what a device's PUBLISH asks of the hub.
type TopicKind uint8

const (
	TopicInvalid           TopicKind = iota
	TopicTwinGet                     // $iothub/twin/GET/?$rid=<rid>
	TopicTwinPatchReported           // $iothub/twin/PATCH/properties/reported/?$rid=<rid>
	TopicMethodResponse              // $iothub/methods/res/<status>/?$rid=<rid>
	TopicTelemetry                   // devices/<d>[/modules/<m>]/messages/events/<property bag>
)

func (k TopicKind) String() string {
	switch k {
	case TopicTwinGet:
		return "twin GET"
	case TopicTwinPatchReported:
		return "reported PATCH"
	case TopicMethodResponse:
		return "method response"
	case TopicTelemetry:
		return "telemetry"
	}
	return "invalid"
}

// Topic is a parsed PUBLISH topic.
type Topic struct {
	Kind TopicKind
	// RequestID is $rid exactly as the device wrote it (still URL-encoded):
	// replies echo it verbatim, which is what every SDK matches on (the Go
	// SDK parses it as hex, Node compares strings).
	RequestID string
	// Status is the status code of a method response.
	Status int
	// DeviceID and ModuleID name the identity a telemetry topic is about;
	// the caller checks that it is the connection's own.
	DeviceID, ModuleID string
	// Properties is the decoded property bag of a telemetry topic, or the
	// other query parameters of a twin or method topic, in topic order.
	Properties []Property
}

// Property is one key=value pair of a property bag, URL-decoded.
type Property struct {
	Key, Value string
}

// ErrTopic is wrapped by every error of ParseTopic, ParseFilter and
// ParsePropertyBag: the topic is not one a device may use.
var ErrTopic = errors.New("topic not allowed")

// MaxProperties bounds the pairs of a property bag; IoT Hub allows 81
// application properties a message, and system properties come on top.
const MaxProperties = 128

const (
	twinGetPrefix         = "$iothub/twin/GET/"
	twinPatchPrefix       = "$iothub/twin/PATCH/properties/reported/"
	methodResponsePrefix  = "$iothub/methods/res/"
	twinResponsePrefix    = "$iothub/twin/res/"
	desiredPrefix         = "$iothub/twin/PATCH/properties/desired/"
	methodRequestPrefix   = "$iothub/methods/POST/"
	devicesPrefix         = "devices/"
	eventsSegment         = "messages/events"
	deviceboundSegment    = "messages/devicebound"
	inputsSegment         = "inputs"
	requestIDParam        = "$rid"
	versionParam          = "$version"
	maxRequestIDLength    = 128
	minStatus, maxStatus  = 100, 999
	topicErrorQuoteLength = 64
)

func topicError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrTopic}, args...)...)
}

func quote(s string) string {
	if len(s) > topicErrorQuoteLength {
		s = s[:topicErrorQuoteLength] + "..."
	}
	return strconv.Quote(s)
}

// ParseTopic parses the topic of a PUBLISH from a device. It checks the
// shape only; whether a telemetry topic names the publisher is the
// caller's check (see Topic.BelongsTo).
func ParseTopic(topic string) (Topic, error) {
	switch {
	case strings.HasPrefix(topic, "$iothub/"):
		return parseIoTHubTopic(topic)
	case strings.HasPrefix(topic, devicesPrefix):
		return parseTelemetryTopic(topic)
	}
	return Topic{}, topicError("%s is not an IoT Hub topic", quote(topic))
}

func parseIoTHubTopic(topic string) (Topic, error) {
	var t Topic
	var rest string
	switch {
	case strings.HasPrefix(topic, twinGetPrefix):
		t.Kind, rest = TopicTwinGet, topic[len(twinGetPrefix):]
	case strings.HasPrefix(topic, twinPatchPrefix):
		t.Kind, rest = TopicTwinPatchReported, topic[len(twinPatchPrefix):]
	case strings.HasPrefix(topic, methodResponsePrefix):
		t.Kind, rest = TopicMethodResponse, topic[len(methodResponsePrefix):]
		status, after, ok := strings.Cut(rest, "/")
		if !ok {
			return Topic{}, topicError("method response %s has no status", quote(topic))
		}
		n, err := strconv.Atoi(status)
		if err != nil || n < minStatus || n > maxStatus || status[0] == '+' {
			return Topic{}, topicError("method response status %s is not a number from %d to %d", quote(status), minStatus, maxStatus)
		}
		t.Status, rest = n, after
	default:
		return Topic{}, topicError("%s is not a topic a device may publish to", quote(topic))
	}
	query, ok := strings.CutPrefix(rest, "?")
	if !ok {
		return Topic{}, topicError("%s lacks the query with %s", quote(topic), requestIDParam)
	}
	for pair := range strings.SplitSeq(query, "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if k == requestIDParam {
			if t.RequestID != "" {
				return Topic{}, topicError("%s appears twice in %s", requestIDParam, quote(topic))
			}
			// Replies carry it in a topic name, where # and + may not appear.
			if v == "" || len(v) > maxRequestIDLength || strings.ContainsAny(v, "#+") {
				return Topic{}, topicError("%s %s is empty, longer than %d bytes or holds # or +", requestIDParam, quote(v), maxRequestIDLength)
			}
			t.RequestID = v
			continue
		}
		p, err := decodePair(k, v)
		if err != nil {
			return Topic{}, err
		}
		if len(t.Properties) == MaxProperties {
			return Topic{}, topicError("more than %d parameters", MaxProperties)
		}
		t.Properties = append(t.Properties, p)
	}
	if t.RequestID == "" {
		return Topic{}, topicError("%s lacks %s", quote(topic), requestIDParam)
	}
	return t, nil
}

// parseTelemetryTopic reads devices/<d>/messages/events/<bag> and
// devices/<d>/modules/<m>/messages/events/<bag>. Device and module ids
// appear unencoded, as both the Node and the Go SDK write them; neither may
// contain '/'. The bag may be empty, and module output events end in an
// extra '/' (the Node SDK's sendOutputEvent).
func parseTelemetryTopic(topic string) (Topic, error) {
	rest := topic[len(devicesPrefix):]
	dev, rest, ok := strings.Cut(rest, "/")
	if !ok || dev == "" {
		return Topic{}, topicError("%s names no device", quote(topic))
	}
	t := Topic{Kind: TopicTelemetry, DeviceID: dev}
	if after, ok := strings.CutPrefix(rest, "modules/"); ok {
		mod, after2, ok := strings.Cut(after, "/")
		if !ok || mod == "" {
			return Topic{}, topicError("%s names no module", quote(topic))
		}
		t.ModuleID, rest = mod, after2
	}
	bag, ok := strings.CutPrefix(rest, eventsSegment)
	if !ok || (bag != "" && bag[0] != '/') {
		return Topic{}, topicError("%s is not a telemetry topic", quote(topic))
	}
	bag = strings.TrimPrefix(bag, "/")
	bag = strings.TrimSuffix(bag, "/")
	if strings.Contains(bag, "/") {
		return Topic{}, topicError("the property bag of %s contains '/'", quote(topic))
	}
	props, err := ParsePropertyBag(bag)
	if err != nil {
		return Topic{}, err
	}
	t.Properties = props
	return t, nil
}

// BelongsTo reports whether a telemetry topic is about identity k.
func (t Topic) BelongsTo(k twinhub.Key) bool {
	return t.DeviceID == k.DeviceID && t.ModuleID == k.ModuleID
}

// Property returns the value of the first pair with key, if any.
func (t Topic) Property(key string) (string, bool) {
	for _, p := range t.Properties {
		if p.Key == key {
			return p.Value, true
		}
	}
	return "", false
}

// ParsePropertyBag decodes a property bag, "k1=v1&k2=v2", as the SDKs
// write it: keys and values URL-encoded (Node writes '$' as %24, Go module
// events a space as '+', which both decode with query rules; a literal '+'
// always arrives as %2B). A pair without '=' has an empty value. Empty
// pairs ("a=1&&b=2") are skipped.
func ParsePropertyBag(bag string) ([]Property, error) {
	if bag == "" {
		return nil, nil
	}
	var props []Property
	for pair := range strings.SplitSeq(bag, "&") {
		if pair == "" {
			continue
		}
		if len(props) == MaxProperties {
			return nil, topicError("property bag has more than %d pairs", MaxProperties)
		}
		k, v, _ := strings.Cut(pair, "=")
		p, err := decodePair(k, v)
		if err != nil {
			return nil, err
		}
		props = append(props, p)
	}
	return props, nil
}

func decodePair(k, v string) (Property, error) {
	key, err := url.QueryUnescape(k)
	if err != nil {
		return Property{}, topicError("property name %s is not URL-encoded correctly", quote(k))
	}
	if key == "" {
		return Property{}, topicError("empty property name")
	}
	value, err := url.QueryUnescape(v)
	if err != nil {
		return Property{}, topicError("value of property %s is not URL-encoded correctly", quote(key))
	}
	return Property{Key: key, Value: value}, nil
}

// EncodePropertyBag writes props as a property bag that both SDKs read
// back: keys and values percent-encoded with spaces as %20.
func EncodePropertyBag(props []Property) string {
	var b strings.Builder
	for i, p := range props {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(strings.ReplaceAll(url.QueryEscape(p.Key), "+", "%20"))
		b.WriteByte('=')
		b.WriteString(strings.ReplaceAll(url.QueryEscape(p.Value), "+", "%20"))
	}
	return b.String()
}

// Filter is a topic filter a device may subscribe to.
type Filter uint8

const (
	FilterInvalid       Filter = iota
	FilterTwinResponses        // $iothub/twin/res/#
	FilterDesired              // $iothub/twin/PATCH/properties/desired/#
	FilterMethods              // $iothub/methods/POST/#
	FilterC2D                  // devices/<own id>/messages/devicebound/# (modules: devices/<d>/modules/<m>/messages/devicebound/#)
	FilterModuleInputs         // devices/<d>/modules/<m>/inputs/#
	numFilters
)

func (f Filter) String() string {
	switch f {
	case FilterTwinResponses:
		return "twin responses"
	case FilterDesired:
		return "desired properties"
	case FilterMethods:
		return "direct methods"
	case FilterC2D:
		return "cloud-to-device messages"
	case FilterModuleInputs:
		return "module inputs"
	}
	return "invalid"
}

// ParseFilter checks a SUBSCRIBE topic filter from identity k. Only the
// filters of the IoT Hub topic set are allowed, each exactly as the SDKs
// write it, and only about k itself.
func ParseFilter(filter string, k twinhub.Key) (Filter, error) {
	switch filter {
	case twinResponsePrefix + "#":
		return FilterTwinResponses, nil
	case desiredPrefix + "#":
		return FilterDesired, nil
	case methodRequestPrefix + "#":
		return FilterMethods, nil
	}
	own := devicesPrefix + k.DeviceID + "/"
	if k.ModuleID != "" {
		own += "modules/" + k.ModuleID + "/"
	}
	switch {
	case filter == own+deviceboundSegment+"/#":
		// The Go SDK's module transport subscribes to module-scoped
		// cloud-to-device messages: allowed, though IoT Hub sends none.
		return FilterC2D, nil
	case k.ModuleID != "" && filter == own+inputsSegment+"/#":
		return FilterModuleInputs, nil
	}
	return FilterInvalid, topicError("%s is not a filter identity %s may subscribe to", quote(filter), quote(k.String()))
}

// Topics the hub publishes to devices.

// TwinResponseTopic is $iothub/twin/res/<status>/?$rid=<rid>[&$version=<v>].
func TwinResponseTopic(status int, rid string, version int64) string {
	s := twinResponsePrefix + strconv.Itoa(status) + "/?" + requestIDParam + "=" + rid
	if version > 0 {
		s += "&" + versionParam + "=" + strconv.FormatInt(version, 10)
	}
	return s
}

// DesiredTopic is $iothub/twin/PATCH/properties/desired/?$version=<v>.
func DesiredTopic(version int64) string {
	return desiredPrefix + "?" + versionParam + "=" + strconv.FormatInt(version, 10)
}
