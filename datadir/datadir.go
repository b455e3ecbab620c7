// Package datadir is the hub's data folder: a copy of its identity (host
// name and shared access policies) in hub.json for the CLI, the running
// server's addresses in serve.json for the CLI to find, TLS material, and
// JetStream's files.
package datadir

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/twinhub/twinhub/sas"
)

// Dir is an opened data folder.
type Dir struct{ Path string }

// Hub is what hub.json holds: who the hub is, fixed on first start.
type Hub struct {
	HostName string       `json:"hostName"`
	Policies []sas.Policy `json:"policies"`
}

// Serve is what serve.json holds: where a running hub listens.
type Serve struct {
	HTTPSAddr string `json:"httpsAddr"`
	MQTTAddr  string `json:"mqttAddr,omitempty"`
	AMQPAddr  string `json:"amqpAddr,omitempty"`
	// MetricsAddr is where /metrics, /healthz and /readyz are served
	// (plain HTTP), when --metrics-addr is on.
	MetricsAddr string `json:"metricsAddr,omitempty"`
	// PprofAddr is where Go's profiles are served, when --pprof-addr is
	// on (the bench forces a collection in the hub through it before it
	// weighs the hub's live memory).
	PprofAddr string `json:"pprofAddr,omitempty"`
	PID       int    `json:"pid"`
}

// Open makes the folder if needed.
func Open(path string) (Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return Dir{}, fmt.Errorf("creating the data folder: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return Dir{}, err
	}
	return Dir{Path: abs}, nil
}

// File is the path of a file in the folder.
func (d Dir) File(name string) string { return filepath.Join(d.Path, name) }

// LoadHub reads hub.json; os.ErrNotExist if the hub was never started here.
func (d Dir) LoadHub() (Hub, error) {
	var h Hub
	data, err := os.ReadFile(d.File("hub.json"))
	if err != nil {
		return h, err
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return h, fmt.Errorf("%s: %w", d.File("hub.json"), err)
	}
	return h, nil
}

// NewHub is the identity of a new hub: hostname (localhost if empty) and
// fresh keys for the default shared access policies.
func NewHub(hostname string) (Hub, error) {
	if hostname == "" {
		hostname = "localhost"
	}
	policies, err := sas.DefaultPolicies()
	return Hub{HostName: hostname, Policies: policies}, err
}

// SaveHub writes hub.json: the copy of the hub's identity that the CLI
// reads (the hub keeps the one it serves in its store).
func (d Dir) SaveHub(h Hub) error { return d.write("hub.json", h, 0o600) }

// Policy returns the named policy.
func (h Hub) Policy(name string) (sas.Policy, error) {
	for _, p := range h.Policies {
		if p.Name == name {
			return p, nil
		}
	}
	return sas.Policy{}, fmt.Errorf("the hub has no shared access policy %q", name)
}

// ConnectionString is the hub connection string of a policy.
func (h Hub) ConnectionString(policy string) (string, error) {
	p, err := h.Policy(policy)
	if err != nil {
		return "", err
	}
	return sas.ConnectionString{HostName: h.HostName, SharedAccessKeyName: p.Name, SharedAccessKey: p.PrimaryKey}.String(), nil
}

// SaveServe records where the running hub listens.
func (d Dir) SaveServe(s Serve) error { return d.write("serve.json", s, 0o644) }

// LoadServe reads serve.json.
func (d Dir) LoadServe() (Serve, error) {
	var s Serve
	data, err := os.ReadFile(d.File("serve.json"))
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(data, &s)
}

func (d Dir) write(name string, v any, mode os.FileMode) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := d.File(name + ".tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), mode); err != nil {
		return err
	}
	return os.Rename(tmp, d.File(name))
}
