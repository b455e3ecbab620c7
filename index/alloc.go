package index

import "unsafe"

// newFlatTwin allocates a flatTwin with its n fields and the bytes of its
// string values in the same allocation, right after the header, so that a
// scan that reads a twin finds what it needs in the next cache lines (and
// the same memory page) instead of in far-away arrays. The sizes are
// chosen to fill Go's allocation size classes. The bytes go in the field
// slots after the fields, and data is a string over them: they are never
// written again.
func newFlatTwin(n int, data []byte) *flatTwin {
	total := n + (len(data)+15)/16
	var t *flatTwin
	var all []field
	switch {
	case total <= 5:
		x := new(flatTwin5)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 8:
		x := new(flatTwin8)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 13:
		x := new(flatTwin13)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 16:
		x := new(flatTwin16)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 21:
		x := new(flatTwin21)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 25:
		x := new(flatTwin25)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 29:
		x := new(flatTwin29)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 33:
		x := new(flatTwin33)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 37:
		x := new(flatTwin37)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 45:
		x := new(flatTwin45)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 53:
		x := new(flatTwin53)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 61:
		x := new(flatTwin61)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 69:
		x := new(flatTwin69)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 77:
		x := new(flatTwin77)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 85:
		x := new(flatTwin85)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 101:
		x := new(flatTwin101)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 117:
		x := new(flatTwin117)
		t, all = &x.flatTwin, x.f[:total:total]
	default:
		t, all = &flatTwin{}, make([]field, total)
	}
	t.fields = all[:n:n]
	if len(data) > 0 {
		tail := unsafe.Slice((*byte)(unsafe.Pointer(&all[n])), (total-n)*16)
		copy(tail, data)
		t.data = unsafe.String(&tail[0], len(data))
	}
	return t
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
