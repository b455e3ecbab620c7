package index

import "unsafe"

// newFlatTwin allocates a flatTwin with its n fields, a copy of its
// stamps and the bytes of its string values in the same allocation, right
// after the header, so that a scan that reads a twin finds what it needs
// in the next cache lines (and the same memory page) instead of in
// far-away arrays, and the collector has one object a twin to mark, not
// two (the stamps were 1.3 million objects of their own at a million
// twins). The sizes are chosen to fill Go's allocation size classes
// (TestFlatTwinSizeClasses). The stamps, then the bytes, go in the field
// slots after the fields (memory without pointers, as they are); stamps
// and data are views of them, never written again.
func newFlatTwin(n int, stamps []stamp, data []byte) *flatTwin {
	stampBytes := len(stamps) * int(unsafe.Sizeof(stamp{}))
	stampSlots := (stampBytes + fieldSize - 1) / fieldSize
	total := n + stampSlots + (len(data)+fieldSize-1)/fieldSize
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
	if len(stamps) > 0 {
		t.stamps = unsafe.Slice((*stamp)(unsafe.Pointer(&all[n])), len(stamps))
		copy(t.stamps, stamps)
	}
	if len(data) > 0 {
		at := n + stampSlots
		tail := unsafe.Slice((*byte)(unsafe.Pointer(&all[at])), (total-at)*fieldSize)
		copy(tail, data)
		t.data = unsafe.String(&tail[0], len(data))
	}
	return t
}

// fieldSize is the size of a field slot, in which newFlatTwin also puts
// stamps (8-byte aligned, as a field is) and bytes.
const fieldSize = int(unsafe.Sizeof(field{}))

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

// newNode allocates a node with a copy of its key in the same allocation,
// after the node's fields: at a million twins the keys were a million
// objects of their own for the collector to mark (strings the store's
// decoder made), and a node of 40 bytes left 8 of its 48-byte size class
// unused. The table's map, the node and its twins' identities all share
// the one copy. The buffers fill Go's size classes (TestNodeSizeClasses);
// a key longer than the largest keeps its own allocation.
func newNode(key string) *node {
	var n *node
	var buf []byte
	switch {
	case len(key) <= 8:
		x := new(nodeKey8)
		n, buf = &x.node, x.k[:]
	case len(key) <= 24:
		x := new(nodeKey24)
		n, buf = &x.node, x.k[:]
	case len(key) <= 40:
		x := new(nodeKey40)
		n, buf = &x.node, x.k[:]
	case len(key) <= 56:
		x := new(nodeKey56)
		n, buf = &x.node, x.k[:]
	case len(key) <= 72:
		x := new(nodeKey72)
		n, buf = &x.node, x.k[:]
	case len(key) <= 88:
		x := new(nodeKey88)
		n, buf = &x.node, x.k[:]
	default:
		return &node{key: key}
	}
	if len(key) > 0 {
		copy(buf, key)
		n.key = unsafe.String(&buf[0], len(key))
	}
	return n
}

type nodeKey8 struct {
	node
	k [8]byte
}

type nodeKey24 struct {
	node
	k [24]byte
}

type nodeKey40 struct {
	node
	k [40]byte
}

type nodeKey56 struct {
	node
	k [56]byte
}

type nodeKey72 struct {
	node
	k [72]byte
}

type nodeKey88 struct {
	node
	k [88]byte
}
