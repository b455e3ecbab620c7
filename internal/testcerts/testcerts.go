// Package testcerts makes the X.509 certificates that tests of device
// authentication present: self-signed device certificates, device CAs and
// certificates they sign. Each is a fresh P-256 key, so two certificates
// for the same name still have different thumbprints, as two devices
// would. Server certificates come from package certs, as in `twinhub
// serve` (HubServer).
package testcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twinhub/twinhub/certs"
)

// Options shape a certificate. The zero value is a self-signed end
// certificate without extended key usage, valid from an hour ago for a
// day.
type Options struct {
	// CA makes a certificate that may sign others.
	CA bool
	// Parent and ParentKey sign the certificate; without a Parent it
	// signs itself.
	Parent    *x509.Certificate
	ParentKey *ecdsa.PrivateKey
	// NotBefore starts the day the certificate is valid; zero means an
	// hour ago, so that clocks a little apart still accept it.
	NotBefore time.Time
	// ExtKeyUsage is put in the certificate as it is: a test of what the
	// hub accepts needs certificates with none or the wrong one.
	ExtKeyUsage []x509.ExtKeyUsage
}

// New makes a certificate for the common name cn. The result has its
// Leaf set and an *ecdsa.PrivateKey as its PrivateKey.
func New(t testing.TB, cn string, o Options) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	notBefore := o.NotBefore
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           o.ExtKeyUsage,
		BasicConstraintsValid: o.CA,
		IsCA:                  o.CA,
	}
	if o.CA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	parent, parentKey := o.Parent, o.ParentKey
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// CA makes a self-signed device CA, the kind a hub trusts with
// --device-ca.
func CA(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	return New(t, cn, Options{CA: true})
}

// Device makes a device's client certificate for cn (the device id),
// signed by ca, or by itself when ca is nil.
func Device(t testing.TB, cn string, ca *tls.Certificate) tls.Certificate {
	t.Helper()
	o := Options{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if ca != nil {
		o.Parent, o.ParentKey = ca.Leaf, ca.PrivateKey.(*ecdsa.PrivateKey)
	}
	return New(t, cn, o)
}

// HubServer makes the TLS certificate of a hub serving host the way
// `twinhub serve` does (package certs, its own CA in a temporary folder)
// and returns it with a pool of that CA, for the clients, and the folder.
func HubServer(t testing.TB, host string) (cert tls.Certificate, roots *x509.CertPool, dir string) {
	t.Helper()
	dir = t.TempDir()
	cert, err := certs.EnsureServer(dir, certs.Hosts(host))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, certs.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("no certificate in %s", certs.CAFile)
	}
	return cert, roots, dir
}
