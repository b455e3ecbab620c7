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
	// Eval evaluates the expression against doc. Aggregates evaluate to
	// Undefined here; Execute computes them over groups.
	Eval(doc map[string]any) Value
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
