package query

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Collection is the document collection a query reads, named in its FROM
// clause.
type Collection int

// Collections.
const (
	Devices        Collection = iota // FROM devices: device twins
	DevicesModules                   // FROM devices.modules: module twins
	DevicesJobs                      // FROM devices.jobs: per-device job details
)

func (c Collection) String() string {
	switch c {
	case Devices:
		return "devices"
	case DevicesModules:
		return "devices.modules"
	case DevicesJobs:
		return "devices.jobs"
	}
	return "Collection(" + strconv.Itoa(int(c)) + ")"
}

// prefix is the collection's name split at its dots; paths may start with it.
func (c Collection) prefix() []string {
	switch c {
	case DevicesModules:
		return []string{"devices", "modules"}
	case DevicesJobs:
		return []string{"devices", "jobs"}
	}
	return []string{"devices"}
}

// Query is a parsed query. It is immutable and safe for concurrent use.
type Query struct {
	Collection Collection
	Top        int // TOP n, or -1 when absent

	// Star is true for SELECT *; Items is the projection list otherwise.
	Star  bool
	Items []*SelectItem

	Where   Expr   // nil without a WHERE clause
	GroupBy []Expr // nil without a GROUP BY clause

	// Aggregated is true when the SELECT list holds aggregates; the result
	// then has one row per group (one row in all without GROUP BY).
	Aggregated bool

	// Paths lists every property path of the query, in WHERE, SELECT and
	// GROUP BY alike, numbered by their Slot.
	Paths []*Path

	Source string
	nAggs  int
}

// SelectItem is one element of the projection list.
type SelectItem struct {
	Expr  Expr
	Alias string // as written after AS, or ""
	// Key is the name of the item in result rows: the alias, else the last
	// member name of a path (deviceId for devices.deviceId), else $1, $2, ...
	Key string
	agg int // index of the aggregate in the group state, when Expr is *Aggregate
}

const maxDepth = 100

type parser struct {
	src      string
	toks     []token
	i        int
	depth    int
	allowAgg bool // aggregates may appear here (inside a SELECT item)
	aggAt    int  // position of the first aggregate in the current item, or -1
	paths    []*pathInfo
}

// pathInfo remembers which segments of a path were written as identifiers:
// only those take part in prefix stripping and case canonicalisation.
type pathInfo struct {
	p     *Path
	ident []bool
}

// Parse parses an IoT Hub query. Errors are of type *Error.
func Parse(src string) (*Query, error) {
	q, err := parse(src)
	if err != nil {
		return nil, err
	}
	return q, nil
}

func parse(src string) (*Query, *Error) {
	if len(src) > MaxLength && utf8.RuneCountInString(src) > MaxLength {
		off := 0
		for k := 0; k < MaxLength; k++ {
			_, w := utf8.DecodeRuneInString(src[off:])
			off += w
		}
		return nil, newError(src, off, "query is longer than %d characters", MaxLength)
	}
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{src: src, toks: toks, aggAt: -1}
	return p.query()
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) errAt(off int, format string, args ...any) *Error {
	return newError(p.src, off, format, args...)
}

func (p *parser) unexpected(t token, want string) *Error {
	return p.errAt(t.pos, "unexpected %s, expected %s", t.describe(), want)
}

func (p *parser) expectKeyword(kw string) (token, *Error) {
	t := p.next()
	if t.kind != tIdent || !strings.EqualFold(t.text, kw) {
		return t, p.unexpected(t, kw)
	}
	return t, nil
}

func (p *parser) expectOp(op string) (token, *Error) {
	t := p.next()
	if t.kind != tOp || t.text != op {
		return t, p.unexpected(t, strconv.Quote(op))
	}
	return t, nil
}

