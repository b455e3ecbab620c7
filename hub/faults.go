package hub

import (
	"strconv"
	"strings"
	"time"

	"github.com/twinhub/twinhub"
)

// Fault injection, as IoT Hub does it for the SDKs' resilience tests: a
// device sends a message with the property AzIoTHub_FaultOperationType
// (and AzIoTHub_FaultOperationDelayInSecs, AzIoTHub_FaultOperationCloseReason),
// and after the delay the hub drops that device's connections, which the
// SDKs then recover from. Only with Config.FaultInjection (serve
// --fault-injection): a hub in production ignores the properties.

// Properties of a fault injection message.
const (
	FaultTypeProperty   = "AzIoTHub_FaultOperationType"
	FaultReasonProperty = "AzIoTHub_FaultOperationCloseReason"
	FaultDelayProperty  = "AzIoTHub_FaultOperationDelayInSecs"
)

// maxFaultDelay bounds the delay a message may ask for.
const maxFaultDelay = 5 * time.Minute

// faultDrops are the fault types that drop the device's connections.
// Over MQTT every kind ends the one connection; over AMQP the device's
// links close (on a multiplexed connection, the others' stay), and the
// SDKs open them again as after a dropped connection.
var faultDrops = map[string]bool{
	"killtcp": true, "shutdownmqtt": true, "shutdownamqp": true,
	"killamqpconnection": true, "killamqpsession": true,
	"killamqpcbslinkreq": true, "killamqpcbslinkresp": true,
	"killamqpd2clink": true, "killamqpc2dlink": true,
	"killamqptwinlinkreq": true, "killamqptwinlinkresp": true,
	"killamqpmethodreqlink": true, "killamqpmethodresplink": true,
}

// injectFault acts on a fault injection message, if e is one and fault
// injection is on. The message is stored as any other.
func (h *Hub) injectFault(e *twinhub.Event) {
	if !h.faultInjection {
		return
	}
	var kind, reason, delay string
	for _, p := range e.Properties {
		switch p.Key {
		case FaultTypeProperty:
			kind = p.Value
		case FaultReasonProperty:
			reason = p.Value
		case FaultDelayProperty:
			delay = p.Value
		}
	}
	if kind == "" {
		return
	}
	if !faultDrops[strings.ToLower(kind)] {
		h.log.Info("fault injection: type not simulated", "identity", e.Identity.String(), "type", kind)
		return
	}
	wait := time.Duration(0)
	if s, err := strconv.Atoi(strings.TrimSpace(delay)); err == nil && s > 0 {
		wait = min(time.Duration(s)*time.Second, maxFaultDelay)
	}
	k := e.Identity
	h.log.Info("fault injection", "identity", k.String(), "type", kind, "reason", reason, "after", wait)
	time.AfterFunc(wait, func() { h.RevokeConnections(k) })
}
