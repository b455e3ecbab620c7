// Package bench is twinhub's load generator and benchmark suite. It
// simulates devices (MQTT 3.1.1 over TLS with SAS tokens, through the paho
// client) and back ends (HTTPS REST) against a running hub, measures
// throughput and latency, measures the baselines that give those numbers
// meaning on a shared machine (raw JetStream KV, Mosquitto, a bare Go TLS
// server), and reports the lot as text and JSON. `twinhub bench` wires it
// to a hub it starts in-process or to one given by connection string.
package bench

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/twinhub/twinhub/sas"
)

// Target is the hub under test: where it listens, whom to trust, and the
// owner policy the back-end side signs its tokens with.
type Target struct {
	// Host is the hub's host name as in connection strings; it is the TLS
	// server name and the host of every SAS resource URI.
	Host string
	// HTTPSAddr, MQTTAddr and AMQPAddr are host:port to dial (they may
	// differ from Host, e.g. a loopback address).
	HTTPSAddr, MQTTAddr, AMQPAddr string
	// RootCAs verifies the hub's certificate; CAPEM is the CA it was
	// given as (ExternalTarget), for a child process to trust the same.
	RootCAs *x509.CertPool
	CAPEM   []byte
	// PolicyName and PolicyKey sign service tokens; the policy needs
	// RegistryRead, RegistryWrite and ServiceConnect (iothubowner).
	PolicyName, PolicyKey string
	// Usage reports the hub's CPU and memory; nil: not measured.
	Usage UsageFunc
	// UsageNote says what Usage measures (e.g. that an in-process hub
	// shares its process with the load generator).
	UsageNote string
	// CADir, when set, holds the hub's CA (ca.pem, ca-key.pem): the
	// Mosquitto baseline gets its certificate from that CA.
	CADir string
	// TelemetryBytes, when set, returns how many bytes the hub's
	// telemetry storage holds on disk (ok false: there is none). The
	// telemetry scenario checks with it that what the hub acknowledged was
	// stored, and labels its result "not persisted" otherwise.
	TelemetryBytes func() (n int64, ok bool)
	// Local is true for a hub this process started (devices it creates
	// are not deleted afterwards: the hub goes away with its folder).
	Local bool
	// InProcess is true when that hub runs in this process.
	InProcess bool
	// Restart, when set, stops the hub and starts it again on the same
	// data and addresses, returning when the new process started (it
	// may not answer yet). Usage follows the new process.
	Restart func() (started time.Time, err error)
	// MetricsURL, when set, is the hub's Prometheus /metrics: scenarios
	// that can put the hub's own timings beside the client's do (the
	// client shares the machine, so its figures include its waits for a
	// core).
	MetricsURL string
	// PprofURL, when set, is the hub's /debug/pprof/ (serve
	// --pprof-addr): before it weighs the hub's memory, the bench has the
	// hub collect its garbage through it (heap?gc=1), as it does with a
	// hub in its own process (runtime.GC).
	PprofURL string
}

// ExternalTarget describes a hub given by an owner connection string and
// the PEM file of the CA that signed its certificate. httpsAddr,
// mqttAddr and amqpAddr default to the host name on ports 443, 8883 and
// 5671.
func ExternalTarget(connString, caFile, httpsAddr, mqttAddr, amqpAddr string) (*Target, error) {
	cs, err := sas.ParseConnectionString(connString)
	if err != nil {
		return nil, fmt.Errorf("--connection-string: %w", err)
	}
	if cs.SharedAccessKeyName == "" || cs.DeviceID != "" {
		return nil, errors.New("--connection-string: give a hub connection string with SharedAccessKeyName (iothubowner)")
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	var pem []byte
	if caFile != "" {
		pem, err = os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca: %s holds no PEM certificate", caFile)
		}
	}
	if httpsAddr == "" {
		httpsAddr = net.JoinHostPort(cs.HostName, "443")
	}
	if mqttAddr == "" {
		mqttAddr = net.JoinHostPort(cs.HostName, "8883")
	}
	if amqpAddr == "" {
		amqpAddr = net.JoinHostPort(cs.HostName, "5671")
	}
	return &Target{
		Host: cs.HostName, HTTPSAddr: httpsAddr, MQTTAddr: mqttAddr, AMQPAddr: amqpAddr, RootCAs: roots, CAPEM: pem,
		PolicyName: cs.SharedAccessKeyName, PolicyKey: cs.SharedAccessKey,
	}, nil
}

// tlsConfig is the client TLS configuration for the hub; version 0 lets
// Go choose (TLS 1.3), tls.VersionTLS12 pins 1.2 as the Python SDK does.
func (t *Target) tlsConfig(version uint16) *tls.Config {
	c := &tls.Config{RootCAs: t.RootCAs, ServerName: t.Host, MinVersion: tls.VersionTLS12}
	if version != 0 {
		c.MinVersion, c.MaxVersion = version, version
	}
	return c
}
