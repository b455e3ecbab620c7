package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/twinhub/twinhub"
)

// Moving a fleet in and out of a hub: `device export FILE` writes IoT
// Hub's devices.txt (one ExportImportDevice JSON a line: identity, keys,
// tags and desired properties, scopes; modules after their devices), and
// `device import FILE` reads it back through bulk POST /devices, 100
// identities a request. A file exported from Azure IoT Hub imports into
// twinhub and the other way round.

// importBatch is how many identities a bulk request carries (IoT Hub's
// limit) and importWorkers how many requests are in flight.
const (
	importBatch   = 100
	importWorkers = 16
	exportWorkers = 64
)

func exportCommand(g *globals) *cobra.Command {
	var excludeKeys bool
	cmd := &cobra.Command{
		Use:   "export FILE",
		Short: "Write every device and module, with keys, tags and desired properties, to FILE in IoT Hub's devices.txt format (- for stdout)",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(g, func(c *client, args []string) error {
			out := io.Writer(os.Stdout)
			if args[0] != "-" {
				f, err := os.Create(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				out = f
			}
			w := bufio.NewWriter(out)
			n, err := exportIdentities(c, w, excludeKeys)
			if err != nil {
				return err
			}
			if err := w.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "exported %d identities\n", n)
			return nil
		}),
	}
	cmd.Flags().BoolVar(&excludeKeys, "exclude-keys", false, "leave the symmetric keys out")
	return cmd
}

// exportIdentities writes devices (edge devices above their children
// first, so that an import finds each parent before its children) and
// then modules.
func exportIdentities(c *client, w io.Writer, excludeKeys bool) (int, error) {
	devices, err := queryAll(c, "SELECT * FROM devices")
	if err != nil {
		return 0, err
	}
	modules, err := queryAll(c, "SELECT * FROM devices.modules")
	if err != nil {
		return 0, err
	}
	bar := progressbar.NewOptions(len(devices)+len(modules), progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription("export"), progressbar.OptionShowCount(), progressbar.OptionThrottle(200*time.Millisecond))
	lines := make([]twinhub.ExportImportDevice, len(devices)+len(modules))
	err = forEach(len(lines), exportWorkers, func(i int) error {
		defer bar.Add(1)
		if i < len(devices) {
			twin := devices[i]
			id, _ := twin["deviceId"].(string)
			var d twinhub.Device
			if _, err := c.call("GET", "/devices/"+escape(id), nil, nil, &d); err != nil {
				return fmt.Errorf("device %s: %w", id, err)
			}
			e, err := exportLine(twin, d.ETag, d.Authentication, excludeKeys)
			e.Status, e.StatusReason = d.Status, d.StatusReason
			e.Capabilities, e.DeviceScope, e.ParentScopes = &d.Capabilities, d.DeviceScope, d.ParentScopes
			lines[i] = e
			return err
		}
		twin := modules[i-len(devices)]
		id, _ := twin["deviceId"].(string)
		mid, _ := twin["moduleId"].(string)
		var m twinhub.Module
		if _, err := c.call("GET", "/devices/"+escape(id)+"/modules/"+escape(mid), nil, nil, &m); err != nil {
			return fmt.Errorf("module %s/%s: %w", id, mid, err)
		}
		e, err := exportLine(twin, m.ETag, m.Authentication, excludeKeys)
		e.ModuleID = mid
		lines[i] = e
		return err
	})
	bar.Finish()
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return 0, err
	}
	var order []int
	for _, phase := range twinhub.ImportOrder(lines[:len(devices)]) {
		order = append(order, phase...)
	}
	enc := json.NewEncoder(w)
	for _, i := range order {
		if err := enc.Encode(lines[i]); err != nil {
			return 0, err
		}
	}
	for _, e := range lines[len(devices):] {
		if err := enc.Encode(e); err != nil {
			return 0, err
		}
	}
	return len(lines), nil
}

