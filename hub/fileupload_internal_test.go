package hub

import (
	"strings"
	"testing"
	"time"

	"github.com/twinhub/twinhub/sas"
)

func uploadTestHub(t testing.TB) *Hub {
	policies, err := sas.DefaultPolicies()
	if err != nil {
		t.Fatal(err)
	}
	return &Hub{host: "hub.example", policies: policies}
}

// TestUploadCorrelation: a correlation id names its blob for the hub that
// made it, until the upload's time has run out, and nothing else.
func TestUploadCorrelation(t *testing.T) {
	h := uploadTestHub(t)
	c := h.uploadCorrelation("dev/a/b.txt", time.Now().Add(time.Hour))
	if blob, ok := h.readUploadCorrelation(c); !ok || blob != "dev/a/b.txt" {
		t.Errorf("read back %q, %v", blob, ok)
	}
	other := uploadTestHub(t) // other keys
	if _, ok := other.readUploadCorrelation(c); ok {
		t.Error("another hub's correlation id was taken")
	}
	expired := h.uploadCorrelation("dev/x", time.Now().Add(-2*time.Hour-time.Second))
	if _, ok := h.readUploadCorrelation(expired); ok {
		t.Error("an expired correlation id was taken")
	}
	for _, bad := range []string{"", "x", c[:len(c)-1], strings.ToUpper(c), c + "A"} {
		if _, ok := h.readUploadCorrelation(bad); ok {
			t.Errorf("%q was taken", bad)
		}
	}
}

// FuzzUploadCorrelation: whatever a device sends as a correlation id, the
// hub answers without a panic, and takes only ids it made.
func FuzzUploadCorrelation(f *testing.F) {
	h := uploadTestHub(f)
	good := h.uploadCorrelation("dev/file.bin", time.Now().Add(time.Hour))
	f.Add(good)
	f.Add("")
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, s string) {
		blob, ok := h.readUploadCorrelation(s)
		if ok && s != good {
			// Another encoding of the same bytes is the same id.
			if blob != "dev/file.bin" {
				t.Fatalf("%q taken as %q", s, blob)
			}
		}
	})
}
