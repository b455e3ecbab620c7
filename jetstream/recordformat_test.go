package jetstream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/internal/recordjson"
	"github.com/twinhub/twinhub/internal/recordtest"
)

// millionRecord is a stored record as `bench million` makes them: a SAS
// device with three tags and a fourth from the update phase.
const millionRecord = `{"device":{"deviceId":"bench-1765000000-million-123456","generationId":"639006271234567890","etag":"MTIzNDU2Nzg=",` +
	`"connectionState":"Disconnected","status":"enabled","authentication":{"type":"sas","symmetricKey":` +
	`{"primaryKey":"q3v4bBv9Xu8Lr2Q0mX1p2n8kR6tY5zW7aC4dE2fG1hI=","secondaryKey":"Zx9yW8vU7tS6rQ5pO4nM3lK2jI1hG0fE9dC8bA7zY6x="}}},` +
	`"identityVersion":1,"twin":{"version":7,"tags":{"n":123456,"region":"r6","shard":456,"temp":42}}}`

// TestRecordFormat: a record's JSON comes back whole from its stored
// form, for random records of every shape; the stored form of a typical
// record is much smaller; a record stored as JSON (by an earlier
// version) reads as it is.
func TestRecordFormat(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		k := twinhub.DeviceKey(recordtest.BenchDeviceID(i))
		if i%3 == 0 {
			k = twinhub.ModuleKey(k.DeviceID, "m")
		}
		data, err := recordjson.Encode(recordtest.RandomRecord(r, k))
		if err != nil {
			t.Fatal(err)
		}
		stored := packRecord(nil, data)
		if stored[0] != recordS2Dict1 {
			t.Fatalf("stored with format byte %#x", stored[0])
		}
		got, err := unpackRecord(stored)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("record %d: unpacked %q, %v; want %q", i, got, err, data)
		}
		if old, err := unpackRecord(data); err != nil || !bytes.Equal(old, data) {
			t.Fatalf("record %d stored as JSON: %q, %v", i, old, err)
		}
	}
	for _, c := range []struct {
		name string
		data []byte
		max  float64 // stored bytes at most this share of the JSON's
	}{
		{"bench million", []byte(millionRecord), 0.6},
		{"bench record", mustEncode(t, recordtest.BenchRecord(rand.New(rand.NewPCG(7, 7)), 5, 1000)), 0.45},
	} {
		stored := packRecord(nil, c.data)
		if ratio := float64(len(stored)) / float64(len(c.data)); ratio > c.max {
			t.Errorf("%s: %d bytes of JSON stored in %d (%.2f), want at most %.2f", c.name, len(c.data), len(stored), ratio, c.max)
		}
	}
}

func mustEncode(t testing.TB, rec *twinhub.Record) []byte {
	t.Helper()
	data, err := recordjson.Encode(rec)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestRecordFormatRefusals: what is not a stored record is an error,
// never a panic nor a huge allocation.
func TestRecordFormatRefusals(t *testing.T) {
	stored := packRecord(nil, []byte(millionRecord))
	for _, c := range []struct {
		name   string
		stored []byte
	}{
		{"an unknown format byte", append([]byte{0x7f}, stored[1:]...)},
		{"a truncated block", stored[:len(stored)/2]},
		{"a format byte alone", stored[:1]},
		{"a length of 4 GiB", []byte{recordS2Dict1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0}},
		{"a length above the bound", []byte{recordS2Dict1, 0x80, 0x80, 0x80, 0x10, 0}},
	} {
		if data, err := unpackRecord(c.stored); err == nil {
			t.Errorf("%s: unpacked %q", c.name, data)
		}
	}
	if _, err := unpackRecord([]byte{0x02, 1, 2}); !errors.Is(err, errRecordFormat) {
		t.Errorf("a newer format: %v, want errRecordFormat", err)
	}
}

// TestRecordDictFrozen: recordDict1 is what it was when records were
// first stored with it. Changing it would make them unreadable: a new
// dictionary goes with a new format byte.
func TestRecordDictFrozen(t *testing.T) {
	sum := sha256.Sum256(recordDict1.Bytes())
	const want = "8ae23f7dc9a66a968ec779b40b92e100dd662694258c490dd8c2b3f5fea08341"
	if got := hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("recordDict1 changed: sha256 %s, want %s", got, want)
	}
}

