package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/datadir"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/sas"
)

func connectionStringCommand(g *globals) *cobra.Command {
	var policy string
	var eventHub bool
	cmd := &cobra.Command{
		Use:   "connection-string",
		Short: "Print a hub connection string, or with --eventhub the Event Hubs-compatible endpoint's",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := datadir.Dir{Path: g.data}.LoadHub()
			if err != nil {
				return fmt.Errorf("no hub in %s (%w)", g.data, err)
			}
			if !eventHub {
				cs, err := h.ConnectionString(policy)
				if err != nil {
					return err
				}
				fmt.Println(cs)
				return nil
			}
			// The portal's "Event Hub-compatible endpoint" is the
			// service policy's unless another is asked for.
			if !cmd.Flags().Changed("policy") {
				policy = "service"
			}
			p, err := h.Policy(policy)
			if err != nil {
				return err
			}
			fmt.Printf("Endpoint=sb://%s/;SharedAccessKeyName=%s;SharedAccessKey=%s;EntityPath=%s\n",
				h.HostName, p.Name, p.PrimaryKey, hub.DefaultEventHubName(h.HostName))
			return nil
		},
	}
	cmd.Flags().StringVar(&policy, "policy", "iothubowner", "shared access policy: iothubowner, service, device, registryRead or registryReadWrite (with --eventhub: service)")
	cmd.Flags().BoolVar(&eventHub, "eventhub", false, "print the connection string of the Event Hubs-compatible endpoint, where back ends read telemetry over AMQP")
	return cmd
}

// withClient adapts a command body that needs a REST client.
func withClient(g *globals, run func(c *client, args []string) error) func(*cobra.Command, []string) error {
	return func(_ *cobra.Command, args []string) error {
		c, err := newClient(g)
		if err != nil {
			return err
		}
		return run(c, args)
	}
}

func deviceCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "device", Short: "Manage device identities"}
	var edge, disabled bool
	var thumbprints []string
	var parent string
	create := &cobra.Command{
		Use:   "create ID",
		Short: "Register a device (symmetric keys are generated unless --x509-thumbprint is given)",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(g, func(c *client, args []string) error {
			d := twinhub.Device{DeviceID: args[0], Capabilities: twinhub.Capabilities{IoTEdge: edge}}
			if disabled {
				d.Status = twinhub.StatusDisabled
			}
			if len(thumbprints) > 0 {
				d.Authentication.Type = twinhub.AuthSelfSigned
				d.Authentication.X509Thumbprint.PrimaryThumbprint = &thumbprints[0]
				if len(thumbprints) > 1 {
					d.Authentication.X509Thumbprint.SecondaryThumbprint = &thumbprints[1]
				}
			}
			if parent != "" {
				// The parent is named by its scope: a leaf's deviceScope,
				// a nested edge device's parentScopes.
				var p twinhub.Device
				if _, err := c.call("GET", "/devices/"+escape(parent), nil, nil, &p); err != nil {
					return err
				}
				if !p.Capabilities.IoTEdge || p.DeviceScope == nil {
					return fmt.Errorf("--parent %s: not an IoT Edge device; only edge devices have children", parent)
				}
				if edge {
					d.ParentScopes = twinhub.Scopes{*p.DeviceScope}
				} else {
					d.DeviceScope = p.DeviceScope
				}
			}
			var out twinhub.Device
			if _, err := c.call("PUT", "/devices/"+escape(args[0]), nil, d, &out); err != nil {
				return err
			}
			return g.print(out, deviceColumns)
		}),
	}
	create.Flags().BoolVar(&edge, "edge", false, "an IoT Edge device")
	create.Flags().StringVar(&parent, "parent", "", "the id of the IoT Edge device to put this device below")
	create.Flags().BoolVar(&disabled, "disabled", false, "create the device disabled")
	create.Flags().StringSliceVar(&thumbprints, "x509-thumbprint", nil, "primary[,secondary] SHA-1 or SHA-256 thumbprint of a self-signed certificate")

	list := &cobra.Command{
		Use: "list", Short: "List devices", Args: cobra.NoArgs,
		RunE: withClient(g, func(c *client, _ []string) error {
			var out []twinhub.Device
			if _, err := c.call("GET", "/devices?top=1000", nil, nil, &out); err != nil {
				return err
			}
			return g.print(out, deviceColumns)
		}),
	}
	show := &cobra.Command{
		Use: "show ID", Short: "Show a device", Args: cobra.ExactArgs(1),
		RunE: withClient(g, func(c *client, args []string) error {
			var out twinhub.Device
			if _, err := c.call("GET", "/devices/"+escape(args[0]), nil, nil, &out); err != nil {
				return err
			}
			return g.print(out, deviceColumns)
		}),
	}
	del := &cobra.Command{
		Use: "delete ID", Short: "Delete a device with its twin and modules", Args: cobra.ExactArgs(1),
		RunE: withClient(g, func(c *client, args []string) error {
			_, err := c.call("DELETE", "/devices/"+escape(args[0]), map[string]string{"If-Match": "*"}, nil, nil)
			return err
		}),
	}
	connStr := &cobra.Command{
		Use: "connection-string ID", Short: "Print a device's connection string", Args: cobra.ExactArgs(1),
		RunE: withClient(g, func(c *client, args []string) error {
			var d twinhub.Device
			if _, err := c.call("GET", "/devices/"+escape(args[0]), nil, nil, &d); err != nil {
				return err
			}
			fmt.Println(identityConnectionString(c.host, d.DeviceID, "", d.Authentication))
			return nil
		}),
	}
	cmd.AddCommand(create, list, show, del, connStr, exportCommand(g), importCommand(g))
	return cmd
}

