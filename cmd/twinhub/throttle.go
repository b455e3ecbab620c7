package main

import (
	"github.com/spf13/pflag"

	"github.com/twinhub/twinhub/throttle"
)

// throttleFlags adds --throttle-* flags, one rate a class, all off by
// default. IoT Hub's S3 unit, for comparison: 500 twin reads/s, 250 twin
// updates/s, 83 registry operations/s, ~17 queries/s, 6,000 new
// connections/s, 6,000 device-to-cloud messages/s.
func throttleFlags(fl *pflag.FlagSet, l *throttle.Limits) {
	rate := func(lim *throttle.Limit, name, what string) {
		fl.Float64Var(&lim.PerSecond, "throttle-"+name, 0, "most "+what+" a second the hub admits; the rest are refused (REST 429, MQTT and AMQP twin 429, CONNACK 3, AMQP com.microsoft:device-container-throttled) (0: no limit)")
		fl.IntVar(&lim.Burst, "throttle-"+name+"-burst", 0, "how many "+what+" may come at once above --throttle-"+name+" (default: one second's worth)")
	}
	rate(&l.TwinReads, "twin-reads", "twin reads (REST and MQTT)")
	rate(&l.TwinUpdates, "twin-updates", "twin updates (REST tags and desired, MQTT reported)")
	rate(&l.Registry, "registry", "registry operations (REST)")
	rate(&l.Queries, "queries", "queries (REST)")
	rate(&l.Connects, "connects", "new device connections")
	fl.Float64Var(&l.Telemetry.PerSecond, "throttle-telemetry", 0, "most device-to-cloud messages a second the hub takes in; above it, acknowledgements are delayed (0: no limit)")
	fl.IntVar(&l.Telemetry.Burst, "throttle-telemetry-burst", 0, "how many device-to-cloud messages may come at once above --throttle-telemetry (default: one second's worth)")
}