// TestStoreReadsRecordsStoredAsJSON: a record an earlier version stored
// as JSON is read by Get and by the raw watch; its next write stores it
// packed, and it reads the same. One in an unknown format is an error.
func TestStoreReadsRecordsStoredAsJSON(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
	k := twinhub.DeviceKey("old")
	data := mustEncode(t, deviceRecord(k.DeviceID))
	rev, err := s.kv.Create(ctx, twinhub.EncodeKey(k), data)
	if err != nil {
		t.Fatal(err)
	}
	rec, got, err := s.Get(ctx, k)
	if err != nil || got != rev || rec.Device.DeviceID != "old" {
		t.Fatalf("Get of a JSON record: %+v rev %d, %v", rec, got, err)
	}
	rec.Twin.Tags = map[string]any{"plant": "Redmond43"}
	if _, err := s.Update(ctx, k, rec, rev); err != nil {
		t.Fatal(err)
	}
	e, err := s.kv.Get(ctx, twinhub.EncodeKey(k))
	if err != nil {
		t.Fatal(err)
	}
	if e.Value()[0] != recordS2Dict1 {
		t.Fatalf("the record's next write stored %q", e.Value())
	}
	rec, _, err = s.Get(ctx, k)
	if err != nil || rec.Twin.Tags["plant"] != "Redmond43" {
		t.Fatalf("Get after the write: %+v, %v", rec, err)
	}
	// The raw watch hands over the JSON of both a packed record and one
	// stored as JSON.
	k2 := twinhub.DeviceKey("older")
	data2 := mustEncode(t, deviceRecord(k2.DeviceID))
	if _, err := s.kv.Put(ctx, twinhub.EncodeKey(k2), data2); err != nil {
		t.Fatal(err)
	}
	// A record in a format this version does not know (a newer one's):
	// Get says so, and the raw watch hands it over as stored.
	k3 := twinhub.DeviceKey("newer")
	newer := []byte{0x7f, 1, 2, 3}
	if _, err := s.kv.Put(ctx, twinhub.EncodeKey(k3), newer); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, k3); !errors.Is(err, errRecordFormat) {
		t.Errorf("Get of a record in an unknown format: %v, want errRecordFormat", err)
	}
	seen := map[string][]byte{}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err = s.WatchRaw(wctx, 0, func(k twinhub.Key, stored []byte, rev uint64) { seen[k.DeviceID] = stored }, cancel)
	if err != nil {
		t.Fatal(err)
	}
	want, err := recordjson.Encode(rec)
	if err != nil {
		t.Fatal(err)
	}
	old, oldErr := s.Unpack(seen["old"])
	older, olderErr := s.Unpack(seen["older"])
	if !bytes.Equal(old, want) || oldErr != nil || !bytes.Equal(older, data2) || olderErr != nil {
		t.Fatalf("the raw watch's records unpack to %q (%v) and %q (%v)", old, oldErr, older, olderErr)
	}
	if !bytes.Equal(seen["newer"], newer) {
		t.Fatalf("the raw watch handed over %q for a record in an unknown format, not as stored", seen["newer"])
	}
	if _, err := s.Unpack(seen["newer"]); !errors.Is(err, errRecordFormat) {
		t.Errorf("Unpack of a record in an unknown format: %v, want errRecordFormat", err)
	}
}

// FuzzUnpackRecord: any stored bytes unpack to JSON or to an error, never
// a panic, and never to more than maxRecordBytes; what packRecord stores
// unpacks to what it was given.
func FuzzUnpackRecord(f *testing.F) {
	f.Add([]byte(millionRecord))
	f.Add(packRecord(nil, []byte(millionRecord)))
	f.Add([]byte{recordS2Dict1})
	f.Add([]byte{recordS2Dict1, 0x10, 0xfe, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		if data, err := unpackRecord(b); err == nil && len(data) > maxRecordBytes {
			t.Fatalf("unpacked %d bytes", len(data))
		}
		data, err := unpackRecord(packRecord(nil, b))
		if err != nil || !bytes.Equal(data, b) {
			t.Fatalf("packed and unpacked: %q, %v", data, err)
		}
	})
}

// BenchmarkRecordFormat: packing and unpacking a record of the million
// benchmark and a richer one (BenchRecord: desired and reported
// properties with their metadata), with the stored bytes a record.
func BenchmarkRecordFormat(b *testing.B) {
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"million", []byte(millionRecord)},
		{"bench-record", mustEncode(b, recordtest.BenchRecord(rand.New(rand.NewPCG(7, 7)), 5, 1000))},
	} {
		stored := packRecord(nil, c.data)
		b.Run(c.name+"/pack", func(b *testing.B) {
			for b.Loop() {
				packRecord(nil, c.data)
			}
			b.ReportMetric(float64(len(c.data)), "json-B")
			b.ReportMetric(float64(len(stored)), "stored-B")
		})
		b.Run(c.name+"/unpack", func(b *testing.B) {
			for b.Loop() {
				if _, err := unpackRecord(stored); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPackRecordConcurrent packs as the hub's writers do: each
// record on another of many goroutines (256, taking turns), whose stacks
// and caches are cold for S2's table by the time they pack again. "caller"
// packs on the writer's own goroutine, "packers" hands the record to a
// packer (recordBuf.pack).
func BenchmarkPackRecordConcurrent(b *testing.B) {
	data := mustEncode(b, recordtest.BenchRecord(rand.New(rand.NewPCG(7, 7)), 5, 1000))
	for _, c := range []struct {
		name string
		pack func(*recordBuf)
	}{
		{"caller", func(rb *recordBuf) { rb.stored = packRecord(rb.stored[:0], rb.json) }},
		{"packers", (*recordBuf).pack},
	} {
		b.Run(c.name, func(b *testing.B) {
			const writers = 256
			turns := make([]chan int, writers)
			for i := range turns {
				turns[i] = make(chan int, 1)
			}
			done := make(chan struct{})
			for i := range writers {
				go func() {
					rb := recordBufs.Get().(*recordBuf)
					rb.json = data
					for left := range turns[i] {
						if left == 0 {
							close(done)
							return
						}
						c.pack(rb)
						turns[(i+1)%writers] <- left - 1
					}
				}()
			}
			b.ResetTimer()
			turns[0] <- b.N
			<-done
			b.StopTimer()
			for _, t := range turns {
				close(t)
			}
		})
	}
}
