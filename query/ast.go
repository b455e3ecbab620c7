package query

import (
	"strconv"
	"strings"
)

// Expr is a node of a parsed expression. The concrete types are *Literal,
// *Path, *Unary, *Binary, *In, *ArrayExpr, *Call and *Aggregate; a planner
// may type-switch on them. Eval evaluates the expression against one
// document; it never modifies the document and is safe for concurrent use.
type Expr interface {
	// Pos is the byte offset in the source where the expression starts.
	Pos() int
	// Eval evaluates the expression against doc (nil: no document, every
	// property undefined). Aggregates evaluate to Undefined here; Execute
	// and Groups compute them over groups.
	Eval(doc Doc) Value
}

// Doc is a document that expressions read properties from. Map adapts a
// document as encoding/json decodes it; an index can implement Doc over its
// own representation of a twin, and answer each Path from what it prepared
// for the path's Slot when it planned the query.
type Doc interface {
	// Lookup returns the value at p in the document, Undefined when there
	// is none. The value must be what p.Walk would find in the document's
	// JSON form.
	Lookup(p *Path) Value
}

// Map is a document decoded by encoding/json (or shaped like one).
type Map map[string]any

// Lookup walks the document along p.
func (m Map) Lookup(p *Path) Value {
	if m == nil {
		return undefined
	}
	return p.Walk(map[string]any(m), 0)
}

// Keeper is implemented by documents that are only valid until the next
// one is read (an index may reuse one Doc for a whole scan). Groups calls
// Keep on the first document of each group and holds on to the result.
type Keeper interface {
	Keep() Doc
}

// Literal is a constant: a number, string, true, false, null, undefined or
// an array of constants.
type Literal struct {
	At  int
	Val Value
}

// Segment is one step of a Path: a member name (from an identifier or a
// bracketed string) or, when IsIndex, an array index.
type Segment struct {
	Name    string
	Index   int
	IsIndex bool
}

// Path reads a property of the document, such as tags.location.plant or
// properties.reported['some key'] or reported.list[0]. The collection prefix
// (devices., devices.modules., devices.jobs.) has been removed and the
// names of the twin's own fields have their canonical case (see doc.go).
// An empty Segments reads the whole document.
type Path struct {
	At       int
	Segments []Segment
	// Slot numbers the paths of one query from 0: Query.Paths[p.Slot] == p.
	Slot int
}

// Op is a unary or binary operator.
type Op uint8

// Operators.
const (
	OpAnd Op = iota + 1
	OpOr
	OpNot
	OpNeg
	OpEq
	OpNe
	OpLt
	OpLe
	OpGt
	OpGe
	OpAdd
	OpSub
	OpMul
	OpDiv
	OpMod
)

var opNames = [...]string{"", "AND", "OR", "NOT", "-", "=", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%"}

func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return "?"
}

// Unary is NOT x or -x.
type Unary struct {
	At int
	Op Op
	X  Expr
}

// Binary is x op y for the logical, comparison and arithmetic operators.
type Binary struct {
	Op   Op
	X, Y Expr
}

// In is x IN [...] or, with Not, x NIN [...]. When the list is all constants
// Consts holds them and List is nil; otherwise List is evaluated per document.
type In struct {
	Not    bool
	X      Expr
	List   Expr
	Consts []Value
	set    map[string]struct{} // string members of Consts, for long lists
	others []Value             // members of Consts that are not strings
}

// ArrayExpr is [e1, e2, ...] with at least one non-constant element.
type ArrayExpr struct {
	At    int
	Elems []Expr
}

// Call is a call of a built-in function, such as STARTS_WITH(deviceId, 'x').
type Call struct {
	At   int
	Name string // canonical upper-case name
	Args []Expr
	fn   *function
}

// AggKind is an aggregate function.
type AggKind uint8

// Aggregates.
const (
	AggCount AggKind = iota + 1
	AggSum
	AggAvg
	AggMin
	AggMax
)

var aggNames = [...]string{"", "COUNT", "SUM", "AVG", "MIN", "MAX"}

func (a AggKind) String() string {
	if int(a) < len(aggNames) {
		return aggNames[a]
	}
	return "?"
}

// Aggregate is COUNT(), SUM(x), AVG(x), MIN(x) or MAX(x) in a SELECT list.
type Aggregate struct {
	At   int
	Kind AggKind
	Arg  Expr // nil for COUNT()
}

