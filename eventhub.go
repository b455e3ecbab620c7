package twinhub

import (
	"context"
	"net/http"
)

// Consumer groups of the Event Hubs-compatible endpoint: names that
// readers of the telemetry share (a partition's epochs are ordered within
// a group). $Default always exists; others are created and deleted as on
// IoT Hub's built-in endpoint.

// DefaultConsumerGroup is the group every hub has.
const DefaultConsumerGroup = "$Default"

// MaxConsumerGroupName is the longest name Event Hubs allows.
const MaxConsumerGroupName = 50

// ConsumerGroup is a consumer group and when it was made.
type ConsumerGroup struct {
	Name    string `json:"name"`
	Created Time   `json:"createdTime"`
}

// ConsumerGroupStore keeps the consumer groups other than $Default;
// names compare without regard to case.
type ConsumerGroupStore interface {
	// CreateConsumerGroup makes a group: ErrExists when it exists.
	CreateConsumerGroup(ctx context.Context, g ConsumerGroup) error
	// ConsumerGroup reads a group: ErrNotFound when there is none.
	ConsumerGroup(ctx context.Context, name string) (ConsumerGroup, error)
	ConsumerGroups(ctx context.Context) ([]ConsumerGroup, error)
	// DeleteConsumerGroup removes a group: ErrNotFound when there is none.
	DeleteConsumerGroup(ctx context.Context, name string) error
}

// ValidateConsumerGroupName checks a new group's name as Event Hubs
// does: 1 to 50 letters, digits, '.', '_' and '-', beginning with a
// letter or digit.
func ValidateConsumerGroupName(name string) error {
	if name == "" || len(name) > MaxConsumerGroupName {
		return ErrInvalid("a consumer group name has 1 to %d characters, not %d", MaxConsumerGroupName, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		letterOrDigit := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !letterOrDigit && (i == 0 || c != '.' && c != '_' && c != '-') {
			return ErrInvalid("consumer group name %q: letters, digits, '.', '_' and '-', beginning with a letter or digit", name)
		}
	}
	return nil
}

// ErrConsumerGroupNotFound is the 404 of a consumer group that does not
// exist.
func ErrConsumerGroupNotFound(name string) *Error {
	return Errorf(http.StatusNotFound, "ConsumerGroupNotFound", "consumer group %s does not exist", name)
}
