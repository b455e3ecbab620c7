package query

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

func TestParseAPI(t *testing.T) {
	q, err := Parse(`SELECT * FROM devices`)
	if err != nil {
		t.Fatal(err)
	}
	if q.Top != -1 || q.Where != nil || q.GroupBy != nil || !q.Star || q.IsRaw() || q.Collection != Devices {
		t.Errorf("unexpected query %+v", q)
	}
	for src, want := range map[string]Collection{
		"SELECT * FROM Devices.Modules": DevicesModules,
		"SELECT * FROM devices . jobs":  DevicesJobs,
	} {
		q, err := Parse(src)
		if err != nil || q.Collection != want {
			t.Errorf("Parse(%q) = %v, %v; want %v", src, q, err, want)
		}
	}
	if !q.Match(nil) {
		t.Error("a query without WHERE must match everything")
	}

	_, err = Parse("SELECT * FROM x")
	var e *Error
	if !errors.As(err, &e) || e.Offset != 14 || e.Error() != `line 1, column 15: unknown collection "x": use devices, devices.modules or devices.jobs` {
		t.Errorf("error %#v", err)
	}
}

func TestEqualityConjuncts(t *testing.T) {
	q, err := Parse(`SELECT * FROM devices.modules WHERE devices.modules.moduleId = '$edgeHub' AND (tags.a = 1 AND 'x' = tags.b) AND (tags.c = 1 OR tags.d = 2) AND tags.e > 1 AND tags['f g'] = null`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range q.EqualityConjuncts() {
		p, v, _ := PathEquals(c)
		got = append(got, fmt.Sprintf("%s=%s", p, v))
	}
	want := `moduleId="$edgeHub" tags.a=1 tags.b="x" tags['f g']=null`
	if s := strings.Join(got, " "); s != want {
		t.Errorf("got  %s\nwant %s", s, want)
	}
	if n := len(Conjuncts(q.Where)); n != 6 {
		t.Errorf("%d conjuncts, want 6", n)
	}
	p, _, _ := PathEquals(q.EqualityConjuncts()[0])
	if names, ok := p.Names(); !ok || len(names) != 1 || names[0] != "moduleId" {
		t.Errorf("Names() = %q, %v", names, ok)
	}
}

func TestConstantFolding(t *testing.T) {
	q, err := Parse(`SELECT * FROM devices WHERE 1 + 2 * 3 = 7 AND -0x10 = -16 AND UPPER('a') = 'A' AND 'b' IN ['a', 'b']`)
	if err != nil {
		t.Fatal(err)
	}
	l, ok := q.Where.(*Literal)
	if !ok || !l.Val.IsTrue() {
		t.Errorf("WHERE folded to %#v, want the constant true", q.Where)
	}
}

// TestValueOf covers the types encoding/json produces and a few hand-made ones.
func TestValueOf(t *testing.T) {
	for _, c := range []struct {
		in   any
		want Kind
	}{
		{nil, Null}, {true, Bool}, {1.5, Number}, {"s", String}, {[]any{}, Array},
		{map[string]any{}, Object}, {3, Number}, {int64(3), Number}, {struct{}{}, Undefined},
	} {
		if got := ValueOf(c.in).Kind; got != c.want {
			t.Errorf("ValueOf(%#v).Kind = %v, want %v", c.in, got, c.want)
		}
	}
}

// TestConcurrentExecute runs one parsed query from many goroutines (run
// with -race).
func TestConcurrentExecute(t *testing.T) {
	q, err := Parse(`SELECT tags.location.region AS r, COUNT() AS n FROM devices WHERE status = 'enabled' GROUP BY tags.location.region`)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				rows, err := q.Execute(seq(deviceFleet))
				if err != nil || len(rows) != 3 {
					t.Errorf("got %v, %v", rows, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestTopStopsScan checks that a plain TOP query stops reading documents.
func TestTopStopsScan(t *testing.T) {
	q, err := Parse(`SELECT TOP 2 * FROM devices`)
	if err != nil {
		t.Fatal(err)
	}
	read := 0
	rows, _ := q.Execute(func(yield func(map[string]any) bool) {
		for _, d := range deviceFleet {
			read++
			if !yield(d) {
				return
			}
		}
	})
	if len(rows) != 2 || read != 2 {
		t.Errorf("%d rows after reading %d documents", len(rows), read)
	}
}

func TestMatchAllocs(t *testing.T) {
	q, err := Parse(`SELECT * FROM devices WHERE tags.location.plant = 'Redmond43' AND properties.reported.connectivity IN ['cellular', 'wifi'] AND STARTS_WITH(deviceId, 'dev') AND properties.reported.temperature * 2 > 10`)
	if err != nil {
		t.Fatal(err)
	}
	doc := deviceFleet[1]
	if !q.Match(doc) {
		t.Fatal("no match")
	}
	if n := testing.AllocsPerRun(100, func() { q.Match(doc) }); n != 0 {
		t.Errorf("Match allocates %v times", n)
	}
}

// genTwin makes a synthetic twin for benchmarks.
func genTwin(r *rand.Rand, i int) map[string]any {
	plants := []string{"Redmond43", "Redmond44", "Dublin1", "Shanghai2", "Austin7"}
	conns := []string{"cellular", "wifi", "wired"}
	statuses := []string{"Success", "Pending", "Error"}
	return map[string]any{
		"deviceId":                  fmt.Sprintf("device-%06d", i),
		"etag":                      "AAAAAAAAAAE=",
		"deviceEtag":                "MTIzNDU2Nzg=",
		"status":                    "enabled",
		"statusUpdateTime":          "0001-01-01T00:00:00Z",
		"connectionState":           "Disconnected",
		"lastActivityTime":          "0001-01-01T00:00:00Z",
		"cloudToDeviceMessageCount": 0.0,
		"authenticationType":        "sas",
		"x509Thumbprint":            map[string]any{"primaryThumbprint": nil, "secondaryThumbprint": nil},
		"modelId":                   "",
		"version":                   3.0,
		"tags": map[string]any{"location": map[string]any{
			"region": "US", "plant": plants[r.IntN(len(plants))],
		}},
		"properties": map[string]any{
			"desired": map[string]any{"$metadata": map[string]any{"$lastUpdated": "2024-01-01T00:00:00Z"}, "$version": 1.0},
			"reported": map[string]any{
				"connectivity":    conns[r.IntN(len(conns))],
				"temperature":     float64(r.IntN(400)) / 10,
				"telemetryConfig": map[string]any{"status": statuses[r.IntN(len(statuses))], "sendFrequencyInSecs": 60.0},
				"$metadata":       map[string]any{"$lastUpdated": "2024-01-01T00:00:00Z"},
				"$version":        4.0,
			},
		},
		"capabilities": map[string]any{"iotEdge": false},
	}
}

var (
	benchOnce  sync.Once
	benchFleet []map[string]any
)

func fleet100k() []map[string]any {
	benchOnce.Do(func() {
		r := rand.New(rand.NewPCG(1, 2))
		benchFleet = make([]map[string]any, 100_000)
		for i := range benchFleet {
			benchFleet[i] = genTwin(r, i)
		}
	})
	return benchFleet
}

func BenchmarkParse(b *testing.B) {
	src := `SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices
		FROM devices WHERE tags.location.plant = 'Redmond43' AND properties.reported.connectivity IN ['wired', 'wifi']
		AND properties.reported.telemetryConfig.sendFrequencyInSecs >= 60 GROUP BY properties.reported.telemetryConfig.status`
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(src); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMatchEquality is the tutorial's query over 100,000 twins; one op
// is one twin.
func BenchmarkMatchEquality(b *testing.B) {
	docs := fleet100k()
	q, err := Parse(`SELECT * FROM devices WHERE tags.location.plant = 'Redmond43' AND properties.reported.connectivity = 'cellular'`)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	i, n := 0, 0
	for b.Loop() {
		if q.Match(docs[i]) {
			n++
		}
		if i++; i == len(docs) {
			i = 0
		}
	}
	_ = n
}

// BenchmarkExecuteGroupBy groups 100,000 twins; one op is the whole query.
func BenchmarkExecuteGroupBy(b *testing.B) {
	docs := fleet100k()
	q, err := Parse(`SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices,
		AVG(properties.reported.temperature) AS avgTemp FROM devices
		WHERE tags.location.region = 'US' GROUP BY properties.reported.telemetryConfig.status`)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rows, err := q.Execute(seq(docs))
		if err != nil || len(rows) != 3 {
			b.Fatalf("%v %v", rows, err)
		}
	}
}

func TestParseCondition(t *testing.T) {
	for _, c := range []struct {
		src  string
		coll Collection
		n    int // matches in the fleet of that collection
	}{
		{"*", Devices, 10},
		{"", Devices, 10},
		{"deviceId IN ['dev2', 'dev3']", Devices, 2},
		{"tags.location.region = 'US' AND status = 'enabled'", Devices, 4},
		{"FROM devices.modules WHERE devices.modules.moduleId = 'scanner'", DevicesModules, 3},
		{"from devices.modules", DevicesModules, 6},
		{"SELECT * FROM devices WHERE status = 'disabled'", Devices, 2},
		{"tags.selected = 1 OR fromage = 2 OR STATUS = 'disabled'", Devices, 2},
	} {
		q, err := ParseCondition(c.src)
		if err != nil {
			t.Errorf("ParseCondition(%q): %v", c.src, err)
			continue
		}
		fl := deviceFleet
		if q.Collection == DevicesModules {
			fl = moduleFleet
		}
		n := 0
		for _, d := range fl {
			if q.Match(d) {
				n++
			}
		}
		if q.Collection != c.coll || n != c.n || !q.Star {
			t.Errorf("ParseCondition(%q): %v, %d matches; want %v, %d", c.src, q.Collection, n, c.coll, c.n)
		}
	}
	_, err := ParseCondition("deviceId = = 1")
	var e *Error
	if !errors.As(err, &e) || e.Offset != 11 || e.Column != 12 {
		t.Errorf("error %v", err)
	}
	_, err = ParseCondition("FROM things")
	if !errors.As(err, &e) || e.Offset != 5 {
		t.Errorf("error %v", err)
	}
}

// TestDoubleBrackets: after a dot, [[name]] names a member whatever its
// characters (IoT Hub's escape, as in configurations.[[my-config]].status),
// and is never a keyword or a twin field whose case is canonicalised;
// elsewhere [[ opens an array of arrays.
func TestDoubleBrackets(t *testing.T) {
	doc := map[string]any{
		"configurations": map[string]any{"my-config": map[string]any{"status": "Applied"}},
		"tags":           map[string]any{"a b": 1.0, "AND": 2.0, "DeviceId": 3.0},
	}
	for _, c := range []struct {
		src  string
		want bool
	}{
		{"configurations.[[my-config]].status = 'Applied'", true},
		{"configurations.[[my-config]].status = 'Targeted'", false},
		{"configurations.[[other]].status = 'Applied'", false},
		{"tags.[[a b]] = 1 AND tags.[[AND]] = 2 AND tags.[[DeviceId]] = 3", true},
		{"ARRAY_CONTAINS([[1, 2], 1], 1)", true},
	} {
		q, err := ParseCondition(c.src)
		if err != nil {
			t.Errorf("ParseCondition(%q): %v", c.src, err)
			continue
		}
		if got := q.Match(doc); got != c.want {
			t.Errorf("%q matches %v, want %v", c.src, got, c.want)
		}
	}
	for _, src := range []string{"tags.[[a", "tags.[[]] = 1"} {
		if _, err := ParseCondition(src); err == nil {
			t.Errorf("ParseCondition(%q) parsed", src)
		}
	}
}
