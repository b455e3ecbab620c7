package query

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxLength is the longest query IoT Hub accepts, in characters.
const MaxLength = 8192

// Error is a syntax or semantic error in a query. Offset is the byte offset
// of the offending token in the source; Line and Column (both from 1, the
// column counted in characters) locate it for people.
type Error struct {
	Offset, Line, Column int
	Msg                  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

func newError(src string, off int, format string, args ...any) *Error {
	if off > len(src) {
		off = len(src)
	}
	line, col := 1, 1
	for i, r := range src {
		if i >= off {
			break
		}
		if r == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return &Error{Offset: off, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}
}

type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tNumber
	tString
	tOp // punctuation and operators; text holds it
)

type token struct {
	kind tokKind
	pos  int    // byte offset of the first character
	text string // source text (identifiers, numbers, operators)
	str  string // decoded value of a string literal
	num  float64
	// quoted marks a name written in double brackets ([[name]]): never a
	// keyword, never one of the twin's own field names.
	quoted bool
}

func (t token) describe() string {
	switch t.kind {
	case tEOF:
		return "end of query"
	case tString:
		return "string " + strconv.Quote(t.str)
	case tNumber:
		return "number " + t.text
	}
	return strconv.Quote(t.text)
}

// is reports whether t is the operator op, or the keyword op (case-insensitive).
func (t token) is(op string) bool {
	switch t.kind {
	case tOp:
		return t.text == op
	case tIdent:
		return strings.EqualFold(t.text, op)
	}
	return false
}

var keywords = map[string]bool{
	"SELECT": true, "TOP": true, "FROM": true, "WHERE": true, "GROUP": true,
	"BY": true, "AS": true, "AND": true, "OR": true, "NOT": true, "IN": true,
	"NIN": true, "TRUE": true, "FALSE": true, "NULL": true, "UNDEFINED": true,
}

func isKeyword(s string) bool {
	if len(s) > 9 {
		return false
	}
	return keywords[strings.ToUpper(s)]
}

func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentPart(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool {
	return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// lex splits src into tokens, the last one tEOF.
func lex(src string) ([]token, *Error) {
	toks := make([]token, 0, len(src)/4+2)
	i := 0
	for {
		for i < len(src) && (src[i] == ' ' || src[i] == '\t' || src[i] == '\n' || src[i] == '\r' || src[i] == '\f' || src[i] == '\v') {
			i++
		}
		if i >= len(src) {
			toks = append(toks, token{kind: tEOF, pos: len(src)})
			return toks, nil
		}
		c := src[i]
		start := i
		switch {
		case isIdentStart(c):
			for i < len(src) && isIdentPart(src[i]) {
				i++
			}
			toks = append(toks, token{kind: tIdent, pos: start, text: src[start:i]})
		case c == '[' && strings.HasPrefix(src[i:], "[[") && len(toks) > 0 && toks[len(toks)-1].kind == tOp && toks[len(toks)-1].text == ".":
			// IoT Hub's escape for a member name that is not an
			// identifier, after a dot: configurations.[[my-config]].status.
			// (Elsewhere "[[" opens an array of arrays.)
			end := strings.Index(src[i+2:], "]]")
			if end < 0 {
				return nil, newError(src, i, "[[ without ]]: a name in double brackets, such as [[my-config]]")
			}
			if end == 0 {
				return nil, newError(src, i, "an empty name in double brackets")
			}
			toks = append(toks, token{kind: tIdent, pos: start, text: src[i+2 : i+2+end], quoted: true})
			i += 2 + end + 2
		case isDigit(c) || c == '.' && i+1 < len(src) && isDigit(src[i+1]):
			t, err := lexNumber(src, i)
			if err != nil {
				return nil, err
			}
			i += len(t.text)
			toks = append(toks, t)
		case c == '\'' || c == '"':
			t, n, err := lexString(src, i)
			if err != nil {
				return nil, err
			}
			i += n
			toks = append(toks, t)
		default:
			op := ""
			if i+1 < len(src) {
				switch src[i : i+2] {
				case "!=", "<>", "<=", ">=":
					op = src[i : i+2]
				}
			}
			if op == "" {
				switch c {
				case '(', ')', '[', ']', ',', '.', '*', '+', '-', '/', '%', '=', '<', '>':
					op = src[i : i+1]
				default:
					r, _ := utf8.DecodeRuneInString(src[i:])
					if r == utf8.RuneError {
						return nil, newError(src, i, "invalid UTF-8 in query")
					}
					return nil, newError(src, i, "unexpected character %q", r)
				}
			}
			i += len(op)
			toks = append(toks, token{kind: tOp, pos: start, text: op})
		}
	}
}

func lexNumber(src string, i int) (token, *Error) {
	start := i
	if src[i] == '0' && i+1 < len(src) && (src[i+1] == 'x' || src[i+1] == 'X') {
		i += 2
		for i < len(src) && isHex(src[i]) {
			i++
		}
		if i == start+2 {
			return token{}, newError(src, start, "hexadecimal number needs digits after 0x")
		}
		if i < len(src) && isIdentPart(src[i]) {
			return token{}, newError(src, i, "unexpected %q after number", src[i])
		}
		u, err := strconv.ParseUint(src[start+2:i], 16, 64)
		if err != nil {
			return token{}, newError(src, start, "hexadecimal number %s is too large", src[start:i])
		}
		return token{kind: tNumber, pos: start, text: src[start:i], num: float64(u)}, nil
	}
	for i < len(src) && isDigit(src[i]) {
		i++
	}
	if i < len(src) && src[i] == '.' {
		i++
		if i >= len(src) || !isDigit(src[i]) {
			return token{}, newError(src, i, "number needs digits after the decimal point")
		}
		for i < len(src) && isDigit(src[i]) {
			i++
		}
	}
	if i < len(src) && (src[i] == 'e' || src[i] == 'E') {
		i++
		if i < len(src) && (src[i] == '+' || src[i] == '-') {
			i++
		}
		if i >= len(src) || !isDigit(src[i]) {
			return token{}, newError(src, i, "number needs digits in its exponent")
		}
		for i < len(src) && isDigit(src[i]) {
			i++
		}
	}
	if i < len(src) && (isIdentPart(src[i]) || src[i] == '.') {
		return token{}, newError(src, i, "unexpected %q after number", src[i])
	}
	f, err := strconv.ParseFloat(src[start:i], 64)
	if err != nil || math.IsInf(f, 0) {
		return token{}, newError(src, start, "number %s is out of range", src[start:i])
	}
	return token{kind: tNumber, pos: start, text: src[start:i], num: f}, nil
}

// lexString reads a quoted string at src[i]; it returns the token and the
// number of source bytes it spans. Escapes: \' \" \\ \uXXXX as the language
// reference lists, plus JSON's \/ \b \f \n \r \t.
func lexString(src string, i int) (token, int, *Error) {
	q := src[i]
	start := i
	i++
	var b strings.Builder
	plain := i // start of the run not yet copied into b
	for {
		if i >= len(src) {
			return token{}, 0, newError(src, start, "unterminated string")
		}
		c := src[i]
		if c == q {
			var s string
			if b.Len() == 0 {
				s = src[plain:i]
			} else {
				b.WriteString(src[plain:i])
				s = b.String()
			}
			i++
			return token{kind: tString, pos: start, text: src[start:i], str: s}, i - start, nil
		}
		if c != '\\' {
			i++
			continue
		}
		b.WriteString(src[plain:i])
		if i+1 >= len(src) {
			return token{}, 0, newError(src, start, "unterminated string")
		}
		switch e := src[i+1]; e {
		case '\'', '"', '\\', '/':
			b.WriteByte(e)
			i += 2
		case 'b':
			b.WriteByte('\b')
			i += 2
		case 'f':
			b.WriteByte('\f')
			i += 2
		case 'n':
			b.WriteByte('\n')
			i += 2
		case 'r':
			b.WriteByte('\r')
			i += 2
		case 't':
			b.WriteByte('\t')
			i += 2
		case 'u':
			if i+6 > len(src) {
				return token{}, 0, newError(src, i, "escape \\u needs four hexadecimal digits")
			}
			r, err := strconv.ParseUint(src[i+2:i+6], 16, 32)
			if err != nil {
				return token{}, 0, newError(src, i, "escape \\u needs four hexadecimal digits")
			}
			i += 6
			// A surrogate pair written as two escapes is one character.
			if r >= 0xD800 && r < 0xDC00 && i+6 <= len(src) && src[i] == '\\' && src[i+1] == 'u' {
				if lo, err := strconv.ParseUint(src[i+2:i+6], 16, 32); err == nil && lo >= 0xDC00 && lo < 0xE000 {
					r = (r-0xD800)<<10 + (lo - 0xDC00) + 0x10000
					i += 6
				}
			}
			b.WriteRune(rune(r))
		default:
			return token{}, 0, newError(src, i, "unknown escape \\%c in string", e)
		}
		plain = i
	}
}
