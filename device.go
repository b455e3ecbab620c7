package twinhub

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"strconv"
)

// Key names a device (ModuleID empty) or a module of a device. Both ids are
// case-sensitive, as in IoT Hub.
type Key struct {
	DeviceID string
	ModuleID string
}

// DeviceKey and ModuleKey make keys without naming fields.
func DeviceKey(id string) Key      { return Key{DeviceID: id} }
func ModuleKey(id, mid string) Key { return Key{DeviceID: id, ModuleID: mid} }

func (k Key) String() string {
	if k.ModuleID == "" {
		return k.DeviceID
	}
	return k.DeviceID + "/" + k.ModuleID
}

// Authentication types as IoT Hub names them.
const (
	AuthSAS                  = "sas"
	AuthSelfSigned           = "selfSigned"
	AuthCertificateAuthority = "certificateAuthority"
	AuthNone                 = "none"
)

// Statuses and connection states as IoT Hub spells them.
const (
	StatusEnabled       = "enabled"
	StatusDisabled      = "disabled"
	StateConnected      = "Connected"
	StateDisconnected   = "Disconnected"
	maxIDLength         = 128
	idSpecialCharacters = "-.+%_#*?!(),:=@$'"
)

type SymmetricKey struct {
	PrimaryKey   string `json:"primaryKey"`
	SecondaryKey string `json:"secondaryKey"`
}

type X509Thumbprint struct {
	PrimaryThumbprint   *string `json:"primaryThumbprint"`
	SecondaryThumbprint *string `json:"secondaryThumbprint"`
}

type Authentication struct {
	Type           string         `json:"type"`
	SymmetricKey   SymmetricKey   `json:"symmetricKey"`
	X509Thumbprint X509Thumbprint `json:"x509Thumbprint"`
}

type Capabilities struct {
	IoTEdge bool `json:"iotEdge"`
}

// Device is a device identity as the registry REST API shows it.
type Device struct {
	DeviceID                   string         `json:"deviceId"`
	GenerationID               string         `json:"generationId"`
	ETag                       string         `json:"etag"`
	ConnectionState            string         `json:"connectionState"`
	Status                     string         `json:"status"`
	StatusReason               *string        `json:"statusReason"`
	ConnectionStateUpdatedTime Time           `json:"connectionStateUpdatedTime"`
	StatusUpdatedTime          Time           `json:"statusUpdatedTime"`
	LastActivityTime           Time           `json:"lastActivityTime"`
	CloudToDeviceMessageCount  int            `json:"cloudToDeviceMessageCount"`
	Authentication             Authentication `json:"authentication"`
	Capabilities               Capabilities   `json:"capabilities"`
	// DeviceScope is an IoT Edge device's own scope (EdgeScope), or the
	// scope of a leaf device's parent; nil (null) for a device with
	// neither. A registry write that leaves it out keeps the stored one.
	DeviceScope *string `json:"deviceScope"`
	// ParentScopes holds the scope of the device's parent edge device, if
	// it has one: IoT Hub allows one parent.
	ParentScopes Scopes `json:"parentScopes"`
}

// Module is a module identity as the registry REST API shows it.
type Module struct {
	ModuleID                   string         `json:"moduleId"`
	DeviceID                   string         `json:"deviceId"`
	ManagedBy                  string         `json:"managedBy,omitempty"`
	GenerationID               string         `json:"generationId"`
	ETag                       string         `json:"etag"`
	ConnectionState            string         `json:"connectionState"`
	ConnectionStateUpdatedTime Time           `json:"connectionStateUpdatedTime"`
	LastActivityTime           Time           `json:"lastActivityTime"`
	CloudToDeviceMessageCount  int            `json:"cloudToDeviceMessageCount"`
	Authentication             Authentication `json:"authentication"`
}

// ValidateID checks a device or module id against IoT Hub's rules: 1 to
// 128 ASCII letters, digits and the characters - . + % _ # * ? ! ( ) , : = @ $ '.
func ValidateID(what, id string) error {
	if id == "" {
		return ErrInvalid("%s id is empty", what)
	}
	if len(id) > maxIDLength {
		return ErrInvalid("%s id is longer than %d characters", what, maxIDLength)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case containsByte(idSpecialCharacters, c):
		default:
			return ErrInvalid("%s id %q has the invalid character %q at position %d", what, id, c, i)
		}
	}
	return nil
}

func containsByte(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}

// generateKey makes a 32-byte symmetric key, base64 as IoT Hub shows keys.
func generateKey() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// NewGenerationID is a fresh id that tells apart identities that reuse a
// name; IoT Hub shows it as 18 decimal digits.
func NewGenerationID() string {
	b := make([]byte, 8)
	rand.Read(b)
	n := binary.BigEndian.Uint64(b)%900_000_000_000_000_000 + 100_000_000_000_000_000
	return strconv.FormatUint(n, 10)
}

// IdentityETag turns an identity's change counter into an opaque etag.
func IdentityETag(counter int64) string {
	return base64.StdEncoding.EncodeToString([]byte(strconv.FormatInt(counter, 10)))
}

// NormalizeAuth fills in what IoT Hub fills in when a registry write leaves
// it out: the sas type and generated keys. It keeps old keys when an
// update leaves them empty, and checks that the keys and thumbprints given
// fit the type.
func NormalizeAuth(a *Authentication, old *Authentication) error {
	if a.Type == "" {
		a.Type = AuthSAS
	}
	switch a.Type {
	case AuthSAS:
		if a.SymmetricKey.PrimaryKey == "" && a.SymmetricKey.SecondaryKey == "" && old != nil && old.Type == AuthSAS {
			a.SymmetricKey = old.SymmetricKey
		}
		for _, k := range []*string{&a.SymmetricKey.PrimaryKey, &a.SymmetricKey.SecondaryKey} {
			if *k == "" {
				*k = generateKey()
				continue
			}
			raw, err := base64.StdEncoding.DecodeString(*k)
			if err != nil || len(raw) < 16 || len(raw) > 64 {
				return ErrInvalid("symmetric keys must be base64 of 16 to 64 bytes")
			}
		}
		a.X509Thumbprint = X509Thumbprint{}
	case AuthSelfSigned:
		p, s := a.X509Thumbprint.PrimaryThumbprint, a.X509Thumbprint.SecondaryThumbprint
		if (p == nil || *p == "") && (s == nil || *s == "") {
			return ErrInvalid("selfSigned authentication needs a primary or secondary thumbprint")
		}
		for _, t := range []*string{p, s} {
			if t != nil && *t != "" {
				if b, err := hex.DecodeString(*t); err != nil || (len(b) != 20 && len(b) != 32) {
					return ErrInvalid("thumbprint %q is not a SHA-1 or SHA-256 hex digest", *t)
				}
			}
		}
		a.SymmetricKey = SymmetricKey{}
	case AuthCertificateAuthority, AuthNone:
		a.SymmetricKey = SymmetricKey{}
		a.X509Thumbprint = X509Thumbprint{}
	default:
		return Errorf(http.StatusBadRequest, "ArgumentInvalid", "unknown authentication type %q", a.Type)
	}
	return nil
}

// DeviceStatistics is GET /statistics/devices.
type DeviceStatistics struct {
	TotalDeviceCount    int `json:"totalDeviceCount"`
	EnabledDeviceCount  int `json:"enabledDeviceCount"`
	DisabledDeviceCount int `json:"disabledDeviceCount"`
}

// ServiceStatistics is GET /statistics/service.
type ServiceStatistics struct {
	ConnectedDeviceCount int `json:"connectedDeviceCount"`
}
