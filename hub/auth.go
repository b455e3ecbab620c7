package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/sas"
)

// Authorization of back ends (service SAS tokens, scoped by resource) and
// authentication of devices and modules by SAS token; X.509 is in x509.go.

// AuthorizeService checks a back end's SAS token for an operation on the
// hub as a whole: the token's resource must be the hub's host, and its
// policy must have at least one of the rights the operation accepts.
func (h *Hub) AuthorizeService(token string, anyOf ...sas.Permission) error {
	return h.AuthorizeServiceOn(token, "", anyOf...)
}

// AuthorizeServiceOn checks a back end's SAS token for an operation on
// resource, the path below the hub's host that the operation touches (such
// as "/devices/dev1" or "/twins/dev1/methods"; "" for the hub itself), and
// that its policy has at least one of the rights the operation accepts.
//
// IoT Hub treats a token's resource URI (sr) as the "URI prefix (by
// segment) of the endpoints that can be accessed with this token"
// (iot-hub-dev-guide-sas.md): a policy token for "<host>/devices/dev1" is
// good for "<host>/devices/dev1" and "<host>/devices/dev1/modules/m1", not
// for "<host>/devices/dev10", "<host>/twins/dev1" or the hub as a whole.
// sas.Token.Covers makes that comparison, after the normalizations twinhub
// applies to every sr (host case, scheme, trailing "/", the double
// encoding of some SDKs). The caller maps its request to resource; a
// resource it cannot name with confidence must be "", so that only
// hub-wide tokens pass.
func (h *Hub) AuthorizeServiceOn(token, resource string, anyOf ...sas.Permission) error {
	p, err := h.verified.Authenticate(token, h.policies, h.host+resource, twinhub.Now().Time)
	if err != nil {
		return unauthorized(err)
	}
	for _, need := range anyOf {
		if p.Rights.Has(need) {
			return nil
		}
	}
	return twinhub.Errorf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "the policy %s does not grant the right this operation needs", p.Name)
}

func unauthorized(err error) *twinhub.Error {
	return twinhub.Errorf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "Unauthorized: %v", err)
}

// DeviceAuth is how a device or module authenticated: its method (sas,
// selfSigned, certificateAuthority) and its identity's generationId then,
// which its events carry (iothub-connection-auth-method and
// iothub-connection-auth-generation-id).
type DeviceAuth struct {
	Method       string
	GenerationID string
}

// AuthenticateDevice checks a token that a device or module presents to
// act as k: signed with k's own key for k's resource, or with a policy
// that grants DeviceConnect. The identity (and, for a module, its device)
// must exist and be enabled. It says how the identity authenticated.
func (h *Hub) AuthenticateDevice(ctx context.Context, token string, k twinhub.Key) (DeviceAuth, error) {
	t, err := sas.ParseToken(token)
	if err != nil {
		return DeviceAuth{}, unauthorized(err)
	}
	if err := t.CheckTime(twinhub.Now().Time); err != nil {
		return DeviceAuth{}, unauthorized(err)
	}
	if !t.Covers(h.ResourceURI(k)) {
		return DeviceAuth{}, unauthorized(sas.ErrResource)
	}
	if t.KeyName != "" {
		p, err := h.verified.Authenticate(token, h.policies, h.ResourceURI(k), twinhub.Now().Time)
		if err != nil {
			return DeviceAuth{}, unauthorized(err)
		}
		if !p.Rights.Has(sas.DeviceConnect) {
			return DeviceAuth{}, unauthorized(fmt.Errorf("policy %s does not grant DeviceConnect", p.Name))
		}
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
	auth := DeviceAuth{Method: "sas", GenerationID: rec.GenerationID()}
	if t.KeyName != "" {
		return auth, nil
	}
	a := rec.Auth()
	if a.Type != twinhub.AuthSAS {
		return DeviceAuth{}, unauthorized(fmt.Errorf("%s does not authenticate with symmetric keys", k))
	}
	if err := t.Verify(a.SymmetricKey.PrimaryKey, a.SymmetricKey.SecondaryKey); err != nil {
		return DeviceAuth{}, unauthorized(err)
	}
	return auth, nil
}

// notFound tells the hub's not-found errors (errNotFound) from others.
func notFound(err error) bool {
	var e *twinhub.Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

// checkEnabled refuses identities whose device is disabled.
func (h *Hub) checkEnabled(ctx context.Context, rec *twinhub.Record) error {
	dev := rec.Device
	if rec.Module != nil {
		d, err := h.read(ctx, twinhub.DeviceKey(rec.Module.DeviceID))
		if err != nil {
			return unauthorized(fmt.Errorf("device %s is not registered", rec.Module.DeviceID))
		}
		dev = d.rec.Device
	}
	if dev.Status != twinhub.StatusEnabled {
		return unauthorized(fmt.Errorf("device %s is disabled", dev.DeviceID))
	}
	return nil
}

// ResourceURI is the SAS resource of an identity: host/devices/id[/modules/mid].
func (h *Hub) ResourceURI(k twinhub.Key) string {
	r := h.host + "/devices/" + k.DeviceID
	if k.ModuleID != "" {
		r += "/modules/" + k.ModuleID
	}
	return r
}
