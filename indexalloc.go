package twinhub

// Code below is written out by hand from a table: one type per size.

// newFlatTwin allocates a flatTwin with room for n fields in the same
// allocation, right after the header, so that a scan that reads a twin
// finds its fields in the next cache lines instead of a far-away array.
// The sizes are chosen to fill Go's allocation size classes.
func newFlatTwin(n int) *flatTwin {
	switch {
	case n <= 5:
		x := new(flatTwin5)
		x.fields = x.f[:n:n]
		return &x.flatTwin
	case n <= 8:
		x := new(flatTwin8)
		x.fields = x.f[:n:n]
		return &x.flatTwin
	case n <= 13:
		x := new(flatTwin13)
		x.fields = x.f[:n:n]
		return &x.flatTwin
	case n <= 16:
		x := new(flatTwin16)
		x.fields = x.f[:n:n]
		return &x.flatTwin
	case n <= 21:
		x := new(flatTwin21)
		x.fields = x.f[:n:n]
		return &x.flatTwin
	case n <= 25:
		x := new(flatTwin25)
		x.fields = x.f[:n:n]
		return &x.flatTwin
	case n <= 29:
		x := new(flatTwin29)
		x.fields = x.f[:n:n]
		return &x.flatTwin
	case n <= 33:
		x := new(flatTwin33)
		x.fields = x.f[:n:n]
		return &x.flatTwin
	case n <= 37:
		x := new(flatTwin37)
		x.fields = x.f[:n:n]
		return &x.flatTwin
	case n <= 45:
		x := new(flatTwin45)
		x.fields = x.f[:n:n]
		return &x.flatTwin
	case n <= 53:
		x := new(flatTwin53)
		x.fields = x.f[:n:n]
		return &x.flatTwin
	case n <= 61:
		x := new(flatTwin61)
		x.fields = x.f[:n:n]
		return &x.flatTwin
	case n <= 69:
		x := new(flatTwin69)
		x.fields = x.f[:n:n]
		return &x.flatTwin
	case n <= 77:
		x := new(flatTwin77)
		x.fields = x.f[:n:n]
		return &x.flatTwin
	case n <= 85:
		x := new(flatTwin85)
		x.fields = x.f[:n:n]
		return &x.flatTwin
	case n <= 101:
		x := new(flatTwin101)
		x.fields = x.f[:n:n]
		return &x.flatTwin
	case n <= 117:
		x := new(flatTwin117)
		x.fields = x.f[:n:n]
		return &x.flatTwin
	}
	return &flatTwin{fields: make([]field, n)}
}

type flatTwin5 struct {
	flatTwin
	f [5]field
}

type flatTwin8 struct {
	flatTwin
	f [8]field
}

type flatTwin13 struct {
	flatTwin
	f [13]field
}

type flatTwin16 struct {
	flatTwin
	f [16]field
}

type flatTwin21 struct {
	flatTwin
	f [21]field
}

type flatTwin25 struct {
	flatTwin
	f [25]field
}

type flatTwin29 struct {
	flatTwin
	f [29]field
}

type flatTwin33 struct {
	flatTwin
	f [33]field
}

type flatTwin37 struct {
	flatTwin
	f [37]field
}

type flatTwin45 struct {
	flatTwin
	f [45]field
}

type flatTwin53 struct {
	flatTwin
	f [53]field
}

type flatTwin61 struct {
	flatTwin
	f [61]field
}

type flatTwin69 struct {
	flatTwin
	f [69]field
}

type flatTwin77 struct {
	flatTwin
	f [77]field
}

type flatTwin85 struct {
	flatTwin
	f [85]field
}

type flatTwin101 struct {
	flatTwin
	f [101]field
}

type flatTwin117 struct {
	flatTwin
	f [117]field
}
