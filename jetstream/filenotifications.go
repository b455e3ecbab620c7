package jetstream

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/twinhub/twinhub"
)

// File-upload notifications live in stream FileNotificationStream,
// subject twinhub.filenotifications, one JSON twinhub.FileNotification
// a message, kept two days, and are received one at a time under a lock
// (lockQueue), as IoT Hub hands them out.
const (
	FileNotificationStream  = "twinhub-filenotifications"
	FileNotificationSubject = "twinhub.filenotifications"
	FileNotificationLock    = time.Minute
)

// FileNotifications is twinhub.FileNotificationStore on a JetStream stream.
type FileNotifications struct{ q *lockQueue }

var _ twinhub.FileNotificationStore = (*FileNotifications)(nil)

// OpenFileNotifications creates or updates the stream and its consumer.
func OpenFileNotifications(ctx context.Context, nc *nats.Conn, replicas int) (*FileNotifications, error) {
	q, err := openLockQueue(ctx, nc, lockQueueConfig{
		stream: FileNotificationStream, subject: FileNotificationSubject, description: "twinhub file-upload notifications",
		maxAge: 48 * time.Hour, lock: FileNotificationLock, max: 1, replicas: replicas,
	})
	if err != nil {
		return nil, err
	}
	return &FileNotifications{q: q}, nil
}

func (s *FileNotifications) Add(ctx context.Context, n twinhub.FileNotification) error {
	return s.q.add(ctx, n)
}

func (s *FileNotifications) Receive(ctx context.Context) (string, twinhub.FileNotification, error) {
	var n twinhub.FileNotification
	token, err := s.q.receive(func(data []byte) error { return json.Unmarshal(data, &n) })
	return token, n, err
}

func (s *FileNotifications) Complete(ctx context.Context, token string) error {
	return s.q.complete(ctx, token)
}

func (s *FileNotifications) Abandon(ctx context.Context, token string) error {
	return s.q.abandon(ctx, token)
}