func (p *parser) query() (*Query, *Error) {
	q := &Query{Top: -1, Source: p.src}
	if _, err := p.expectKeyword("SELECT"); err != nil {
		return nil, err
	}
	if p.peek().is("TOP") && p.peek().kind == tIdent {
		p.next()
		t := p.next()
		if t.kind != tNumber || t.num != math.Trunc(t.num) || t.num > math.MaxInt32 {
			return nil, p.errAt(t.pos, "TOP needs a non-negative integer, not %s", t.describe())
		}
		q.Top = int(t.num)
	}
	var itemPos []int
	if p.peek().is("*") {
		p.next()
		q.Star = true
	} else {
		for {
			t := p.peek()
			if t.is("FROM") && t.kind == tIdent {
				return nil, p.unexpected(t, "a projection or *")
			}
			p.allowAgg, p.aggAt = true, -1
			e, err := p.expr()
			p.allowAgg = false
			if err != nil {
				return nil, err
			}
			item := &SelectItem{Expr: e, agg: -1}
			if _, isAgg := e.(*Aggregate); isAgg {
				item.agg = q.nAggs
				q.nAggs++
				q.Aggregated = true
			} else if p.aggAt >= 0 {
				return nil, p.errAt(p.aggAt, "an aggregate must be a whole projection item, not part of an expression")
			}
			if p.peek().is("AS") && p.peek().kind == tIdent {
				p.next()
				a := p.next()
				if a.kind != tIdent || isKeyword(a.text) {
					return nil, p.unexpected(a, "an alias name")
				}
				item.Alias = a.text
			}
			q.Items = append(q.Items, item)
			itemPos = append(itemPos, t.pos)
			if !p.peek().is(",") {
				break
			}
			p.next()
		}
	}
	if _, err := p.expectKeyword("FROM"); err != nil {
		return nil, err
	}
	if err := p.collection(q); err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind == tIdent && t.is("WHERE") {
		p.next()
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		q.Where = e
	}
	groupAt := -1
	if t := p.peek(); t.kind == tIdent && t.is("GROUP") {
		groupAt = t.pos
		p.next()
		if _, err := p.expectKeyword("BY"); err != nil {
			return nil, err
		}
		for {
			e, err := p.expr()
			if err != nil {
				return nil, err
			}
			q.GroupBy = append(q.GroupBy, e)
			if !p.peek().is(",") {
				break
			}
			p.next()
		}
	}
	if t := p.peek(); t.kind != tEOF {
		want := "end of query"
		switch {
		case q.GroupBy != nil:
			want = `"," or end of query`
		case q.Where != nil:
			want = "GROUP BY or end of query"
		default:
			want = "WHERE, GROUP BY or end of query"
		}
		return nil, p.unexpected(t, want)
	}

	// Semantic checks, now that the collection is known.
	for i, pi := range p.paths {
		normalizePath(pi, q.Collection)
		pi.p.Slot = i
		q.Paths = append(q.Paths, pi.p)
	}
	if q.Collection == DevicesJobs {
		if !q.Star {
			return nil, p.errAt(itemPos[0], "queries on devices.jobs support only SELECT *")
		}
		if groupAt >= 0 {
			return nil, p.errAt(groupAt, "queries on devices.jobs do not support GROUP BY")
		}
	}
	if q.Aggregated && q.GroupBy == nil {
		for k, it := range q.Items {
			if it.agg < 0 {
				return nil, p.errAt(itemPos[k], "projection mixes aggregates with non-aggregated values without GROUP BY")
			}
		}
	}
	unnamed := 0
	seen := make(map[string]bool, len(q.Items))
	for k, it := range q.Items {
		it.Key = it.Alias
		if it.Key == "" {
			if pa, ok := it.Expr.(*Path); ok {
				if n := len(pa.Segments); n == 0 {
					it.Key = q.Collection.prefix()[len(q.Collection.prefix())-1]
				} else if !pa.Segments[n-1].IsIndex {
					it.Key = pa.Segments[n-1].Name
				}
			}
		}
		if it.Key == "" {
			unnamed++
			it.Key = "$" + strconv.Itoa(unnamed)
		}
		if seen[it.Key] {
			return nil, p.errAt(itemPos[k], "duplicate name %q in projection; use AS to rename", it.Key)
		}
		seen[it.Key] = true
	}
	return q, nil
}

func (p *parser) collection(q *Query) *Error {
	t := p.next()
	if t.kind != tIdent || isKeyword(t.text) {
		return p.unexpected(t, "a collection (devices, devices.modules or devices.jobs)")
	}
	name := strings.ToLower(t.text)
	for p.peek().is(".") {
		p.next()
		n := p.next()
		if n.kind != tIdent {
			return p.unexpected(n, "a collection name after \".\"")
		}
		name += "." + strings.ToLower(n.text)
	}
	switch name {
	case "devices":
		q.Collection = Devices
	case "devices.modules":
		q.Collection = DevicesModules
	case "devices.jobs":
		q.Collection = DevicesJobs
	default:
		return p.errAt(t.pos, "unknown collection %q: use devices, devices.modules or devices.jobs", p.src[t.pos:p.toks[p.i-1].pos+len(p.toks[p.i-1].text)])
	}
	return nil
}

