package hub

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/twinhub/twinhub"
)

// AuthenticateDeviceX509 checks the TLS client certificate chain that a
// device or module presents to act as k, the way IoT Hub does:
//
//   - an identity registered as selfSigned must present a certificate
//     whose SHA-1 or SHA-256 thumbprint is its primary or secondary
//     thumbprint, within the certificate's validity period;
//   - an identity registered as certificateAuthority must present a
//     certificate that chains up to one of roots (the hub's device CAs,
//     --device-ca), usable for client authentication, whose subject common
//     name is the device id (for a module, "<device id>/<module id>").
//
// chain[0] is the leaf, the rest intermediates as the client sent them.
// The TLS layer has already checked that the client holds the leaf's
// private key. The identity (and a module's device) must exist and be
// enabled. It says how the identity authenticated (the authentication type
// that admitted the client).
func (h *Hub) AuthenticateDeviceX509(ctx context.Context, k twinhub.Key, chain []*x509.Certificate, roots *x509.CertPool) (DeviceAuth, error) {
	if len(chain) == 0 {
		return DeviceAuth{}, unauthorized(errors.New("no client certificate"))
	}
	e, err := h.read(ctx, k)
	if notFound(err) {
		return DeviceAuth{}, unauthorized(fmt.Errorf("%s is not registered", k))
	} else if err != nil {
		return DeviceAuth{}, err
	}
	rec := e.rec
	if err := h.checkEnabled(ctx, rec); err != nil {
		return DeviceAuth{}, err
	}
	leaf := chain[0]
	now := twinhub.Now().Time
	a := rec.Auth()
	switch a.Type {
	case twinhub.AuthSelfSigned:
		if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
			return DeviceAuth{}, unauthorized(fmt.Errorf("the certificate of %s is not valid at this time", k))
		}
		if !thumbprintMatches(leaf, a.X509Thumbprint) {
			return DeviceAuth{}, unauthorized(fmt.Errorf("the certificate's thumbprint is not one registered for %s", k))
		}
		return DeviceAuth{Method: twinhub.AuthSelfSigned, GenerationID: rec.GenerationID()}, nil
	case twinhub.AuthCertificateAuthority:
		if roots == nil {
			return DeviceAuth{}, unauthorized(fmt.Errorf("%s authenticates with a CA-signed certificate, and the hub has no device CA", k))
		}
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		_, err := leaf.Verify(x509.VerifyOptions{
			Roots:         roots,
			Intermediates: inter,
			CurrentTime:   now,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
		if err != nil {
			return DeviceAuth{}, unauthorized(fmt.Errorf("the certificate of %s does not verify against the device CAs: %v", k, err))
		}
		if leaf.Subject.CommonName != k.String() {
			return DeviceAuth{}, unauthorized(fmt.Errorf("the certificate's common name %q is not %q", leaf.Subject.CommonName, k.String()))
		}
		return DeviceAuth{Method: twinhub.AuthCertificateAuthority, GenerationID: rec.GenerationID()}, nil
	}
	return DeviceAuth{}, unauthorized(fmt.Errorf("%s does not authenticate with X.509 certificates", k))
}

// thumbprintMatches compares the leaf's SHA-1 and SHA-256 digests with the
// registered thumbprints; IoT Hub accepts either kind, in either case.
func thumbprintMatches(leaf *x509.Certificate, t twinhub.X509Thumbprint) bool {
	s1 := sha1.Sum(leaf.Raw)
	s256 := sha256.Sum256(leaf.Raw)
	got := []string{hex.EncodeToString(s1[:]), hex.EncodeToString(s256[:])}
	for _, want := range []*string{t.PrimaryThumbprint, t.SecondaryThumbprint} {
		if want == nil || *want == "" {
			continue
		}
		for _, g := range got {
			if strings.EqualFold(*want, g) {
				return true
			}
		}
	}
	return false
}

// Thumbprint is the SHA-1 thumbprint of a certificate as IoT Hub shows
// thumbprints: upper-case hex. Tests and tools register devices with it.
func Thumbprint(cert *x509.Certificate) string {
	s := sha1.Sum(cert.Raw)
	return strings.ToUpper(hex.EncodeToString(s[:]))
}
