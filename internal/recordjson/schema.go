package recordjson

import (
	"strconv"

	"github.com/twinhub/twinhub"
)

// A schema is how the codec reads and writes the JSON object of a struct
// type T: its members in the order encoding/json writes them. Each member
// is written down once, for both directions, so that adding a field to a
// record type is one line here (and TestDecodeRecordKnowsEveryField says
// when it is missing).
type schema[T any] struct {
	names   []string // the members' names, for Decoder.Fields
	members []member[T]
}

// A member is one field of T as JSON: its name, how to read its value
// into a T, how to write it, and when it is left out (nil: always
// written): for an omitempty field, when encoding/json leaves it out; for
// a storedOmits one, when it holds its zero value.
type member[T any] struct {
	name  string
	read  func(d *Decoder, v *T) bool
	write func(e *jsonEncoder, v *T)
	omit  func(v *T) bool
}

func newSchema[T any](members ...member[T]) *schema[T] {
	s := &schema[T]{members: members}
	for _, m := range members {
		s.names = append(s.names, m.name)
	}
	return s
}

// read reads an object of T into v: members in any order, none twice,
// none unknown (Decoder.Fields).
func (s *schema[T]) read(d *Decoder, v *T) bool {
	return d.Fields(s.names, func(k int) bool { return s.members[k].read(d, v) })
}

// write writes v as encoding/json does.
func (s *schema[T]) write(e *jsonEncoder, v *T) {
	e.b = append(e.b, '{')
	first := true
	for i := range s.members {
		m := &s.members[i]
		if m.omit != nil && m.omit(v) {
			continue
		}
		e.field(m.name, first)
		first = false
		m.write(e, v)
	}
	e.b = append(e.b, '}')
}

// omitEmpty makes m an omitempty member, left out when empty says so.
func omitEmpty[T any](m member[T], empty func(v *T) bool) member[T] {
	m.omit = empty
	return m
}

// storedOmits makes m a member that stored records leave out when zero
// says so, although encoding/json writes it: the zero value that reading
// an absent member leaves. At a million twins the identities' nulls, zero
// instants and counters were about 280 of a record's 900 bytes, which the
// store keeps on disk and, while random twins change, in its block caches
// in memory (see Encode).
func storedOmits[T any](m member[T], zero func(v *T) bool) member[T] { return omitEmpty(m, zero) }

// The members by the type of their field; field returns the field of v.

func stringMember[T any](name string, field func(v *T) *string) member[T] {
	return member[T]{name: name,
		read:  func(d *Decoder, v *T) bool { return d.Str(field(v)) },
		write: func(e *jsonEncoder, v *T) { e.string(*field(v)) }}
}

// optStringMember is a *string field: null when nil.
func optStringMember[T any](name string, field func(v *T) **string) member[T] {
	return member[T]{name: name,
		read:  func(d *Decoder, v *T) bool { return d.OptStr(field(v)) },
		write: func(e *jsonEncoder, v *T) { e.optString(*field(v)) }}
}

func timeMember[T any](name string, field func(v *T) *twinhub.Time) member[T] {
	return member[T]{name: name,
		read:  func(d *Decoder, v *T) bool { return d.Time(field(v)) },
		write: func(e *jsonEncoder, v *T) { e.time(*field(v)) }}
}

func intMember[T any](name string, field func(v *T) *int) member[T] {
	return member[T]{name: name,
		read:  func(d *Decoder, v *T) bool { return d.Null() || d.Int(field(v)) },
		write: func(e *jsonEncoder, v *T) { e.b = strconv.AppendInt(e.b, int64(*field(v)), 10) }}
}

func int64Member[T any](name string, field func(v *T) *int64) member[T] {
	return member[T]{name: name,
		read:  func(d *Decoder, v *T) bool { return d.Null() || d.Int64(field(v)) },
		write: func(e *jsonEncoder, v *T) { e.b = strconv.AppendInt(e.b, *field(v), 10) }}
}

// objectMember is a JSON object of any values: null when nil.
func objectMember[T any](name string, field func(v *T) *map[string]any) member[T] {
	return member[T]{name: name,
		read:  func(d *Decoder, v *T) bool { return d.Map(field(v)) },
		write: func(e *jsonEncoder, v *T) { e.object(*field(v)) }}
}

// structMember is a struct field of type F with its own schema (null
// leaves it as it is, as encoding/json does).
func structMember[T, F any](name string, s *schema[F], field func(v *T) *F) member[T] {
	return member[T]{name: name,
		read:  func(d *Decoder, v *T) bool { return d.Null() || s.read(d, field(v)) },
		write: func(e *jsonEncoder, v *T) { s.write(e, field(v)) }}
}

// stringMapMember is a JSON object of strings: null when nil.
func stringMapMember[T any](name string, field func(v *T) *map[string]string) member[T] {
	return member[T]{name: name,
		read:  func(d *Decoder, v *T) bool { return d.StringMap(field(v)) },
		write: func(e *jsonEncoder, v *T) { writeObject(e, *field(v), e.string) }}
}