// expr parses a full expression: OR binds loosest, then AND, then NOT, then
// comparisons (= != <> < <= > >= IN NIN), then + -, then * / %, then unary -.
func (p *parser) expr() (Expr, *Error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxDepth {
		return nil, p.errAt(p.peek().pos, "expression is nested too deeply")
	}
	return p.or()
}

func (p *parser) or() (Expr, *Error) {
	x, err := p.and()
	if err != nil {
		return nil, err
	}
	for t := p.peek(); t.kind == tIdent && t.is("OR"); t = p.peek() {
		p.next()
		y, err := p.and()
		if err != nil {
			return nil, err
		}
		x = fold(&Binary{Op: OpOr, X: x, Y: y})
	}
	return x, nil
}

func (p *parser) and() (Expr, *Error) {
	x, err := p.not()
	if err != nil {
		return nil, err
	}
	for t := p.peek(); t.kind == tIdent && t.is("AND"); t = p.peek() {
		p.next()
		y, err := p.not()
		if err != nil {
			return nil, err
		}
		x = fold(&Binary{Op: OpAnd, X: x, Y: y})
	}
	return x, nil
}

func (p *parser) not() (Expr, *Error) {
	if t := p.peek(); t.kind == tIdent && t.is("NOT") {
		p.next()
		p.depth++
		defer func() { p.depth-- }()
		if p.depth > maxDepth {
			return nil, p.errAt(t.pos, "expression is nested too deeply")
		}
		x, err := p.not()
		if err != nil {
			return nil, err
		}
		return fold(&Unary{At: t.pos, Op: OpNot, X: x}), nil
	}
	return p.comparison()
}

var cmpOps = map[string]Op{"=": OpEq, "!=": OpNe, "<>": OpNe, "<": OpLt, "<=": OpLe, ">": OpGt, ">=": OpGe}

func (p *parser) comparison() (Expr, *Error) {
	x, err := p.additive()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind == tOp {
			op, ok := cmpOps[t.text]
			if !ok {
				return x, nil
			}
			p.next()
			y, err := p.additive()
			if err != nil {
				return nil, err
			}
			x = fold(&Binary{Op: op, X: x, Y: y})
			continue
		}
		if t.kind != tIdent {
			return x, nil
		}
		not := false
		switch {
		case t.is("IN"):
		case t.is("NIN"):
			not = true
		case t.is("NOT") && p.toks[p.i+1].kind == tIdent && p.toks[p.i+1].is("IN"):
			// x NOT IN [...] is accepted as a synonym of NIN.
			p.next()
			not = true
		default:
			return x, nil
		}
		p.next()
		lt := p.peek()
		list, err := p.additive()
		if err != nil {
			return nil, err
		}
		in := &In{Not: not, X: x}
		if l, ok := list.(*Literal); ok {
			if l.Val.Kind != Array {
				return nil, p.errAt(lt.pos, "%s needs an array such as ['a', 'b'], not %s", strings.ToUpper(t.text), l.Val.Kind)
			}
			in.setConsts(l.Val.Array())
		} else {
			in.List = list
		}
		x = fold(in)
	}
}

func (p *parser) additive() (Expr, *Error) {
	x, err := p.multiplicative()
	if err != nil {
		return nil, err
	}
	for t := p.peek(); t.kind == tOp && (t.text == "+" || t.text == "-"); t = p.peek() {
		p.next()
		y, err := p.multiplicative()
		if err != nil {
			return nil, err
		}
		op := OpAdd
		if t.text == "-" {
			op = OpSub
		}
		x = fold(&Binary{Op: op, X: x, Y: y})
	}
	return x, nil
}

func (p *parser) multiplicative() (Expr, *Error) {
	x, err := p.unary()
	if err != nil {
		return nil, err
	}
	for t := p.peek(); t.kind == tOp && (t.text == "*" || t.text == "/" || t.text == "%"); t = p.peek() {
		p.next()
		y, err := p.unary()
		if err != nil {
			return nil, err
		}
		op := OpMul
		switch t.text {
		case "/":
			op = OpDiv
		case "%":
			op = OpMod
		}
		x = fold(&Binary{Op: op, X: x, Y: y})
	}
	return x, nil
}

