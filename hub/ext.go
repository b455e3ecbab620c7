package hub

import (
	"log/slog"
	"sync"
	"time"

	"github.com/twinhub/twinhub"
)

// hubExt holds the state of direct methods and messaging that a Hub
// gains at run time. It is looked up through a side table so that the
// Hub type itself does not change; see NEED in /tmp/reports/issue5.md
// for folding it into Hub and Config.
type hubExt struct {
	once    sync.Once
	methods *methodRouter

	mu        sync.Mutex
	telemetry twinhub.TelemetryStore
	c2d       twinhub.C2DQueue
	feedback  twinhub.FeedbackStore
	c2dLocks  map[c2dLockKey]time.Time // messages received over HTTPS
	noted     sync.Once
}

func (h *Hub) ext() *hubExt { return &h.messaging }

// UseMessaging gives the hub the stores of device-to-cloud telemetry and
// of cloud-to-device queues. Without them telemetry is acknowledged and
// dropped, and cloud-to-device messages are refused.
func (h *Hub) UseMessaging(t twinhub.TelemetryStore, q twinhub.C2DQueue) {
	x := h.ext()
	x.mu.Lock()
	x.telemetry, x.c2d = t, q
	x.mu.Unlock()
}

func (h *Hub) stores() (twinhub.TelemetryStore, twinhub.C2DQueue) {
	x := h.ext()
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.telemetry, x.c2d
}

func (h *Hub) logger() *slog.Logger {
	if h.log == nil {
		return slog.Default()
	}
	return h.log
}
