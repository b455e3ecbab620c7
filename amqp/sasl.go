package amqp

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/amqp/wire"
	"github.com/twinhub/twinhub/sas"
)

// The SASL mechanisms the hub offers (AMQP.md): MSSBCBS and ANONYMOUS
// leave authentication to CBS put-token on the links' behalf; PLAIN
// carries a policy's or a device's credentials.
var mechanisms = []wire.Symbol{"MSSBCBS", "PLAIN", "ANONYMOUS"}

// errSASL is a client that SASL did not admit.
var errSASL = errors.New("amqp: SASL authentication failed")

// sasl runs the SASL exchange after the SASL protocol headers: the
// mechanisms, the client's init, the outcome.
func (c *conn) sasl() error {
	if err := c.sendSASL(wire.CodeSASLMechanisms, wire.SASLMechanismsList(mechanisms...)); err != nil {
		return err
	}
	p, err := c.expect(wire.FrameSASL, wire.CodeSASLInit)
	if err != nil {
		c.sendSASL(wire.CodeSASLOutcome, wire.SASLOutcomeList(wire.SASLSysPerm))
		return err
	}
	init, err := wire.ParseSASLInit(p)
	if err != nil {
		c.sendSASL(wire.CodeSASLOutcome, wire.SASLOutcomeList(wire.SASLSysPerm))
		return err
	}
	principal, err := c.authenticate(init)
	if err != nil {
		c.sendSASL(wire.CodeSASLOutcome, wire.SASLOutcomeList(wire.SASLAuth))
		return fmt.Errorf("%w: %s: %v", errSASL, init.Mechanism, err)
	}
	c.principal = principal
	return c.sendSASL(wire.CodeSASLOutcome, wire.SASLOutcomeList(wire.SASLOK))
}

// authenticate checks the credentials of a SASL init and says who they
// are, for the log.
func (c *conn) authenticate(init wire.SASLInit) (string, error) {
	switch init.Mechanism {
	case "ANONYMOUS", "MSSBCBS":
		return "anonymous (CBS)", nil
	case "PLAIN":
	default:
		return "", fmt.Errorf("mechanism %q is not offered", init.Mechanism)
	}
	// PLAIN: authzid NUL authcid NUL password (RFC 4616).
	parts := bytes.Split(init.InitialResponse, []byte{0})
	if len(parts) != 3 {
		return "", errors.New("PLAIN response is not authzid, authcid and password")
	}
	user, password := string(parts[1]), string(parts[2])
	host := c.srv.hub.Host()
	// "<policy>@sas.root.<hub>" (and a bare policy name, as amenzhinsky's
	// Event Hubs connection sends) is a shared access policy;
	// "<device>@sas.<hub>" a device. The password is a SAS token or the
	// key itself.
	var k twinhub.Key
	resource, keyName := host, ""
	if i := strings.Index(user, "@sas.root."); i >= 0 || !strings.Contains(user, "@") {
		keyName = user
		if i >= 0 {
			keyName = user[:i]
		}
	} else if i := strings.Index(user, "@sas."); i >= 0 {
		k = twinhub.DeviceKey(user[:i])
		resource = c.srv.hub.ResourceURI(k)
	} else {
		return "", fmt.Errorf("PLAIN user %q is neither <policy>@sas.root.<hub> nor <device>@sas.<hub>", user)
	}
	token, err := tokenFor(password, resource, keyName)
	if err != nil {
		return "", err
	}
	g, err := c.admit(host, token, k)
	if err != nil {
		return "", err
	}
	c.grants.put(g)
	if g.policy != "" {
		return "policy " + g.policy, nil
	}
	return "device " + k.String(), nil
}

// tokenFor is password when it is a SAS token, else a token signed with
// it as the key, for resource (and the policy keyName): the key itself
// stands for the connection's life.
func tokenFor(password, resource, keyName string) (string, error) {
	if strings.HasPrefix(password, "SharedAccessSignature ") {
		return password, nil
	}
	return sas.NewToken(resource, keyName, password, time.Now().AddDate(10, 0, 0))
}

// sendSASL writes a SASL frame.
func (c *conn) sendSASL(code uint64, fields wire.List) error {
	return c.sendFrame(wire.FrameSASL, 0, code, fields, nil)
}
