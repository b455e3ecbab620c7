package hub_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/internal/testcerts"
)

// testCert makes a certificate for cn, signed by parent (self-signed when
// parent is nil), valid from notBefore for a day.
func testCert(t *testing.T, cn string, isCA bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, notBefore time.Time, eku ...x509.ExtKeyUsage) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	c := testcerts.New(t, cn, testcerts.Options{CA: isCA, Parent: parent, ParentKey: parentKey, NotBefore: notBefore, ExtKeyUsage: eku})
	return c.Leaf, c.PrivateKey.(*ecdsa.PrivateKey)
}

func TestAuthenticateDeviceX509(t *testing.T) {
	ctx := context.Background()
	h, _ := newTestHub(t)
	now := time.Now().Add(-time.Hour)
	clientAuth := x509.ExtKeyUsageClientAuth

	self, _ := testCert(t, "self", false, nil, nil, now, clientAuth)
	self2, _ := testCert(t, "self", false, nil, nil, now, clientAuth)
	expired, _ := testCert(t, "self", false, nil, nil, now.Add(-48*time.Hour), clientAuth)
	sum := sha256.Sum256(self.Raw)
	sha1Print := hub.Thumbprint(self)
	sha256Print := hex.EncodeToString(sum[:])
	expiredPrint := hub.Thumbprint(expired)
	for id, tp := range map[string]string{"self": sha1Print, "self256": strings.ToLower(sha256Print), "expired": expiredPrint} {
		if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: id, Authentication: twinhub.Authentication{
			Type: twinhub.AuthSelfSigned, X509Thumbprint: twinhub.X509Thumbprint{PrimaryThumbprint: &tp},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	secondary := sha1Print
	if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: "self-secondary", Authentication: twinhub.Authentication{
		Type: twinhub.AuthSelfSigned, X509Thumbprint: twinhub.X509Thumbprint{SecondaryThumbprint: &secondary},
	}}); err != nil {
		t.Fatal(err)
	}

	ca, caKey := testCert(t, "device CA", true, nil, nil, now)
	otherCA, otherKey := testCert(t, "other CA", true, nil, nil, now)
	inter, interKey := testCert(t, "intermediate", true, ca, caKey, now)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	signed, _ := testCert(t, "ca-dev", false, ca, caKey, now, clientAuth)
	noEKU, _ := testCert(t, "ca-dev", false, ca, caKey, now)
	serverOnly, _ := testCert(t, "ca-dev", false, ca, caKey, now, x509.ExtKeyUsageServerAuth)
	viaInter, _ := testCert(t, "ca-dev", false, inter, interKey, now, clientAuth)
	wrongCN, _ := testCert(t, "someone-else", false, ca, caKey, now, clientAuth)
	foreign, _ := testCert(t, "ca-dev", false, otherCA, otherKey, now, clientAuth)
	modCert, _ := testCert(t, "ca-dev/m1", false, ca, caKey, now, clientAuth)
	for _, id := range []string{"ca-dev", "ca-disabled"} {
		if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: id, Authentication: twinhub.Authentication{Type: twinhub.AuthCertificateAuthority}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.CreateModule(ctx, twinhub.Module{DeviceID: "ca-dev", ModuleID: "m1", Authentication: twinhub.Authentication{Type: twinhub.AuthCertificateAuthority}}); err != nil {
		t.Fatal(err)
	}
	disabled, _ := testCert(t, "ca-disabled", false, ca, caKey, now, clientAuth)
	if _, err := h.UpdateDevice(ctx, twinhub.Device{DeviceID: "ca-disabled", Status: twinhub.StatusDisabled, Authentication: twinhub.Authentication{Type: twinhub.AuthCertificateAuthority}}, "*"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: "sas-dev"}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		id    twinhub.Key
		chain []*x509.Certificate
		roots *x509.CertPool
		want  string // authentication type, or "" for a refusal
	}{
		{"self-signed, SHA-1 thumbprint", twinhub.DeviceKey("self"), []*x509.Certificate{self}, nil, twinhub.AuthSelfSigned},
		{"self-signed, SHA-256 thumbprint in lower case", twinhub.DeviceKey("self256"), []*x509.Certificate{self}, nil, twinhub.AuthSelfSigned},
		{"self-signed, secondary thumbprint", twinhub.DeviceKey("self-secondary"), []*x509.Certificate{self}, nil, twinhub.AuthSelfSigned},
		{"self-signed, another certificate", twinhub.DeviceKey("self"), []*x509.Certificate{self2}, nil, ""},
		{"self-signed, expired", twinhub.DeviceKey("expired"), []*x509.Certificate{expired}, nil, ""},
		{"self-signed certificate of another device", twinhub.DeviceKey("self256"), []*x509.Certificate{self2}, nil, ""},
		{"CA-signed", twinhub.DeviceKey("ca-dev"), []*x509.Certificate{signed}, roots, twinhub.AuthCertificateAuthority},
		{"CA-signed without extended key usage", twinhub.DeviceKey("ca-dev"), []*x509.Certificate{noEKU}, roots, twinhub.AuthCertificateAuthority},
		{"CA-signed through an intermediate", twinhub.DeviceKey("ca-dev"), []*x509.Certificate{viaInter, inter}, roots, twinhub.AuthCertificateAuthority},
		{"CA-signed, intermediate missing", twinhub.DeviceKey("ca-dev"), []*x509.Certificate{viaInter}, roots, ""},
		{"CA-signed for server use only", twinhub.DeviceKey("ca-dev"), []*x509.Certificate{serverOnly}, roots, ""},
		{"CA-signed, CN of another device", twinhub.DeviceKey("ca-dev"), []*x509.Certificate{wrongCN}, roots, ""},
		{"signed by a CA the hub does not trust", twinhub.DeviceKey("ca-dev"), []*x509.Certificate{foreign}, roots, ""},
		{"CA-signed, hub has no device CA", twinhub.DeviceKey("ca-dev"), []*x509.Certificate{signed}, nil, ""},
		{"the CA's own certificate", twinhub.DeviceKey("ca-dev"), []*x509.Certificate{ca}, roots, ""},
		{"module, CN device/module", twinhub.ModuleKey("ca-dev", "m1"), []*x509.Certificate{modCert}, roots, twinhub.AuthCertificateAuthority},
		{"module with its device's certificate", twinhub.ModuleKey("ca-dev", "m1"), []*x509.Certificate{signed}, roots, ""},
		{"disabled device", twinhub.DeviceKey("ca-disabled"), []*x509.Certificate{disabled}, roots, ""},
		{"SAS device with a certificate", twinhub.DeviceKey("sas-dev"), []*x509.Certificate{self}, roots, ""},
		{"unknown device", twinhub.DeviceKey("nobody"), []*x509.Certificate{self}, roots, ""},
		{"no certificate", twinhub.DeviceKey("self"), nil, roots, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := h.AuthenticateDeviceX509(ctx, tc.id, tc.chain, tc.roots)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("accepted as %+v, want a refusal", got)
				}
				if statusOf(err) != 401 {
					t.Fatalf("refusal %v is not a 401", err)
				}
				return
			}
			if err != nil || got.Method != tc.want || got.GenerationID == "" {
				t.Fatalf("got %+v, %v; want %q with the identity's generationId", got, err, tc.want)
			}
		})
	}
}
