package query

import "math"

// Eval returns the constant.
func (e *Literal) Eval(Doc) Value { return e.Val }

// Eval reads the property from the document; a missing member, an index out
// of range or a step into something that is not an object (or array) is
// Undefined.
func (e *Path) Eval(doc Doc) Value {
	if doc == nil {
		return undefined
	}
	return doc.Lookup(e)
}

// Eval applies NOT or unary minus. NOT of anything but a Boolean is
// Undefined, so NOT (x = 1) is not true when x is missing.
func (e *Unary) Eval(doc Doc) Value {
	x := e.X.Eval(doc)
	switch e.Op {
	case OpNot:
		if x.Kind == Bool {
			return boolValue(!x.Bool)
		}
	case OpNeg:
		if x.Kind == Number {
			return numValue(-x.Num)
		}
	}
	return undefined
}

// Eval applies the operator. AND and OR use three-valued logic over true,
// false and Undefined (anything not Boolean counts as Undefined): false AND
// Undefined is false, true OR Undefined is true, other mixes are Undefined.
func (e *Binary) Eval(doc Doc) Value {
	switch e.Op {
	case OpAnd:
		x := e.X.Eval(doc)
		if x.Kind == Bool && !x.Bool {
			return falseVal
		}
		y := e.Y.Eval(doc)
		if y.Kind == Bool && !y.Bool {
			return falseVal
		}
		if x.IsTrue() && y.IsTrue() {
			return trueValue
		}
		return undefined
	case OpOr:
		x := e.X.Eval(doc)
		if x.IsTrue() {
			return trueValue
		}
		y := e.Y.Eval(doc)
		if y.IsTrue() {
			return trueValue
		}
		if x.Kind == Bool && y.Kind == Bool {
			return falseVal
		}
		return undefined
	}
	x := e.X.Eval(doc)
	if x.Kind == Undefined {
		return undefined
	}
	y := e.Y.Eval(doc)
	switch e.Op {
	case OpEq:
		return equal(x, y)
	case OpNe:
		return notEqual(x, y)
	case OpLt, OpLe, OpGt, OpGe:
		c, ok := order(x, y)
		if !ok {
			return undefined
		}
		switch e.Op {
		case OpLt:
			return boolValue(c < 0)
		case OpLe:
			return boolValue(c <= 0)
		case OpGt:
			return boolValue(c > 0)
		}
		return boolValue(c >= 0)
	}
	if x.Kind != Number || y.Kind != Number {
		return undefined
	}
	switch e.Op {
	case OpAdd:
		return numValue(x.Num + y.Num)
	case OpSub:
		return numValue(x.Num - y.Num)
	case OpMul:
		return numValue(x.Num * y.Num)
	case OpDiv:
		if y.Num == 0 {
			return undefined
		}
		return numValue(x.Num / y.Num)
	case OpMod:
		if y.Num == 0 {
			return undefined
		}
		return numValue(math.Mod(x.Num, y.Num))
	}
	return undefined
}

// setThreshold is the list length from which IN looks strings up in a map.
const setThreshold = 8

func (e *In) setConsts(list []any) {
	e.Consts = make([]Value, 0, len(list))
	for _, x := range list {
		e.Consts = append(e.Consts, ValueOf(x))
	}
	if len(e.Consts) < setThreshold {
		return
	}
	e.set = make(map[string]struct{}, len(e.Consts))
	for _, v := range e.Consts {
		if v.Kind == String {
			e.set[v.Str] = struct{}{}
		} else {
			e.others = append(e.others, v)
		}
	}
}

// Eval is true for IN when x equals a member of the list, for NIN when it
// equals none. It is Undefined when x is Undefined, an array or an object.
func (e *In) Eval(doc Doc) Value {
	x := e.X.Eval(doc)
	if !x.isPrimitive() {
		return undefined
	}
	found := false
	switch {
	case e.set != nil:
		if x.Kind == String {
			_, found = e.set[x.Str]
		} else {
			for _, v := range e.others {
				if equal(x, v).IsTrue() {
					found = true
					break
				}
			}
		}
	case e.List == nil:
		for _, v := range e.Consts {
			if equal(x, v).IsTrue() {
				found = true
				break
			}
		}
	default:
		l := e.List.Eval(doc)
		if l.Kind != Array {
			return undefined
		}
		for _, m := range l.Array() {
			if equal(x, ValueOf(m)).IsTrue() {
				found = true
				break
			}
		}
	}
	return boolValue(found != e.Not)
}

// Eval builds the array; Undefined elements are left out.
func (e *ArrayExpr) Eval(doc Doc) Value {
	a := make([]any, 0, len(e.Elems))
	for _, el := range e.Elems {
		if x, ok := el.Eval(doc).Any(); ok {
			a = append(a, x)
		}
	}
	return Value{Kind: Array, ref: a}
}

// Eval calls the function.
func (e *Call) Eval(doc Doc) Value {
	f := e.fn
	if f.fv != nil {
		args := make([]Value, len(e.Args))
		for i, a := range e.Args {
			args[i] = a.Eval(doc)
		}
		return f.fv(args)
	}
	var a, b, c Value
	switch len(e.Args) {
	case 3:
		c = e.Args[2].Eval(doc)
		fallthrough
	case 2:
		b = e.Args[1].Eval(doc)
		fallthrough
	case 1:
		a = e.Args[0].Eval(doc)
	}
	return f.f(a, b, c, len(e.Args))
}

// Eval is Undefined: aggregates have a value only per group, in Execute.
func (e *Aggregate) Eval(Doc) Value { return undefined }

// fold replaces an expression whose operands are all constants by its value.
func fold(e Expr) Expr {
	isConst := func(x Expr) bool { _, ok := x.(*Literal); return ok }
	switch t := e.(type) {
	case *Unary:
		if !isConst(t.X) {
			return e
		}
	case *Binary:
		if !isConst(t.X) || !isConst(t.Y) {
			return e
		}
	case *In:
		if !isConst(t.X) || t.List != nil {
			return e
		}
	case *Call:
		for _, a := range t.Args {
			if !isConst(a) {
				return e
			}
		}
	case *ArrayExpr:
		for _, a := range t.Elems {
			if !isConst(a) {
				return e
			}
		}
	default:
		return e
	}
	return &Literal{At: e.Pos(), Val: e.Eval(nil)}
}