func (p *parser) unary() (Expr, *Error) {
	t := p.peek()
	if t.kind == tOp && (t.text == "-" || t.text == "+") {
		p.next()
		p.depth++
		defer func() { p.depth-- }()
		if p.depth > maxDepth {
			return nil, p.errAt(t.pos, "expression is nested too deeply")
		}
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		if t.text == "+" {
			return x, nil
		}
		return fold(&Unary{At: t.pos, Op: OpNeg, X: x}), nil
	}
	return p.primary()
}

func (p *parser) primary() (Expr, *Error) {
	t := p.next()
	switch t.kind {
	case tNumber:
		return &Literal{At: t.pos, Val: Value{Kind: Number, Num: t.num}}, nil
	case tString:
		return &Literal{At: t.pos, Val: strValue(t.str)}, nil
	case tOp:
		switch t.text {
		case "(":
			x, err := p.expr()
			if err != nil {
				return nil, err
			}
			if _, err := p.expectOp(")"); err != nil {
				return nil, err
			}
			return x, nil
		case "[":
			return p.array(t)
		}
		return nil, p.unexpected(t, "an expression")
	case tIdent:
		switch strings.ToUpper(t.text) {
		case "TRUE":
			return &Literal{At: t.pos, Val: trueValue}, nil
		case "FALSE":
			return &Literal{At: t.pos, Val: falseVal}, nil
		case "NULL":
			return &Literal{At: t.pos, Val: nullValue}, nil
		case "UNDEFINED":
			return &Literal{At: t.pos, Val: undefined}, nil
		}
		if p.peek().is("(") {
			return p.call(t)
		}
		if isKeyword(t.text) {
			return nil, p.unexpected(t, "an expression")
		}
		return p.path(t)
	}
	return nil, p.unexpected(t, "an expression")
}

func (p *parser) array(open token) (Expr, *Error) {
	var elems []Expr
	if !p.peek().is("]") {
		for {
			e, err := p.expr()
			if err != nil {
				return nil, err
			}
			elems = append(elems, e)
			if !p.peek().is(",") {
				break
			}
			p.next()
		}
	}
	if _, err := p.expectOp("]"); err != nil {
		return nil, err
	}
	return fold(&ArrayExpr{At: open.pos, Elems: elems}), nil
}

func (p *parser) call(name token) (Expr, *Error) {
	p.next() // (
	upper := strings.ToUpper(name.text)
	agg, isAgg := aggregates[upper]
	if isAgg {
		if !p.allowAgg {
			return nil, p.errAt(name.pos, "aggregate %s is allowed only in the SELECT list", upper)
		}
		if p.aggAt < 0 {
			p.aggAt = name.pos
		}
		p.allowAgg = false // no aggregate inside an aggregate
		defer func() { p.allowAgg = true }()
	}
	var args []Expr
	if !p.peek().is(")") {
		for {
			e, err := p.expr()
			if err != nil {
				return nil, err
			}
			args = append(args, e)
			if !p.peek().is(",") {
				break
			}
			p.next()
		}
	}
	if _, err := p.expectOp(")"); err != nil {
		return nil, err
	}
	if isAgg {
		switch {
		case agg == AggCount && len(args) != 0:
			return nil, p.errAt(name.pos, "COUNT takes no arguments: write COUNT()")
		case agg != AggCount && len(args) != 1:
			return nil, p.errAt(name.pos, "%s takes 1 argument, got %d", upper, len(args))
		}
		a := &Aggregate{At: name.pos, Kind: agg}
		if len(args) == 1 {
			a.Arg = args[0]
		}
		return a, nil
	}
	f, ok := functions[upper]
	if !ok {
		return nil, p.errAt(name.pos, "unknown function %s", name.text)
	}
	if len(args) < f.min || f.max >= 0 && len(args) > f.max {
		return nil, p.errAt(name.pos, "%s takes %s, got %d", f.name, f.arity(), len(args))
	}
	return fold(&Call{At: name.pos, Name: f.name, Args: args, fn: f}), nil
}

