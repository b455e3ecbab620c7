package twinhub

import (
	"context"
	"errors"
	"time"
)

// Device-to-cloud telemetry and cloud-to-device messages. The hub checks
// limits and fills in system properties; a TelemetryStore keeps events
// (the jetstream package: a stream partitioned by device) and a C2DQueue
// keeps each device's pending messages (a stream, one subject a device).

// Limits of messages, as IoT Hub documents them.
const (
	MaxTelemetrySize  = 256 << 10
	MaxC2DSize        = 64 << 10
	MaxC2DPending     = 50
	DefaultC2DTTL     = time.Hour
	MaxC2DTTL         = 48 * time.Hour
	MaxMessageIDBytes = 128
	// MaxC2DDeliveries is how often a cloud-to-device message is
	// delivered before it is dead-lettered (IoT Hub's default
	// cloudToDevice.maxDeliveryCount): a device that abandons it, or
	// never settles it, that many times gets it no more, and its sender
	// DeliveryCountExceeded feedback.
	MaxC2DDeliveries = 10
)

// Property is an application property of a message.
type Property struct {
	Key, Value string
}

// Event is a device-to-cloud message with its system properties.
type Event struct {
	Identity   Key
	AuthMethod string // sas, selfSigned, certificateAuthority
	// AuthGenerationID is the identity's generationId when it
	// authenticated (iothub-connection-auth-generation-id).
	AuthGenerationID string
	MessageID        string
	CorrelationID    string
	ContentType      string
	ContentEncoding  string
	UserID           string
	To               string
	// Properties are the application properties, in the order sent.
	Properties []Property
	Body       []byte
	// Retransmit identifies this transmission by the device so that the
	// same one sent again, after its acknowledgement was lost with a node,
	// has the same value: MQTT's packet id ("" over other transports and
	// QoS 0). An event with a MessageID and a Retransmit that repeats an
	// event of its identity's within a short window, body included, is
	// stored once (jetstream.TelemetryDuplicateWindow).
	Retransmit string
	// Enqueued is set by the hub when it accepts the event.
	Enqueued Time
	// Sequence and Partition are set when an event is read back.
	Sequence  uint64
	Partition int
}

// AuthMethodJSON is an event's iothub-connection-auth-method as IoT Hub
// writes it, for identity k authenticated by method (sas, selfSigned,
// certificateAuthority).
func AuthMethodJSON(k Key, method string) string {
	module := k.ModuleID != ""
	switch method {
	case "", "sas":
		if module {
			return authModuleSAS
		}
		return authDeviceSAS
	}
	scope := "device"
	if module {
		scope = "module"
	}
	return `{"scope":"` + scope + `","type":"` + method + `","issuer":"iothub","acceptingIpFilterRule":null}`
}

const (
	authDeviceSAS = `{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}`
	authModuleSAS = `{"scope":"module","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}`
)

// EventFilter chooses which events a reader sees.
type EventFilter struct {
	// Group is the consumer group: readers of one group share a position,
	// which survives restarts.
	Group string
	// FromStart makes a new group begin with the oldest event kept;
	// otherwise it begins with events that arrive after it was created.
	FromStart bool
	// DeviceID and ModuleID restrict the events to one identity.
	DeviceID, ModuleID string
}

// TelemetryStore keeps device-to-cloud events.
type TelemetryStore interface {
	// Append stores an event; it returns once the event is durable.
	Append(ctx context.Context, e *Event) error
	// Read calls fn with each event of the filter, in order within a
	// partition, until ctx ends or fn fails; an event counts as read (the
	// group's position moves past it) once fn returns nil.
	Read(ctx context.Context, f EventFilter, fn func(*Event) error) error
}

// AsyncTelemetryStore is a TelemetryStore that can also store an event
// without making its caller wait.
type AsyncTelemetryStore interface {
	TelemetryStore
	// AppendAsync stores an event and calls done once: with nil once the
	// event is durable, else with the error (also after timeout). done
	// must not block; it may run on another goroutine, before or after
	// AppendAsync returns.
	AppendAsync(e *Event, timeout time.Duration, done func(error))
}

// EventPosition is where a reader of one partition starts, as Event Hubs
// readers choose it (a filter on the receive link).
type EventPosition struct {
	// Latest starts with the events that arrive after the reader.
	Latest bool
	// Sequence starts after the event of this sequence number, or with
	// it when Inclusive; 0 starts with the oldest event kept.
	Sequence  uint64
	Inclusive bool
	// After, when set, starts with the first event enqueued after it.
	After time.Time
}

// PartitionInfo describes one partition of the telemetry. Sequence
// numbers count from 1 in each partition.
type PartitionInfo struct {
	Partition int
	// FirstSequence is the oldest event kept; LastSequence and
	// LastEnqueued are the newest event's (0 and zero before any).
	FirstSequence uint64
	LastSequence  uint64
	LastEnqueued  time.Time
	Empty         bool
	// Created is when the partition was made.
	Created time.Time
}

