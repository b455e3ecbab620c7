package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// serveCmd is the serve command of a fresh root, its flags parsed from args.
func serveCmd(t *testing.T, args ...string) *cobra.Command {
	t.Helper()
	cmd, _, err := rootCommand().Find([]string{"serve"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "twinhub.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestApplyConfig: a flag wins over the environment, which wins over the
// file, which wins over the default; a key that is no setting, or a value
// its setting refuses, is an error that names the file and the key (or
// the variable); other programs' TWINHUB_ variables are left alone.
func TestApplyConfig(t *testing.T) {
	t.Setenv("TWINHUB_MQTT_ADDR", ":9883")
	t.Setenv("TWINHUB_LONG", "1")
	cmd := serveCmd(t, "--amqp-addr", ":6671")
	cfg := writeFile(t, "https-addr: \":9443\"\nmqtt-addr: \":7883\"\namqp-addr: \":7671\"\nreplicas: 3\ntelemetry-retention: 48h\nsync-always: true\n")
	if err := applyConfig(cmd.Flags(), cfg); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"https-addr": ":9443", "mqtt-addr": ":9883", "amqp-addr": ":6671",
		"replicas": "3", "telemetry-retention": "48h0m0s", "sync-always": "true", "log-level": "info",
	} {
		if got := cmd.Flags().Lookup(name).Value.String(); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	for _, c := range []struct{ file, want string }{
		{"http-addr: \":443\"\n", `"http-addr" is not a setting`},
		{"replicas: many\n", `key "replicas"`},
		{"config: other.yaml\n", `"config" is not a setting`},
		{"https-addr: [\n", "twinhub.yaml"},
	} {
		err := applyConfig(serveCmd(t).Flags(), writeFile(t, c.file))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "twinhub.yaml") {
			t.Errorf("%q: %v, want an error naming the file and %s", c.file, err, c.want)
		}
	}
	t.Setenv("TWINHUB_REPLICAS", "x")
	if err := applyConfig(serveCmd(t).Flags(), ""); err == nil || !strings.Contains(err.Error(), "TWINHUB_REPLICAS") {
		t.Errorf("a bad environment value: %v", err)
	}
}

// TestSampleConfig: twinhub.sample.yaml, uncommented, is a valid file
// that names every setting of serve.
func TestSampleConfig(t *testing.T) {
	data, err := os.ReadFile("../../twinhub.sample.yaml")
	if err != nil {
		t.Fatal(err)
	}
	key := regexp.MustCompile(`^# ([a-z0-9-]+): `)
	var lines, keys []string
	for _, l := range strings.Split(string(data), "\n") {
		if m := key.FindStringSubmatch(l); m != nil {
			lines = append(lines, strings.TrimPrefix(l, "# "))
			keys = append(keys, m[1])
		}
	}
	cmd := serveCmd(t)
	if err := applyConfig(cmd.Flags(), writeFile(t, strings.Join(lines, "\n"))); err != nil {
		t.Errorf("the sample, uncommented: %v", err)
	}
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if !slices.Contains(notInFile, f.Name) && !slices.Contains(keys, f.Name) {
			t.Errorf("setting %q is not in twinhub.sample.yaml", f.Name)
		}
	})
}
