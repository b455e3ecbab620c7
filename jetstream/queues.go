package jetstream

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// QueueLengths is how many messages wait in the hub's queues, for its
// metrics: "c2d", the cloud-to-device messages of every device not yet
// settled (a settled message is deleted from C2DStream, an expired one
// when it is next read), and "feedback" and "file_notifications", the
// records no back end has completed yet (their lock queue consumer's
// pending and unacknowledged records; completed ones stay in the stream
// until they age out). A queue that cannot be read is left out and its
// error returned with what could be read.
func QueueLengths(ctx context.Context, nc *nats.Conn) (map[string]uint64, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	var firstErr error
	keep := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	if s, err := js.Stream(ctx, C2DStream); err != nil {
		keep(fmt.Errorf("reading stream %s: %w", C2DStream, err))
	} else {
		out["c2d"] = s.CachedInfo().State.Msgs // read by the lookup itself
	}
	for name, stream := range map[string]string{"feedback": FeedbackStream, "file_notifications": FileNotificationStream} {
		c, err := js.Consumer(ctx, stream, lockQueueConsumer)
		if err != nil {
			keep(fmt.Errorf("reading the consumer of %s: %w", stream, err))
			continue
		}
		info := c.CachedInfo() // read by the lookup itself
		out[name] = info.NumPending + uint64(info.NumAckPending)
	}
	return out, firstErr
}
