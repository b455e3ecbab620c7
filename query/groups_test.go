package query

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/twinhub/twinhub/query/querytest"
)

// TestGroupsMerge splits the fleet into two runs at every position, groups
// each run on its own and merges them: the result must be Execute's.
func TestGroupsMerge(t *testing.T) {
	n := 0
	for _, c := range querytest.Cases {
		q, err := Parse(c.Query)
		if err != nil || !q.Grouped() {
			continue
		}
		n++
		fleet := deviceFleet
		if q.Collection == DevicesModules {
			fleet = moduleFleet
		}
		want, _ := q.Execute(seq(fleet))
		for cut := 0; cut <= len(fleet); cut++ {
			runs := [2]*Groups{q.NewGroups(), q.NewGroups()}
			for i, d := range fleet {
				if q.Match(d) {
					run := 0
					if i >= cut {
						run = 1
					}
					runs[run].Add(Map(d))
				}
			}
			runs[0].Merge(runs[1])
			var got []map[string]any
			if q.Star {
				for _, d := range runs[0].Firsts() {
					got = append(got, map[string]any(d.(Map)))
				}
			} else {
				got = runs[0].Rows()
			}
			if a, b := jsonOf(got), jsonOf(want); a != b {
				t.Errorf("%s, cut at %d:\n got %s\nwant %s", c.Query, cut, a, b)
			}
		}
	}
	if n < 10 {
		t.Errorf("only %d grouped cases", n)
	}
}

func jsonOf(rows []map[string]any) string {
	if len(rows) == 0 {
		return "[]"
	}
	b, err := json.Marshal(rows)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// TestPaths checks that every path of a query is numbered in Query.Paths.
func TestPaths(t *testing.T) {
	q, err := Parse(`SELECT devices.deviceId, tags.a[0] AS x, COUNT() AS n FROM devices WHERE properties.reported.t > 1 AND LOWER(tags.b) = 'x' GROUP BY devices.deviceId, tags.a[0]`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, p := range q.Paths {
		if p.Slot != i {
			t.Errorf("Paths[%d].Slot = %d", i, p.Slot)
		}
		got = append(got, p.String())
	}
	if s := strings.Join(got, " "); s != "deviceId tags.a[0] properties.reported.t tags.b deviceId tags.a[0]" {
		t.Errorf("Paths = %s", s)
	}
}

func TestPathIn(t *testing.T) {
	for _, c := range []struct{ cond, want string }{
		{`tags.a IN ['x', 1, null, [1], undefined, true]`, `tags.a ["x" 1 null true]`},
		{`tags.a IN ['a','b','c','d','e','f','g','h','i']`, `tags.a ["a" "b" "c" "d" "e" "f" "g" "h" "i"]`},
		{`tags.a NIN ['x']`, `-`},
		{`tags.a IN tags.b`, `-`},
		{`LOWER(tags.a) IN ['x']`, `-`},
		{`tags.a IN []`, `tags.a []`},
	} {
		q, err := Parse("SELECT * FROM devices WHERE " + c.cond)
		if err != nil {
			t.Fatal(err)
		}
		got := "-"
		if p, vals, ok := PathIn(q.Where); ok {
			got = fmt.Sprint(p.String(), " ", vals)
		}
		if got != c.want {
			t.Errorf("%s: got %s, want %s", c.cond, got, c.want)
		}
	}
}
