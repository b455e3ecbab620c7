package certs

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// ReloadInterval is how often a Reloader looks at its files.
const ReloadInterval = 10 * time.Second

// Reloader serves a certificate from PEM files that an operator renews in
// place (a certificate from a public CA lasts 90 days or less): after a
// file changes, the next handshake gets the new certificate, without a
// restart and without dropping a connection. A change that does not load
// (a key written before its certificate, a bad file) is logged and the
// certificate in use stays until the pair loads.
type Reloader struct {
	certPath, keyPath string
	log               *slog.Logger
	interval          time.Duration

	mu        sync.Mutex
	cert      *tls.Certificate
	certMod   time.Time
	keyMod    time.Time
	lastCheck time.Time
}

// NewReloader loads the pair, failing if it does not load now.
func NewReloader(certPath, keyPath string, log *slog.Logger) (*Reloader, error) {
	r := &Reloader{certPath: certPath, keyPath: keyPath, log: log, interval: ReloadInterval}
	if err := r.load(); err != nil {
		return nil, err
	}
	r.lastCheck = time.Now()
	return r, nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.lastCheck) >= r.interval {
		r.lastCheck = time.Now()
		if r.changed() {
			if err := r.load(); err != nil {
				r.log.Warn("the renewed TLS certificate does not load; serving the one before", "cert", r.certPath, "key", r.keyPath, "err", err)
			} else {
				r.log.Info("TLS certificate reloaded", "cert", r.certPath, "not_after", r.cert.Leaf.NotAfter)
			}
		}
	}
	return r.cert, nil
}

// changed says whether either file's modification time moved since the
// pair in use was loaded. Called with mu held.
func (r *Reloader) changed() bool {
	c, err1 := os.Stat(r.certPath)
	k, err2 := os.Stat(r.keyPath)
	if err1 != nil || err2 != nil {
		return false // being replaced; look again later
	}
	return !c.ModTime().Equal(r.certMod) || !k.ModTime().Equal(r.keyMod)
}

// load reads the pair and the files' times. Called with mu held (or
// before r is shared).
func (r *Reloader) load() error {
	c, err := os.Stat(r.certPath)
	if err != nil {
		return err
	}
	k, err := os.Stat(r.keyPath)
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(r.certPath, r.keyPath)
	if err != nil {
		return fmt.Errorf("loading %s and %s: %w", r.certPath, r.keyPath, err)
	}
	r.cert, r.certMod, r.keyMod = &cert, c.ModTime(), k.ModTime()
	return nil
}