// PartitionedTelemetryStore is a TelemetryStore whose partitions can be
// read from a position each reader chooses and keeps itself (the Event
// Hubs-compatible endpoint), besides the consumer groups whose position
// the store keeps (Read).
type PartitionedTelemetryStore interface {
	TelemetryStore
	Partitions() int
	PartitionInfo(ctx context.Context, partition int) (PartitionInfo, error)
	// ReadPartition calls fn with each event of the partition from the
	// position on, in order, until ctx ends or fn fails. Events carry
	// their sequence number and the instant the store took them
	// (Enqueued).
	ReadPartition(ctx context.Context, partition int, from EventPosition, fn func(*Event) error) error
}

// --- cloud to device ---

// Ack values of a cloud-to-device message: which outcomes produce
// feedback.
const (
	AckNone     = "none"
	AckPositive = "positive"
	AckNegative = "negative"
	AckFull     = "full"
)

// C2DMessage is a cloud-to-device message in a device's queue.
type C2DMessage struct {
	// Seq identifies the message in its queue; set by the queue.
	Seq             uint64
	MessageID       string
	CorrelationID   string
	UserID          string
	To              string
	Ack             string
	ContentType     string
	ContentEncoding string
	Expiry          Time
	Enqueued        Time
	Properties      []Property
	Body            []byte
	// Deliveries is how often the message has been delivered, this
	// delivery included (set by the hub when it hands the message to a
	// device: Hub.NextC2DDelivery).
	Deliveries int
}

// ErrQueueFull is what a C2DQueue returns for a message over the limit.
var ErrQueueFull = errors.New("queue full")

// C2DQueue keeps the pending cloud-to-device messages of every device.
type C2DQueue interface {
	// Enqueue adds a message, or returns ErrQueueFull when the device has
	// MaxC2DPending messages already. It sets m.Seq.
	Enqueue(ctx context.Context, deviceID string, m *C2DMessage) error
	// Next returns the first message of the device after sequence after
	// (0: the first), or ErrNotFound.
	Next(ctx context.Context, deviceID string, after uint64) (*C2DMessage, error)
	// Remove deletes a message (completed, rejected or expired).
	Remove(ctx context.Context, deviceID string, seq uint64) error
	// Purge deletes every message of the device and says how many.
	Purge(ctx context.Context, deviceID string) (int, error)
	// CountDelivery counts one more delivery of message seq and returns
	// how many there have been, this one included.
	CountDelivery(ctx context.Context, deviceID string, seq uint64) (int, error)
	// Pending counts the messages queued for each device that has any:
	// for deviceID, or for every device when deviceID is "".
	Pending(ctx context.Context, deviceID string) (map[string]int, error)
}

// --- feedback ---

// Feedback status codes, as IoT Hub writes them.
const (
	FeedbackSuccess               = "Success"
	FeedbackExpired               = "Expired"
	FeedbackRejected              = "Rejected"
	FeedbackDeliveryCountExceeded = "DeliveryCountExceeded"
)

// FeedbackRecord tells a back end what became of a cloud-to-device
// message that asked for feedback (ack positive, negative or full).
type FeedbackRecord struct {
	OriginalMessageID  string `json:"originalMessageId"`
	Description        string `json:"description"`
	DeviceGenerationID string `json:"deviceGenerationId"`
	DeviceID           string `json:"deviceId"`
	EnqueuedTimeUTC    Time   `json:"enqueuedTimeUtc"`
	StatusCode         string `json:"statusCode"`
}

// FeedbackStore keeps feedback records until a back end completes them.
type FeedbackStore interface {
	Add(ctx context.Context, r FeedbackRecord) error
	// Receive locks the records available now and returns them with the
	// lock token that completes or abandons them, or ErrNotFound.
	Receive(ctx context.Context) (lockToken string, records []FeedbackRecord, err error)
	Complete(ctx context.Context, lockToken string) error
	Abandon(ctx context.Context, lockToken string) error
}

// FileNotification tells a back end that a device uploaded a file, in
// IoT Hub's shape.
type FileNotification struct {
	DeviceID        string `json:"deviceId"`
	BlobURI         string `json:"blobUri"`
	BlobName        string `json:"blobName"`
	LastUpdatedTime Time   `json:"lastUpdatedTime"`
	BlobSizeInBytes int64  `json:"blobSizeInBytes"`
	EnqueuedTimeUTC Time   `json:"enqueuedTimeUtc"`
}

// FileNotificationStore keeps file-upload notifications until a back end
// completes them; they are received one at a time.
type FileNotificationStore interface {
	Add(ctx context.Context, n FileNotification) error
	// Receive locks the next notification and returns it with the lock
	// token that completes or abandons it, or ErrNotFound.
	Receive(ctx context.Context) (lockToken string, n FileNotification, err error)
	Complete(ctx context.Context, lockToken string) error
	Abandon(ctx context.Context, lockToken string) error
}

// --- receiving over HTTPS ---

// C2DLockTime is how long a message received over HTTPS stays hidden
// from later receives while the device settles it.
const C2DLockTime = time.Minute

// Outcomes of a message received over HTTPS.
const (
	C2DComplete = "complete"
	C2DReject   = "reject"
	C2DAbandon  = "abandon"
)