// exportLine is the twin part of a line: tags, desired and reported
// properties with their $version (without metadata, as an export job
// writes them).
func exportLine(twin map[string]any, etag string, auth twinhub.Authentication, excludeKeys bool) (twinhub.ExportImportDevice, error) {
	e := twinhub.ExportImportDevice{ETag: etag, Authentication: &auth}
	e.ID, _ = twin["deviceId"].(string)
	e.TwinETag, _ = twin["etag"].(string)
	if excludeKeys {
		e.Authentication = nil
	}
	tags, _ := twin["tags"].(map[string]any)
	if tags == nil {
		tags = map[string]any{}
	}
	props, _ := twin["properties"].(map[string]any)
	for _, section := range []string{"desired", "reported"} {
		if p, ok := props[section].(map[string]any); ok {
			delete(p, "$metadata")
		}
	}
	var err error
	if e.Tags, err = twinhub.MarshalNoHTML(tags); err != nil {
		return e, err
	}
	e.Properties, err = twinhub.MarshalNoHTML(props)
	return e, err
}

// queryAll runs a query to its last page.
func queryAll(c *client, q string) ([]map[string]any, error) {
	return pages[map[string]any](c, "POST", "/devices/query", map[string]string{"query": q}, 1000)
}

// forEach calls fn(0..n-1), workers at once; the first error stops it.
func forEach(n, workers int, fn func(i int) error) error {
	next := make(chan int)
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for range min(workers, max(n, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

func importCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE",
		Short: "Create or update the devices and modules of FILE (IoT Hub's devices.txt format, - for stdin): keys, tags and desired properties",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(g, func(c *client, args []string) error {
			in := io.Reader(os.Stdin)
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			start := time.Now()
			n, failed, err := importIdentities(c, in)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "imported %d identities in %s (%.0f/s)", n-failed, time.Since(start).Round(time.Millisecond), float64(n-failed)/time.Since(start).Seconds())
			if failed > 0 {
				fmt.Fprintln(os.Stderr)
				return fmt.Errorf("%d identities failed (listed above)", failed)
			}
			fmt.Fprintln(os.Stderr)
			return nil
		}),
	}
}

// importIdentities sends the lines of r in bulk requests: the edge devices
// of each depth first, then the other devices, then the modules, each
// phase done before the next starts (an identity's parent or device must
// exist before it). It returns how many lines it read and how many
// failed; failures are printed to stderr.
func importIdentities(c *client, r io.Reader) (int, int, error) {
	var entries []twinhub.ExportImportDevice
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		var e twinhub.ExportImportDevice
		if err := json.Unmarshal([]byte(text), &e); err != nil || e.ID == "" {
			return 0, 0, fmt.Errorf("line %d is not an identity of devices.txt (a JSON object with an id): %v", line, err)
		}
		if e.ImportMode == "" {
			e.ImportMode = "createOrUpdate"
		}
		e.ETag = "" // an exported etag is no precondition here
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	var phases [][]twinhub.ExportImportDevice
	for _, phase := range twinhub.ImportOrder(entries) {
		p := make([]twinhub.ExportImportDevice, len(phase))
		for i, j := range phase {
			p[i] = entries[j]
		}
		phases = append(phases, p)
	}
	bar := progressbar.NewOptions(len(entries), progressbar.OptionSetWriter(os.Stderr), progressbar.OptionSetDescription("import"),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionThrottle(200*time.Millisecond))
	var mu sync.Mutex
	failed := 0
	for _, phase := range phases {
		batches := (len(phase) + importBatch - 1) / importBatch
		err := forEach(batches, importWorkers, func(b int) error {
			part := phase[b*importBatch : min(len(phase), (b+1)*importBatch)]
			defer bar.Add(len(part))
			_, err := c.call("POST", "/devices", nil, part, nil)
			var re *replyError
			if errors.As(err, &re) && re.status == 400 {
				var res struct {
					Errors []struct {
						DeviceID    string `json:"deviceId"`
						ModuleID    string `json:"moduleId"`
						ErrorStatus string `json:"errorStatus"`
					} `json:"errors"`
				}
				if json.Unmarshal(re.body, &res) == nil && len(res.Errors) > 0 {
					mu.Lock()
					defer mu.Unlock()
					for _, e := range res.Errors {
						name := e.DeviceID
						if e.ModuleID != "" {
							name += "/" + e.ModuleID
						}
						fmt.Fprintf(os.Stderr, "\n%s: %s", name, e.ErrorStatus)
					}
					failed += len(res.Errors)
					return nil
				}
			}
			return err
		})
		if err != nil {
			return 0, 0, err
		}
	}
	bar.Finish()
	fmt.Fprintln(os.Stderr)
	return len(entries), failed, nil
}
