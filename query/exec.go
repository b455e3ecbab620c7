package query

import (
	"encoding/binary"
	"encoding/json"
	"iter"
	"math"
)

// Match reports whether doc satisfies the WHERE clause (true when there is
// none). Only a condition that evaluates to the Boolean true matches.
func (q *Query) Match(doc map[string]any) bool {
	return q.Where == nil || q.Where.Eval(doc).IsTrue()
}

// IsRaw reports whether results are projections or aggregates (item type
// "Raw") rather than whole documents (SELECT *).
func (q *Query) IsRaw() bool { return !q.Star }

// ItemType is the value of the x-ms-item-type header for this query's
// results: "Twin" for SELECT * on devices or devices.modules, "DeviceJob"
// for SELECT * on devices.jobs, "Raw" for projections and aggregates.
func (q *Query) ItemType() string {
	switch {
	case !q.Star:
		return "Raw"
	case q.Collection == DevicesJobs:
		return "DeviceJob"
	}
	return "Twin"
}

// Execute runs the query over the documents that scan yields, in that order
// (nil documents are skipped), and returns all result items with TOP applied:
//   - SELECT * returns the matching documents themselves (not copies);
//   - SELECT * ... GROUP BY returns the first matching document of each group;
//   - a projection returns one new map per matching document;
//   - aggregates return one row per group, groups in the order their first
//     document was seen; without GROUP BY exactly one row, even over no
//     documents (COUNT() is then 0).
//
// Values in new maps may share arrays and objects with the documents.
// Callers must not modify the documents or the results.
func (q *Query) Execute(scan iter.Seq[map[string]any]) ([]map[string]any, error) {
	if q.Top == 0 {
		return []map[string]any{}, nil
	}
	if q.Aggregated || q.GroupBy != nil {
		return q.executeGroups(scan), nil
	}
	out := []map[string]any{}
	for doc := range scan {
		if doc == nil || !q.Match(doc) {
			continue
		}
		if q.Star {
			out = append(out, doc)
		} else {
			out = append(out, q.project(doc))
		}
		if q.Top > 0 && len(out) >= q.Top {
			break
		}
	}
	return out, nil
}

func (q *Query) project(doc map[string]any) map[string]any {
	row := make(map[string]any, len(q.Items))
	for _, it := range q.Items {
		if x, ok := it.Expr.Eval(doc).Any(); ok {
			row[it.Key] = x
		}
	}
	return row
}

type aggState struct {
	sum  float64
	n    int // documents counted (COUNT) or numeric values seen (SUM, AVG)
	best Value
}

type group struct {
	first map[string]any
	aggs  []aggState
}

func (q *Query) executeGroups(scan iter.Seq[map[string]any]) []map[string]any {
	aggs := make([]*Aggregate, q.nAggs)
	for _, it := range q.Items {
		if it.agg >= 0 {
			aggs[it.agg] = it.Expr.(*Aggregate)
		}
	}
	var groups []*group
	index := map[string]*group{}
	var key []byte
	if q.GroupBy == nil && q.Aggregated {
		groups = append(groups, &group{aggs: make([]aggState, len(aggs))})
	}
	for doc := range scan {
		if doc == nil || !q.Match(doc) {
			continue
		}
		var g *group
		if q.GroupBy == nil {
			g = groups[0]
		} else {
			key = key[:0]
			for _, e := range q.GroupBy {
				key = appendKey(key, e.Eval(doc))
			}
			g = index[string(key)]
			if g == nil {
				g = &group{first: doc, aggs: make([]aggState, len(aggs))}
				index[string(key)] = g
				groups = append(groups, g)
			}
		}
		if g.first == nil {
			g.first = doc
		}
		for k, a := range aggs {
			s := &g.aggs[k]
			if a.Kind == AggCount {
				s.n++
				continue
			}
			v := a.Arg.Eval(doc)
			switch a.Kind {
			case AggSum, AggAvg:
				if v.Kind == Number {
					s.sum += v.Num
					s.n++
				}
			case AggMin, AggMax:
				if v.Kind < Bool || v.Kind > String {
					continue // undefined, null, arrays and objects are skipped
				}
				c := rank(v, s.best)
				if s.best.Kind == Undefined || a.Kind == AggMin && c < 0 || a.Kind == AggMax && c > 0 {
					s.best = v
				}
			}
		}
	}
	out := make([]map[string]any, 0, len(groups))
	for _, g := range groups {
		if q.Top > 0 && len(out) >= q.Top {
			break
		}
		if q.Star {
			out = append(out, g.first)
			continue
		}
		row := make(map[string]any, len(q.Items))
		for _, it := range q.Items {
			var v Value
			if it.agg >= 0 {
				v = aggResult(aggs[it.agg].Kind, &g.aggs[it.agg])
			} else if g.first != nil {
				v = it.Expr.Eval(g.first)
			}
			if x, ok := v.Any(); ok {
				row[it.Key] = x
			}
		}
		out = append(out, row)
	}
	return out
}

// aggResult is the value of an aggregate over a group: COUNT counts
// documents; SUM adds the numbers (0 when there are none); AVG averages them
// (Undefined, so left out of the row, when there are none); MIN and MAX
// rank Booleans, numbers and strings (false < true < numbers < strings).
func aggResult(k AggKind, s *aggState) Value {
	switch k {
	case AggCount:
		return numValue(float64(s.n))
	case AggSum:
		return numValue(s.sum)
	case AggAvg:
		if s.n == 0 {
			return undefined
		}
		return numValue(s.sum / float64(s.n))
	}
	return s.best
}

// appendKey encodes a value so that equal values (as GROUP BY sees them)
// have equal encodings. Undefined is a group of its own.
func appendKey(b []byte, v Value) []byte {
	b = append(b, byte(v.Kind))
	switch v.Kind {
	case Bool:
		if v.Bool {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	case Number:
		f := v.Num
		if f == 0 {
			f = 0 // -0 and 0 are one group
		}
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
	case String:
		b = binary.AppendUvarint(b, uint64(len(v.Str)))
		b = append(b, v.Str...)
	case Array, Object:
		j, _ := json.Marshal(v.ref) // map keys are sorted: a canonical form
		b = binary.AppendUvarint(b, uint64(len(j)))
		b = append(b, j...)
	}
	return b
}
