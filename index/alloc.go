package index

import "unsafe"

// newFlatTwin allocates a flatTwin with its n fields and the bytes of its
// string values in the same allocation, right after the header, so that a
// scan that reads a twin finds what it needs in the next cache lines (and
// the same memory page) instead of in far-away arrays. The sizes are
// chosen to fill Go's allocation size classes (TestFlatTwinSizeClasses). The bytes go in the field
// slots after the fields, and data is a string over them: they are never
// written again.
func newFlatTwin(n int, data []byte) *flatTwin {
	total := n + (len(data)+15)/16
	var t *flatTwin
	var all []field
	switch {
	case total <= 6:
		x := new(flatTwin6)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 8:
		x := new(flatTwin8)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 10:
		x := new(flatTwin10)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 14:
		x := new(flatTwin14)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 18:
		x := new(flatTwin18)
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
	case total <= 41:
		x := new(flatTwin41)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 49:
		x := new(flatTwin49)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 57:
		x := new(flatTwin57)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 65:
		x := new(flatTwin65)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 73:
		x := new(flatTwin73)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 81:
		x := new(flatTwin81)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 97:
		x := new(flatTwin97)
		t, all = &x.flatTwin, x.f[:total:total]
	case total <= 113:
		x := new(flatTwin113)
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

type flatTwin6 struct {
	flatTwin
	f [6]field
}

type flatTwin8 struct {
	flatTwin
	f [8]field
}

type flatTwin10 struct {
	flatTwin
	f [10]field
}

type flatTwin14 struct {
	flatTwin
	f [14]field
}

type flatTwin18 struct {
	flatTwin
	f [18]field
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

type flatTwin41 struct {
	flatTwin
	f [41]field
}

type flatTwin49 struct {
	flatTwin
	f [49]field
}

type flatTwin57 struct {
	flatTwin
	f [57]field
}

type flatTwin65 struct {
	flatTwin
	f [65]field
}

type flatTwin73 struct {
	flatTwin
	f [73]field
}

type flatTwin81 struct {
	flatTwin
	f [81]field
}

type flatTwin97 struct {
	flatTwin
	f [97]field
}

type flatTwin113 struct {
	flatTwin
	f [113]field
}
