package index

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// TestFlatTwinSizeClasses: each of newFlatTwin's types fills one of Go's
// allocation size classes (runtime/sizeclasses.go, from 256 bytes up) but
// for less than a field: the rest of the class would be a million twins'
// waste. Above 512 bytes an object with pointers also carries Go's 8-byte
// malloc header. A field added to flatTwin changes the header: the types'
// field counts then need choosing again.
func TestFlatTwinSizeClasses(t *testing.T) {
	classes := []uintptr{256, 288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896,
		1024, 1152, 1280, 1408, 1536, 1792, 2048}
	for _, v := range []any{flatTwin6{}, flatTwin8{}, flatTwin10{}, flatTwin14{}, flatTwin18{}, flatTwin21{},
		flatTwin25{}, flatTwin29{}, flatTwin33{}, flatTwin41{}, flatTwin49{}, flatTwin57{}, flatTwin65{},
		flatTwin73{}, flatTwin81{}, flatTwin97{}, flatTwin113{}} {
		size := reflect.TypeOf(v).Size()
		if size > 512 {
			size += 8
		}
		i := slices.IndexFunc(classes, func(c uintptr) bool { return c >= size })
		if i < 0 || classes[i]-size >= unsafe.Sizeof(field{}) {
			t.Errorf("%T takes %d bytes (header %d), not a size class less a field", v, size, unsafe.Sizeof(flatTwin{}))
		}
	}
}

// TestNewFlatTwinLayout: the fields, the stamps and the bytes that
// newFlatTwin places side by side keep what was put in them, for every
// size class and past the largest.
func TestNewFlatTwinLayout(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		n, ns, nd := r.IntN(40), r.IntN(20), r.IntN(600)
		stamps := make([]stamp, ns)
		for i := range stamps {
			stamps[i] = stamp{sec: r.Int64(), nsec: r.Int32(), zero: r.IntN(2) == 0, ver: r.Int64()}
		}
		data := make([]byte, nd)
		for i := range data {
			data[i] = byte(r.IntN(256))
		}
		ft := newFlatTwin(n, stamps, data)
		fields := make([]field, n)
		for i := range fields {
			fields[i] = field{path: pathID(r.Uint32()), kind: fieldKind(r.IntN(8)), stamp: uint16(r.IntN(ns + 1)), v: r.Uint64()}
		}
		copy(ft.fields, fields)
		if len(ft.fields) != n || !slices.Equal(ft.fields, fields) || !slices.Equal(ft.stamps, stamps) || ft.data != string(data) {
			t.Fatalf("%d fields, %d stamps, %d bytes: not kept", n, ns, nd)
		}
	}
}

// TestNodeSizeClasses: each node type of newNode fills a size class of
// Go's allocator exactly, so the key's bytes come free of waste.
func TestNodeSizeClasses(t *testing.T) {
	classes := []uintptr{48, 64, 80, 96, 112, 128}
	for i, v := range []any{nodeKey8{}, nodeKey24{}, nodeKey40{}, nodeKey56{}, nodeKey72{}, nodeKey88{}} {
		if size := reflect.TypeOf(v).Size(); size != classes[i] {
			t.Errorf("%T takes %d bytes (node %d), not the size class %d", v, size, unsafe.Sizeof(node{}), classes[i])
		}
	}
}

// TestNewNode: a node keeps its key, in its own allocation (one
// allocation, the key's bytes inside the node's) up to the largest
// buffer, and as given past it.
func TestNewNode(t *testing.T) {
	for l := range 120 {
		key := strings.Repeat("k", l)
		n := newNode(key)
		if n.key != key || n.twin.Load() != nil || n.chunk != nil {
			t.Fatalf("key of %d bytes: node %+v", l, n)
		}
		if l == 0 || l > 88 {
			continue
		}
		start, at := uintptr(unsafe.Pointer(n)), uintptr(unsafe.Pointer(unsafe.StringData(n.key)))
		if at < start+unsafe.Sizeof(node{}) || at+uintptr(l) > start+unsafe.Sizeof(node{})+88 {
			t.Errorf("key of %d bytes at %#x, outside its node at %#x", l, at, start)
		}
		if allocs := testing.AllocsPerRun(10, func() { sinkNode = newNode(key) }); allocs != 1 {
			t.Errorf("key of %d bytes: %v allocations a node", l, allocs)
		}
	}
}

var sinkNode *node
