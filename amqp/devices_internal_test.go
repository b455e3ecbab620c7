package amqp

import (
	"strings"
	"testing"
)

// FuzzDeviceAddress: the addresses of device links and the to of a C2D
// send are read without a panic, and what reads as a device names one.
func FuzzDeviceAddress(f *testing.F) {
	f.Add("devices/d1/messages/events")
	f.Add("devices/d%2F1/modules/m1/twin")
	f.Add("Devices/d1/Modules//methods/devicebound")
	f.Add("/devices/d1/messages/devicebound")
	f.Add("devices//x")
	f.Add("devices/%zz/modules/%/messages/events")
	f.Fuzz(func(t *testing.T, address string) {
		if k, rest, ok := parseDeviceAddress(normalizeAddress(address)); ok {
			if k.DeviceID == "" || strings.Contains(k.DeviceID, "/") && !strings.Contains(address, "%") {
				t.Errorf("%q read as %+v, rest %q", address, k, rest)
			}
		}
		if id, ok := deviceOfTo(address); ok && id == "" {
			t.Errorf("to %q read as an empty device id", address)
		}
	})
}
