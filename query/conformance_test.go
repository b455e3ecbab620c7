package query

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/twinhub/twinhub/query/querytest"
)

// TestConformance runs the cases of package querytest over its fleets.
func TestConformance(t *testing.T) {
	for _, c := range querytest.Cases {
		q, err := Parse(c.Query)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.Query, err)
			continue
		}
		fleet := deviceFleet
		switch q.Collection {
		case DevicesModules:
			fleet = moduleFleet
		case DevicesJobs:
			fleet = jobFleet
		}
		got, err := q.Execute(seq(fleet))
		if err != nil {
			t.Errorf("Execute(%q): %v", c.Query, err)
			continue
		}
		if c.Item != "" && q.ItemType() != c.Item {
			t.Errorf("%q: item type %s, want %s", c.Query, q.ItemType(), c.Item)
		}
		if c.IDs != nil {
			if !q.Star || q.IsRaw() {
				t.Errorf("%q: want a SELECT * query", c.Query)
			}
			ids := []string{}
			for _, d := range got {
				ids = append(ids, docID(d))
			}
			if !reflect.DeepEqual(ids, c.IDs) {
				t.Errorf("%q:\n got %q\nwant %q", c.Query, ids, c.IDs)
			}
			// Match agrees with Execute for plain SELECT * queries.
			if q.GroupBy == nil && q.Top < 0 {
				var m []string
				for _, d := range fleet {
					if q.Match(d) {
						m = append(m, docID(d))
					}
				}
				if len(m) != len(ids) {
					t.Errorf("%q: Match selects %q", c.Query, m)
				}
			}
			continue
		}
		if !q.IsRaw() {
			t.Errorf("%q: want a raw query", c.Query)
		}
		var want any
		if err := json.Unmarshal([]byte(c.Raw), &want); err != nil {
			t.Fatalf("%q: bad expectation: %v", c.Query, err)
		}
		b, err := json.Marshal(got)
		if err != nil {
			t.Errorf("%q: marshal result: %v", c.Query, err)
			continue
		}
		var gotAny any
		_ = json.Unmarshal(b, &gotAny)
		if !reflect.DeepEqual(gotAny, want) {
			t.Errorf("%q:\n got %s\nwant %s", c.Query, b, strings.Join(strings.Fields(c.Raw), ""))
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range querytest.ParseErrors {
		q, err := Parse(c.Query)
		if err == nil {
			t.Errorf("Parse(%.60q) = %+v, want an error", c.Query, q)
			continue
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("Parse(%.60q): error %T, want *Error", c.Query, err)
			continue
		}
		if e.Line != c.Line || e.Column != c.Col || !strings.Contains(e.Msg, c.Msg) {
			t.Errorf("Parse(%.60q):\n got %v\nwant line %d, column %d: ...%s...", c.Query, err, c.Line, c.Col, c.Msg)
		}
		if e.Offset < 0 || e.Offset > len(c.Query) {
			t.Errorf("Parse(%.60q): offset %d outside the source", c.Query, e.Offset)
		}
		if want := "line "; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Error() = %q", err.Error())
		}
	}
}
