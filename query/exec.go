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
	return q.MatchDoc(Map(doc))
}

// MatchDoc is Match for any Doc.
func (q *Query) MatchDoc(doc Doc) bool {
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
	if q.Grouped() {
		g := q.NewGroups()
		for doc := range scan {
			if doc != nil && q.Match(doc) {
				g.Add(Map(doc))
			}
		}
		if !q.Star {
			return g.Rows(), nil
		}
		out := []map[string]any{}
		for _, d := range g.Firsts() {
			out = append(out, map[string]any(d.(Map)))
		}
		return out, nil
	}
	out := []map[string]any{}
	for doc := range scan {
		if doc == nil || !q.Match(doc) {
			continue
		}
		if q.Star {
			out = append(out, doc)
		} else {
			out = append(out, q.Project(Map(doc)))
		}
		if q.Top > 0 && len(out) >= q.Top {
			break
		}
	}
	return out, nil
}

// Grouped reports whether results are groups (aggregates or GROUP BY)
// rather than one item per matching document.
func (q *Query) Grouped() bool { return q.Aggregated || q.GroupBy != nil }

// Project returns the row of a projection (not SELECT *, not grouped) for
// one document: a new map keyed by the items' keys, without the items that
// are undefined.
func (q *Query) Project(doc Doc) map[string]any {
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
	key   string // the encoded values of the GROUP BY expressions
	first Doc
	aggs  []aggState
}

// Groups computes the results of a grouped query (see Grouped) from the
// matching documents, given in result order with Add. Documents may be
// split into consecutive runs, each added to its own Groups (for example
// by parallel workers), and the runs merged in order with Merge. A Groups
// is not safe for concurrent use.
type Groups struct {
	q      *Query
	aggs   []*Aggregate
	groups []*group
	index  map[string]*group
	key    []byte
}

// NewGroups starts an empty grouping for q.
func (q *Query) NewGroups() *Groups {
	g := &Groups{q: q, aggs: make([]*Aggregate, q.nAggs), index: map[string]*group{}}
	for _, it := range q.Items {
		if it.agg >= 0 {
			g.aggs[it.agg] = it.Expr.(*Aggregate)
		}
	}
	if q.GroupBy == nil {
		g.groups = append(g.groups, &group{aggs: make([]aggState, len(g.aggs))})
	}
	return g
}

// Add counts a matching document in its group. The first document of a
// group is kept (through Keep, when doc is a Keeper) to evaluate the
// group's non-aggregated items and to be the group's item for SELECT *.
func (g *Groups) Add(doc Doc) {
	q := g.q
	var gr *group
	if q.GroupBy == nil {
		gr = g.groups[0]
	} else {
		g.key = g.key[:0]
		for _, e := range q.GroupBy {
			g.key = appendKey(g.key, e.Eval(doc))
		}
		gr = g.index[string(g.key)]
		if gr == nil {
			gr = &group{key: string(g.key), aggs: make([]aggState, len(g.aggs))}
			g.index[gr.key] = gr
			g.groups = append(g.groups, gr)
		}
	}
	if gr.first == nil {
		if k, ok := doc.(Keeper); ok {
			gr.first = k.Keep()
		} else {
			gr.first = doc
		}
	}
	for k, a := range g.aggs {
		s := &gr.aggs[k]
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
			s.consider(a.Kind, v)
		}
	}
}

// consider makes v the best value of MIN or MAX if it ranks better.
func (s *aggState) consider(k AggKind, v Value) {
	if v.Kind < Bool || v.Kind > String {
		return // undefined, null, arrays and objects are skipped
	}
	c := rank(v, s.best)
	if s.best.Kind == Undefined || k == AggMin && c < 0 || k == AggMax && c > 0 {
		s.best = v
	}
}

// Merge adds the groups of o, whose documents all come after those added
// to g, as if they had been added to g. o must not be used afterwards.
// Sums are added run by run, so SUM and AVG of fractions may differ in the
// last bits from adding the documents one by one.
func (g *Groups) Merge(o *Groups) {
	for _, og := range o.groups {
		var gr *group
		if g.q.GroupBy == nil {
			gr = g.groups[0]
		} else if gr = g.index[og.key]; gr == nil {
			g.index[og.key] = og
			g.groups = append(g.groups, og)
			continue
		}
		if gr.first == nil {
			gr.first = og.first
		}
		for k, a := range g.aggs {
			s, t := &gr.aggs[k], &og.aggs[k]
			switch a.Kind {
			case AggMin, AggMax:
				if t.best.Kind != Undefined {
					s.consider(a.Kind, t.best)
				}
			default:
				s.n += t.n
				s.sum += t.sum
			}
		}
	}
}

// Len is the number of groups so far.
func (g *Groups) Len() int { return len(g.groups) }

// Firsts returns the first document of each group, in order, with TOP
// applied: the results of SELECT * ... GROUP BY.
func (g *Groups) Firsts() []Doc {
	out := make([]Doc, 0, len(g.groups))
	for _, gr := range g.groups {
		if g.q.Top >= 0 && len(out) >= g.q.Top {
			break
		}
		if gr.first != nil {
			out = append(out, gr.first)
		}
	}
	return out
}

// Rows returns one row per group, in order, with TOP applied: the results
// of a grouped projection.
func (g *Groups) Rows() []map[string]any {
	q := g.q
	out := make([]map[string]any, 0, len(g.groups))
	for _, gr := range g.groups {
		if q.Top >= 0 && len(out) >= q.Top {
			break
		}
		row := make(map[string]any, len(q.Items))
		for _, it := range q.Items {
			var v Value
			if it.agg >= 0 {
				v = aggResult(g.aggs[it.agg].Kind, &gr.aggs[it.agg])
			} else if gr.first != nil {
				v = it.Expr.Eval(gr.first)
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