func (p *parser) path(first token) (Expr, *Error) {
	pa := &Path{At: first.pos, Segments: []Segment{{Name: first.text}}}
	info := &pathInfo{p: pa, ident: []bool{true}}
	for {
		t := p.peek()
		switch {
		case t.is("."):
			p.next()
			n := p.next()
			if n.kind != tIdent {
				return nil, p.unexpected(n, "a property name after \".\"")
			}
			pa.Segments = append(pa.Segments, Segment{Name: n.text})
			info.ident = append(info.ident, !n.quoted)
		case t.is("["):
			p.next()
			n := p.next()
			switch {
			case n.kind == tString:
				pa.Segments = append(pa.Segments, Segment{Name: n.str})
			case n.kind == tNumber && n.num == math.Trunc(n.num) && n.num <= math.MaxInt32:
				pa.Segments = append(pa.Segments, Segment{Index: int(n.num), IsIndex: true})
			default:
				return nil, p.unexpected(n, "a quoted property name or an array index")
			}
			info.ident = append(info.ident, false)
			if _, err := p.expectOp("]"); err != nil {
				return nil, err
			}
		default:
			p.paths = append(p.paths, info)
			return pa, nil
		}
	}
}

// twinFields are the names IoT Hub gives the fields of a twin document, for
// canonicalising the case of identifiers that name them (the docs write
// SELECT DeviceId and get deviceId back). Names below them, inside tags and
// properties, are the user's and stay case-sensitive.
var twinFields = canon("deviceId", "moduleId", "etag", "deviceEtag", "status",
	"statusReason", "statusUpdateTime", "connectionState", "connectionStateUpdatedTime",
	"lastActivityTime", "cloudToDeviceMessageCount", "authenticationType",
	"x509Thumbprint", "modelId", "version", "tags", "properties", "capabilities",
	"deviceScope", "parentScopes", "generationId", "configurations")

var twinSubFields = map[string]map[string]string{
	"properties":     canon("desired", "reported"),
	"x509Thumbprint": canon("primaryThumbprint", "secondaryThumbprint"),
	"capabilities":   canon("iotEdge"),
}

var jobFields = canon("deviceId", "moduleId", "jobId", "jobType", "status",
	"startTimeUtc", "endTimeUtc", "createdDateTimeUtc", "lastUpdatedDateTimeUtc",
	"outcome", "error")

func canon(names ...string) map[string]string {
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[strings.ToLower(n)] = n
	}
	return m
}

// normalizePath strips the collection prefix (devices.modules.moduleId
// reads moduleId of a module twin) and gives the twin's own field names
// their canonical case.
func normalizePath(pi *pathInfo, c Collection) {
	segs := pi.p.Segments
	pre := c.prefix()
	if len(segs) >= len(pre) {
		match := true
		for k, name := range pre {
			if !pi.ident[k] || !strings.EqualFold(segs[k].Name, name) {
				match = false
				break
			}
		}
		if match {
			segs = segs[len(pre):]
			pi.ident = pi.ident[len(pre):]
		}
	}
	top := twinFields
	if c == DevicesJobs {
		top = jobFields
	}
	if len(segs) > 0 && pi.ident[0] {
		if n, ok := top[strings.ToLower(segs[0].Name)]; ok {
			segs[0].Name = n
		}
		if c != DevicesJobs && len(segs) > 1 && pi.ident[1] {
			if sub, ok := twinSubFields[segs[0].Name]; ok {
				if n, ok := sub[strings.ToLower(segs[1].Name)]; ok {
					segs[1].Name = n
				}
			}
		}
	}
	if len(segs) == 0 {
		segs = nil
	}
	pi.p.Segments = segs
}

// ParseCondition parses the queryCondition of a scheduled job (PUT /jobs/v2):
// a bare condition such as deviceId IN ['a', 'b'] over device twins, "*" for
// every twin, or a FROM clause with an optional WHERE, such as
// FROM devices.modules WHERE devices.modules.moduleId = 'x'; a full SELECT
// query is accepted too. The result is a SELECT * query; error positions
// refer to src.
func ParseCondition(src string) (*Query, error) {
	t := strings.TrimSpace(src)
	var prefix string
	switch {
	case t == "" || t == "*":
		return Parse("SELECT * FROM devices")
	case hasKeyword(t, "SELECT"):
		return Parse(src)
	case hasKeyword(t, "FROM"):
		prefix = "SELECT * "
	default:
		prefix = "SELECT * FROM devices WHERE "
	}
	q, err := parse(prefix + src)
	if err != nil {
		off := err.Offset - len(prefix)
		if off < 0 {
			off = 0
		}
		return nil, newError(src, off, "%s", err.Msg)
	}
	q.Source = src
	return q, nil
}

// hasKeyword reports whether s starts with the keyword kw as a whole word.
func hasKeyword(s, kw string) bool {
	return len(s) >= len(kw) && strings.EqualFold(s[:len(kw)], kw) && (len(s) == len(kw) || !isIdentPart(s[len(kw)]))
}
