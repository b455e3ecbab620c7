package jetstream

import (
	"github.com/nats-io/nats.go"

	"github.com/twinhub/twinhub"
)

// Bus is twinhub.Bus on core NATS subjects: at most once, in order per
// publisher, reaching every node of a cluster.
type Bus struct{ nc *nats.Conn }

var _ twinhub.ReconnectingBus = Bus{}

func NewBus(nc *nats.Conn) Bus { return Bus{nc: nc} }

func (b Bus) Publish(subject string, data []byte) error { return b.nc.Publish(subject, data) }

func (b Bus) Subscribe(subject string, fn func(string, []byte)) (func(), error) {
	sub, err := b.nc.Subscribe(subject, func(m *nats.Msg) { fn(m.Subject, m.Data) })
	if err != nil {
		return nil, err
	}
	return func() { sub.Unsubscribe() }, nil
}

// Reconnects is how often the connection reconnected to NATS.
func (b Bus) Reconnects() uint64 { return b.nc.Stats().Reconnects }