func identityConnectionString(host, id, mid string, a twinhub.Authentication) string {
	cs := sas.ConnectionString{HostName: host, DeviceID: id, ModuleID: mid}
	if a.Type == twinhub.AuthSAS {
		cs.SharedAccessKey = a.SymmetricKey.PrimaryKey
	} else {
		cs.X509 = true
	}
	return cs.String()
}

func moduleCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "module", Short: "Manage module identities"}
	path := func(args []string) string { return "/devices/" + escape(args[0]) + "/modules/" + escape(args[1]) }
	create := &cobra.Command{
		Use: "create DEVICE MODULE", Short: "Register a module on a device", Args: cobra.ExactArgs(2),
		RunE: withClient(g, func(c *client, args []string) error {
			var out twinhub.Module
			if _, err := c.call("PUT", path(args), nil, twinhub.Module{DeviceID: args[0], ModuleID: args[1]}, &out); err != nil {
				return err
			}
			return g.print(out, moduleColumns)
		}),
	}
	list := &cobra.Command{
		Use: "list DEVICE", Short: "List a device's modules", Args: cobra.ExactArgs(1),
		RunE: withClient(g, func(c *client, args []string) error {
			var out []twinhub.Module
			if _, err := c.call("GET", "/devices/"+escape(args[0])+"/modules", nil, nil, &out); err != nil {
				return err
			}
			return g.print(out, moduleColumns)
		}),
	}
	show := &cobra.Command{
		Use: "show DEVICE MODULE", Short: "Show a module", Args: cobra.ExactArgs(2),
		RunE: withClient(g, func(c *client, args []string) error {
			var out twinhub.Module
			if _, err := c.call("GET", path(args), nil, nil, &out); err != nil {
				return err
			}
			return g.print(out, moduleColumns)
		}),
	}
	del := &cobra.Command{
		Use: "delete DEVICE MODULE", Short: "Delete a module and its twin", Args: cobra.ExactArgs(2),
		RunE: withClient(g, func(c *client, args []string) error {
			_, err := c.call("DELETE", path(args), map[string]string{"If-Match": "*"}, nil, nil)
			return err
		}),
	}
	connStr := &cobra.Command{
		Use: "connection-string DEVICE MODULE", Short: "Print a module's connection string", Args: cobra.ExactArgs(2),
		RunE: withClient(g, func(c *client, args []string) error {
			var m twinhub.Module
			if _, err := c.call("GET", path(args), nil, nil, &m); err != nil {
				return err
			}
			fmt.Println(identityConnectionString(c.host, m.DeviceID, m.ModuleID, m.Authentication))
			return nil
		}),
	}
	cmd.AddCommand(create, list, show, del, connStr)
	return cmd
}

func twinCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "twin", Short: "Read and change device and module twins"}
	var module, tags, desired, etag string
	var replace bool
	twinPath := func(id string) string {
		p := "/twins/" + escape(id)
		if module != "" {
			p += "/modules/" + escape(module)
		}
		return p
	}
	show := &cobra.Command{
		Use: "show ID", Short: "Show a twin", Args: cobra.ExactArgs(1),
		RunE: withClient(g, func(c *client, args []string) error {
			var out map[string]any
			if _, err := c.call("GET", twinPath(args[0]), nil, nil, &out); err != nil {
				return err
			}
			return g.print(out, twinColumns)
		}),
	}
	update := &cobra.Command{
		Use:   "update ID",
		Short: "Merge tags and desired properties into a twin (null removes a key)",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(g, func(c *client, args []string) error {
			if tags == "" && desired == "" {
				return fmt.Errorf("give --tags or --desired (or both)")
			}
			patch := map[string]any{}
			if tags != "" {
				var v map[string]any
				if err := json.Unmarshal([]byte(tags), &v); err != nil {
					return fmt.Errorf("--tags is not a JSON object: %w", err)
				}
				patch["tags"] = v
			}
			if desired != "" {
				var v map[string]any
				if err := json.Unmarshal([]byte(desired), &v); err != nil {
					return fmt.Errorf("--desired is not a JSON object: %w", err)
				}
				patch["properties"] = map[string]any{"desired": v}
			}
			method := "PATCH"
			if replace {
				method = "PUT"
			}
			ifMatch := etag
			if ifMatch == "" {
				ifMatch = "*"
			}
			var out map[string]any
			if _, err := c.call(method, twinPath(args[0]), map[string]string{"If-Match": ifMatch}, patch, &out); err != nil {
				return err
			}
			return g.print(out, twinColumns)
		}),
	}
	for _, c := range []*cobra.Command{show, update} {
		c.Flags().StringVar(&module, "module", "", "the module's twin instead of the device's")
	}
	update.Flags().StringVar(&tags, "tags", "", "tags as a JSON object")
	update.Flags().StringVar(&desired, "desired", "", "desired properties as a JSON object")
	update.Flags().StringVar(&etag, "etag", "", "change only if the twin still has this etag")
	update.Flags().BoolVar(&replace, "replace", false, "replace tags and desired properties instead of merging")
	cmd.AddCommand(show, update)
	return cmd
}

func queryCommand(g *globals) *cobra.Command {
	var pageSize int
	cmd := &cobra.Command{
		Use:   `query "SELECT ..."`,
		Short: "Run a query in the IoT Hub query language and print every result",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(g, func(c *client, args []string) error {
			all, err := pages[map[string]any](c, "POST", "/devices/query", map[string]string{"query": args[0]}, pageSize)
			if err != nil {
				return err
			}
			return g.print(all, nil)
		}),
	}
	cmd.Flags().IntVar(&pageSize, "page-size", 100, "results asked for per request (1 to 1000)")
	return cmd
}

// Columns of the --table views: a name and a path into the JSON.
var (
	deviceColumns = []string{"deviceId", "status", "connectionState", "authentication.type", "capabilities.iotEdge", "deviceScope", "lastActivityTime"}
	moduleColumns = []string{"deviceId", "moduleId", "connectionState", "authentication.type", "lastActivityTime"}
	twinColumns   = []string{"deviceId", "moduleId", "version", "status", "connectionState", "tags", "properties.desired.$version", "properties.reported.$version"}
)

// print writes v as indented JSON, or with --table as a table of columns
// (every top-level field when columns is nil).
func (g *globals) print(v any, columns []string) error {
	if !g.table {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(v)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var rows []map[string]any
	if strings.HasPrefix(strings.TrimSpace(string(data)), "[") {
		err = json.Unmarshal(data, &rows)
	} else {
		var row map[string]any
		err = json.Unmarshal(data, &row)
		rows = []map[string]any{row}
	}
	if err != nil {
		return err
	}
	if columns == nil {
		seen := map[string]bool{}
		for _, r := range rows {
			for k := range r {
				if !seen[k] {
					seen[k] = true
					columns = append(columns, k)
				}
			}
		}
		sort.Strings(columns)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, strings.Join(columns, "\t"))
	for _, r := range rows {
		cells := make([]string, len(columns))
		for i, c := range columns {
			cells[i] = cell(lookup(r, c))
		}
		fmt.Fprintln(w, strings.Join(cells, "\t"))
	}
	return w.Flush()
}

func lookup(m map[string]any, path string) any {
	var v any = m
	for _, part := range strings.Split(path, ".") {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = obj[part]
	}
	return v
}

func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		return x
	case map[string]any, []any:
		b, _ := json.Marshal(x)
		return string(b)
	}
	return fmt.Sprint(v)
}
