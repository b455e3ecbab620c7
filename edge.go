package twinhub

import (
	"encoding/json"
	"strings"
)

// IoT Edge identities. An edge device has a scope of its own, which the
// hub gives it when it becomes an edge device and which never changes;
// a device below an edge device (its child) names that scope. A leaf
// device's deviceScope and parentScopes both hold its parent's scope; a
// nested edge device keeps its own deviceScope and names its parent in
// parentScopes. Azure IoT Hub shows the same in its registry and twins
// (learn.microsoft.com/azure/iot-edge/iot-edge-as-gateway, "Parent and
// child relationships").

// edgeScopePrefix begins every edge device's scope.
const edgeScopePrefix = "ms-azure-iot-edge://"

// Edge system modules: the hub creates these module identities for every
// edge device, as IoT Hub does, for the IoT Edge runtime to take over.
const (
	EdgeAgentModule = "$edgeAgent"
	EdgeHubModule   = "$edgeHub"
)

// EdgeScope is the scope of an edge device: the prefix, its id, a dash and
// its generation id, as IoT Hub writes it (the generation id has no dash,
// so that ScopeDeviceID can find the id again).
func EdgeScope(deviceID, generationID string) string {
	return edgeScopePrefix + deviceID + "-" + generationID
}

// ScopeDeviceID returns the id of the edge device a scope names; ok is
// false for a string that is not an edge scope.
func ScopeDeviceID(scope string) (id string, ok bool) {
	rest, found := strings.CutPrefix(scope, edgeScopePrefix)
	i := strings.LastIndexByte(rest, '-')
	if !found || i <= 0 || i == len(rest)-1 {
		return "", false
	}
	return rest[:i], true
}

// IsEdgeScopeOf says whether scope is an edge scope of device id: the
// prefix, the id, a dash and digits.
func IsEdgeScopeOf(scope, id string) bool {
	rest, ok := strings.CutPrefix(scope, edgeScopePrefix+id+"-")
	if !ok || rest == "" {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if rest[i] < '0' || rest[i] > '9' {
			return false
		}
	}
	return true
}

// Scopes is a device's parentScopes: shown as [] rather than null when it
// holds none, as IoT Hub shows it.
type Scopes []string

func (s Scopes) MarshalJSON() ([]byte, error) {
	if s == nil {
		return []byte("[]"), nil
	}
	return json.Marshal([]string(s))
}

// Parent is the scope of the device's parent edge device, "" if none.
func (d *Device) Parent() string {
	if len(d.ParentScopes) > 0 {
		return d.ParentScopes[0]
	}
	if !d.Capabilities.IoTEdge && d.DeviceScope != nil {
		return *d.DeviceScope
	}
	return ""
}

// IsSystemModule says whether a module id is one the hub reserves: IoT
// Hub keeps ids that begin with $ for the IoT Edge runtime's modules.
func IsSystemModule(moduleID string) bool {
	return strings.HasPrefix(moduleID, "$")
}
