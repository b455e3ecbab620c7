package query

import (
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/twinhub/twinhub/query/querytest"
)

// FuzzParse checks that Parse never panics, that its errors are *Error with
// an offset inside the source, and that a query that parses executes over
// the test fleets without panicking and yields JSON-encodable results.
func FuzzParse(f *testing.F) {
	for _, c := range querytest.Cases {
		f.Add(c.Query)
	}
	for _, c := range querytest.ParseErrors {
		if len(c.Query) < 1000 {
			f.Add(c.Query)
		}
	}
	for _, s := range []string{
		`SELECT * FROM devices WHERE tags['a\u00e9'][0].b = -0x1f % 3`,
		`SELECT TOP 5 MIN(tags.x) AS a, MAX(tags.x) AS b, SUM(tags.y) AS c, AVG(tags.y) AS d FROM devices.modules GROUP BY tags.z, tags.w`,
		`SELECT * FROM devices WHERE ARRAY_CONTAINS(tags.list, {"a":1})`,
		`SELECT * FROM devices WHERE ARRAY_CONTAINS(tags.list, [1], true) AND SUBSTRING(deviceId, -5, 1e9) = ''`,
		`SELECT * FROM devices WHERE x IN [1, [2], undefined, tags] AND y NIN tags.list`,
		`SELECT [tags, undefined] AS a FROM devices GROUP BY tags`,
	} {
		f.Add(s)
	}
	fleets := [][]map[string]any{deviceFleet, moduleFleet, jobFleet}
	f.Fuzz(func(t *testing.T, src string) {
		q, err := Parse(src)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v, want *Error", err, err)
			}
			if e.Offset < 0 || e.Offset > len(src) || e.Line < 1 || e.Column < 1 {
				t.Fatalf("bad position in %v (offset %d, len %d)", err, e.Offset, len(src))
			}
			if utf8.ValidString(src) && e.Column > utf8.RuneCountInString(src)+1 {
				t.Fatalf("column past the end: %v", err)
			}
			return
		}
		for _, fl := range fleets {
			for _, d := range fl {
				q.Match(d)
			}
			rows, err := q.Execute(seq(fl))
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}
			if q.Top >= 0 && len(rows) > q.Top {
				t.Fatalf("%d rows, TOP %d", len(rows), q.Top)
			}
			if _, err := json.Marshal(rows); err != nil {
				t.Fatalf("results do not marshal: %v", err)
			}
		}
	})
}
