package certs

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestReloader: a certificate renewed in place is served from the next
// look at the files; one that does not load leaves the last good one.
func TestReloader(t *testing.T) {
	dir := t.TempDir()
	if err := EnsureCA(dir); err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, "tls.pem"), filepath.Join(dir, "tls-key.pem")
	later := time.Now()
	issueAs := func(host string) {
		t.Helper()
		if err := Issue(dir, []string{host}, certPath, keyPath); err != nil {
			t.Fatal(err)
		}
		// Each write a second later than the last, whatever the file
		// system's clock resolution.
		later = later.Add(time.Second)
		os.Chtimes(certPath, later, later)
		os.Chtimes(keyPath, later, later)
	}
	serves := func(r *Reloader) []string {
		t.Helper()
		c, err := r.GetCertificate(nil)
		if err != nil || c == nil || c.Leaf == nil {
			t.Fatalf("GetCertificate: %v %v", c, err)
		}
		return c.Leaf.DNSNames
	}

	issueAs("old.example.com")
	r, err := NewReloader(certPath, keyPath, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r.interval = 0 // look at the files on every handshake
	if got := serves(r); !slices.Contains(got, "old.example.com") {
		t.Fatalf("serves %v", got)
	}
	issueAs("new.example.com")
	if got := serves(r); !slices.Contains(got, "new.example.com") {
		t.Errorf("after the renewal: serves %v", got)
	}
	os.WriteFile(certPath, []byte("not a certificate"), 0o600)
	later = later.Add(time.Second)
	os.Chtimes(certPath, later, later)
	if got := serves(r); !slices.Contains(got, "new.example.com") {
		t.Errorf("after a bad write: serves %v", got)
	}
	if _, err := NewReloader(filepath.Join(dir, "none.pem"), keyPath, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("NewReloader of a missing file succeeded")
	}
}
