package testcerts

import (
	"crypto/x509"
	"testing"
	"time"
)

// TestChain: a device certificate that a CA signed verifies against that
// CA for client authentication; a self-signed one does not.
func TestChain(t *testing.T) {
	ca := CA(t, "test CA")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Leaf)
	opts := x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := Device(t, "dev", &ca).Leaf.Verify(opts); err != nil {
		t.Errorf("signed device: %v", err)
	}
	if _, err := Device(t, "dev", nil).Leaf.Verify(opts); err == nil {
		t.Error("self-signed device verified against the CA")
	}
	old := New(t, "old", Options{NotBefore: time.Now().Add(-48 * time.Hour)})
	if old.Leaf.NotAfter.After(time.Now()) || old.Leaf.ExtKeyUsage != nil || old.Leaf.IsCA {
		t.Errorf("expired end certificate: until %v, EKU %v, CA %v", old.Leaf.NotAfter, old.Leaf.ExtKeyUsage, old.Leaf.IsCA)
	}
}