func (e *Literal) Pos() int   { return e.At }
func (e *Path) Pos() int      { return e.At }
func (e *Unary) Pos() int     { return e.At }
func (e *Binary) Pos() int    { return e.X.Pos() }
func (e *In) Pos() int        { return e.X.Pos() }
func (e *ArrayExpr) Pos() int { return e.At }
func (e *Call) Pos() int      { return e.At }
func (e *Aggregate) Pos() int { return e.At }

// String returns the path in the query language, such as
// properties.reported['a b'][0].
func (p *Path) String() string {
	var b strings.Builder
	for i, s := range p.Segments {
		switch {
		case s.IsIndex:
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.Index))
			b.WriteByte(']')
		case isPlainName(s.Name):
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s.Name)
		default:
			b.WriteString("['")
			b.WriteString(strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s.Name))
			b.WriteString("']")
		}
	}
	return b.String()
}

// Names returns the member names of a path without array indexes, and ok
// false if it has any index; a planner can use it as an index key.
func (p *Path) Names() (names []string, ok bool) {
	names = make([]string, len(p.Segments))
	for i, s := range p.Segments {
		if s.IsIndex {
			return nil, false
		}
		names[i] = s.Name
	}
	return names, true
}

// Walk applies the segments of p from index from on to x, a JSON value as
// encoding/json decodes it: a missing member, an index out of range or a
// step into something that is not an object (or array) is Undefined.
func (p *Path) Walk(x any, from int) Value {
	cur := x
	for i := from; i < len(p.Segments); i++ {
		s := &p.Segments[i]
		if s.IsIndex {
			a, ok := cur.([]any)
			if !ok || s.Index < 0 || s.Index >= len(a) {
				return undefined
			}
			cur = a[s.Index]
			continue
		}
		m, ok := cur.(map[string]any)
		if !ok {
			return undefined
		}
		if cur, ok = m[s.Name]; !ok {
			return undefined
		}
	}
	return ValueOf(cur)
}

func isPlainName(s string) bool {
	if s == "" || !isIdentStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isIdentPart(s[i]) {
			return false
		}
	}
	return true
}

// Conjuncts splits a condition into the terms that are joined by AND at its
// top level: a AND (b AND c) gives a, b, c. A nil condition gives nil.
func Conjuncts(e Expr) []Expr {
	if e == nil {
		return nil
	}
	var out []Expr
	var walk func(Expr)
	walk = func(e Expr) {
		if b, ok := e.(*Binary); ok && b.Op == OpAnd {
			walk(b.X)
			walk(b.Y)
			return
		}
		out = append(out, e)
	}
	walk(e)
	return out
}

// PathEquals reports whether e is path = constant (or constant = path) and
// returns both; the constant is a defined primitive. A planner can answer
// such a conjunct from an index keyed by path.
func PathEquals(e Expr) (p *Path, v Value, ok bool) {
	b, isBin := e.(*Binary)
	if !isBin || b.Op != OpEq {
		return nil, Value{}, false
	}
	x, y := b.X, b.Y
	if _, isLit := x.(*Literal); isLit {
		x, y = y, x
	}
	p, ok1 := x.(*Path)
	l, ok2 := y.(*Literal)
	if !ok1 || !ok2 || !l.Val.isPrimitive() {
		return nil, Value{}, false
	}
	return p, l.Val, true
}

// PathIn reports whether e is path IN [constants] (not NIN) and returns the
// path and the members that can equal something: the defined primitives. A
// document satisfies e only if the value at the path equals one of them, so
// a planner can answer e with the union of index lookups.
func PathIn(e Expr) (p *Path, vals []Value, ok bool) {
	in, isIn := e.(*In)
	if !isIn || in.Not || in.List != nil {
		return nil, nil, false
	}
	p, ok = in.X.(*Path)
	if !ok {
		return nil, nil, false
	}
	for _, v := range in.Consts {
		if v.isPrimitive() {
			vals = append(vals, v)
		}
	}
	return p, vals, true
}

// EqualityConjuncts returns the top-level path = constant conjuncts of the
// WHERE clause. Every document that matches the query satisfies all of them.
func (q *Query) EqualityConjuncts() []*Binary {
	var out []*Binary
	for _, c := range Conjuncts(q.Where) {
		if _, _, ok := PathEquals(c); ok {
			out = append(out, c.(*Binary))
		}
	}
	return out
}
