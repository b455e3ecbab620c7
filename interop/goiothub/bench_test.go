package goiothub

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amenzhinsky/iothub/iotservice"
)

// benchDevices is how many twins the benchmark spreads its calls over, so
// that parallel updates mostly touch different twins (as a fleet's back
// end does) rather than contend on one.
const benchDevices = 256

// BenchmarkTwinRoundTrip measures GetDeviceTwin and UpdateDeviceTwin round
// trips through iotservice against a running hub (HTTPS with keep-alive,
// a fresh SAS token per request as the SDK makes it), with b.RunParallel at
// two concurrencies: GOMAXPROCS goroutines and 64. Calls rotate over
// benchDevices twins; updates send no etag (If-Match: *). Client and hub
// share the machine. It reports ops/s and asserts nothing about timings.
//
//	go test ./interop/goiothub/ -run '^$' -bench TwinRoundTrip -benchtime 5s
func BenchmarkTwinRoundTrip(b *testing.B) {
	h := startHub(b, "127.0.0.29")
	svc := h.Service(b)
	ctx := context.Background()
	ids := make([]string, benchDevices)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-%03d", i)
		if _, err := svc.CreateDevice(ctx, &iotservice.Device{DeviceID: ids[i]}); err != nil {
			b.Fatal(err)
		}
	}

	runParallel := func(b *testing.B, op func(id string, n int64) error) {
		var next atomic.Int64
		start := time.Now()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				n := next.Add(1)
				if err := op(ids[n%benchDevices], n); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
	}

	// run measures op at two concurrencies: GOMAXPROCS goroutines, and
	// 64 (a back end with many requests in flight).
	run := func(b *testing.B, op func(id string, n int64) error) {
		procs := runtime.GOMAXPROCS(0)
		for _, conc := range []int{procs, max(64, procs)} {
			b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
				b.SetParallelism((conc + procs - 1) / procs)
				runParallel(b, op)
			})
		}
	}

	b.Run("GetDeviceTwin", func(b *testing.B) {
		run(b, func(id string, _ int64) error {
			tw, err := svc.GetDeviceTwin(ctx, id)
			if err == nil && tw.DeviceID != id {
				err = fmt.Errorf("GetDeviceTwin(%s) returned %s", id, tw.DeviceID)
			}
			return err
		})
	})
	b.Run("UpdateDeviceTwin", func(b *testing.B) {
		run(b, func(id string, n int64) error {
			_, err := svc.UpdateDeviceTwin(ctx, &iotservice.Twin{
				DeviceID:   id,
				Properties: &iotservice.Properties{Desired: map[string]any{"setpoint": n, "mode": "bench"}},
			})
			return err
		})
	})
}
