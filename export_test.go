package twinhub

import "math/rand/v2"

// BenchRecord makes twin i of a benchmark fleet of n twins (see
// benchRecord), for the benchmarks of package twinhub_test.
func BenchRecord(r *rand.Rand, i, n int) *Record { return benchRecord(r, i, n) }
