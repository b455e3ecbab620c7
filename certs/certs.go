// Package certs makes the TLS material of a hub that was given none: a
// self-signed CA, which users add to their trust store, and a server
// certificate it signs for the hub's host name and loopback addresses.
package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// File names inside the data folder.
const (
	CAFile        = "ca.pem"
	CAKeyFile     = "ca-key.pem"
	ServerFile    = "server.pem"
	ServerKeyFile = "server-key.pem"
	// The certificate of this node's routes to the other nodes of a
	// cluster (ClusterTLS).
	RouteFile    = "route.pem"
	RouteKeyFile = "route-key.pem"
)

// EnsureServer returns the server certificate in dir, making the CA and
// the certificate when missing, and a new certificate when the one there
// does not cover every name in hosts or expires within 30 days.
func EnsureServer(dir string, hosts []string) (tls.Certificate, error) {
	ca, caKey, err := ensureCA(dir)
	if err != nil {
		return tls.Certificate{}, err
	}
	certPath, keyPath := filepath.Join(dir, ServerFile), filepath.Join(dir, ServerKeyFile)
	if cert, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && covers(cert.Leaf, hosts) {
		return cert, nil
	}
	if err := issue(ca, caKey, hosts, certPath, keyPath); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(certPath, keyPath)
}

// Issue writes a server certificate for hosts, signed by the CA in dir
// (made when missing), and its key: for a service beside the hub whose
// clients trust the hub's CA already (a storage emulator, a load
// balancer).
func Issue(dir string, hosts []string, certPath, keyPath string) error {
	if len(hosts) == 0 {
		return errors.New("a certificate needs at least one host name or address")
	}
	ca, caKey, err := ensureCA(dir)
	if err != nil {
		return err
	}
	return issue(ca, caKey, hosts, certPath, keyPath)
}

// issue makes a server certificate for hosts, valid for two years.
func issue(ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string, certPath, keyPath string) error {
	return issueFor(ca, caKey, hosts, certPath, keyPath, x509.ExtKeyUsageServerAuth)
}

// issueFor is issue for the uses given (a route's certificate serves both
// ends of a mutually authenticated connection).
func issueFor(ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string, certPath, keyPath string, uses ...x509.ExtKeyUsage) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0], Organization: []string{"twinhub"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(2, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  uses,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	return writeKey(keyPath, key)
}

func covers(leaf *x509.Certificate, hosts []string) bool {
	if leaf == nil || time.Until(leaf.NotAfter) < 30*24*time.Hour {
		return false
	}
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

// EnsureCA makes the CA in dir unless it is there already.
func EnsureCA(dir string) error {
	_, _, err := ensureCA(dir)
	return err
}

// CA is the hub's CA as its two PEM files hold it, to share with the
// other nodes of a cluster.
type CA struct {
	Cert []byte `json:"cert"`
	Key  []byte `json:"key"`
}

// LoadCA reads the CA in dir; os.ErrNotExist when dir has none.
func LoadCA(dir string) (CA, error) {
	cert, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return CA{}, err
	}
	key, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return CA{}, err
	}
	return CA{Cert: cert, Key: key}, nil
}

// NewCA makes a CA in dir, which must have none, and returns it.
func NewCA(dir string) (CA, error) {
	if _, err := os.Stat(filepath.Join(dir, CAFile)); err == nil {
		return CA{}, fmt.Errorf("%s has a CA already", dir)
	}
	if _, _, err := ensureCA(dir); err != nil {
		return CA{}, err
	}
	return LoadCA(dir)
}

// Same tells whether c and o hold the same certificate and key, however
// their PEM is laid out.
func (c CA) Same(o CA) bool {
	a, errA := tls.X509KeyPair(c.Cert, c.Key)
	b, errB := tls.X509KeyPair(o.Cert, o.Key)
	if errA != nil || errB != nil {
		return false
	}
	ka, errA := x509.MarshalPKCS8PrivateKey(a.PrivateKey)
	kb, errB := x509.MarshalPKCS8PrivateKey(b.PrivateKey)
	return errA == nil && errB == nil && bytes.Equal(a.Leaf.Raw, b.Leaf.Raw) && bytes.Equal(ka, kb)
}

// Write stores c in dir as the hub's CA, after checking that its
// certificate is a CA and its key belongs to it.
func (c CA) Write(dir string) error {
	pair, err := tls.X509KeyPair(c.Cert, c.Key)
	if err != nil {
		return fmt.Errorf("the shared CA: %w", err)
	}
	if !pair.Leaf.IsCA {
		return errors.New("the shared CA's certificate is not a CA")
	}
	if err := writeFile(filepath.Join(dir, CAKeyFile), c.Key, 0o600); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, CAFile), c.Cert, 0o644)
}

// ensureCA loads the hub's CA from dir, or makes one.
func ensureCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile)
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err == nil {
		key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
		if !ok {
			return nil, nil, fmt.Errorf("%s: the CA key is not ECDSA", keyPath)
		}
		return pair.Leaf, key, nil
	}
	if _, statErr := os.Stat(certPath); !errors.Is(statErr, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("reading the CA in %s: %w", dir, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "twinhub CA", Organization: []string{"twinhub"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, nil, err
	}
	if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

func writePEM(path, kind string, der []byte, mode os.FileMode) error {
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), mode)
}

// writeFile replaces path with data whole (through a rename), so that a
// crash leaves the old file or the new one.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Hosts lists the names a generated server certificate covers: the hub's
// host name, localhost and the loopback addresses, without repeats.
func Hosts(hostname string) []string {
	hosts := []string{hostname}
	for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
		if !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// ClusterTLS is the TLS of a cluster node's routes, from the CA in dir
// that every node of the cluster shares: a certificate for host (made when
// missing or not covering it), used as server and as client, and that CA
// as the only one trusted on either side, so that only nodes holding a
// certificate of this hub's CA can route to this one. TLS 1.2 and 1.3.
func ClusterTLS(dir, host string) (*tls.Config, error) {
	ca, caKey, err := ensureCA(dir)
	if err != nil {
		return nil, err
	}
	certPath, keyPath := filepath.Join(dir, RouteFile), filepath.Join(dir, RouteKeyFile)
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil || !covers(cert.Leaf, []string{host}) {
		if err := issueFor(ca, caKey, []string{host}, certPath, keyPath, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth); err != nil {
			return nil, err
		}
		if cert, err = tls.LoadX509KeyPair(certPath, keyPath); err != nil {
			return nil, err
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}, nil
}

// ClusterSecret is the password of the routes between the nodes of a
// cluster, derived from the CA key in dir, which they share as they share
// the hub: nodes of another hub cannot know it, and nothing more needs
// copying or configuring.
func ClusterSecret(dir string) (string, error) {
	key, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(append([]byte("twinhub cluster routes\n"), key...))
	return hex.EncodeToString(sum[:]), nil
}
