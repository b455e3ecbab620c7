package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/twinhub/twinhub"
)

var configurationColumns = []string{"id", "priority", "targetCondition", "systemMetrics.results.targetedCount",
	"systemMetrics.results.appliedCount", "lastUpdatedTimeUtc"}

// configurationCommand manages automatic device and module configurations.
func configurationCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "configuration", Short: "Automatic device and module configurations"}
	var target, content string
	var priority int
	var modules bool
	var metrics []string
	create := &cobra.Command{
		Use:   "create ID --content JSON [--target COND] [--priority N] [--modules] [--metric NAME=QUERY ...]",
		Short: "Write content (properties.desired keys) into every twin the target condition matches",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(g, func(c *client, args []string) error {
			var section map[string]any
			if err := json.Unmarshal([]byte(content), &section); err != nil {
				return fmt.Errorf("--content is not a JSON object: %v", err)
			}
			cfg := twinhub.Configuration{ID: args[0], TargetCondition: target, Priority: priority}
			if modules {
				cfg.Content.ModuleContent = section
			} else {
				cfg.Content.DeviceContent = section
			}
			cfg.Metrics.Queries = map[string]string{}
			for _, m := range metrics {
				name, q, ok := strings.Cut(m, "=")
				if !ok || name == "" {
					return fmt.Errorf("--metric %q: want NAME=QUERY", m)
				}
				cfg.Metrics.Queries[name] = q
			}
			var out twinhub.Configuration
			if _, err := c.call("PUT", "/configurations/"+escape(args[0]), nil, cfg, &out); err != nil {
				return err
			}
			return g.print(out, configurationColumns)
		}),
	}
	fl := create.Flags()
	fl.StringVar(&content, "content", "", `content, e.g. {"properties.desired.fw": {"version": "2.0"}}`)
	fl.StringVar(&target, "target", "", "target condition (a WHERE condition, or * for all)")
	fl.IntVar(&priority, "priority", 0, "the higher wins where configurations target the same twin")
	fl.BoolVar(&modules, "modules", false, "a module configuration (moduleContent; target: FROM devices.modules WHERE ...)")
	fl.StringArrayVar(&metrics, "metric", nil, "a custom metric NAME=QUERY (repeatable)")
	_ = create.MarkFlagRequired("content")

	show := &cobra.Command{
		Use: "show ID", Short: "Show a configuration and its metrics", Args: cobra.ExactArgs(1),
		RunE: withClient(g, func(c *client, args []string) error {
			var out twinhub.Configuration
			if _, err := c.call("GET", "/configurations/"+escape(args[0]), nil, nil, &out); err != nil {
				return err
			}
			return g.print(out, configurationColumns)
		}),
	}
	list := &cobra.Command{
		Use: "list", Short: "List configurations", Args: cobra.NoArgs,
		RunE: withClient(g, func(c *client, _ []string) error {
			var out []twinhub.Configuration
			if _, err := c.call("GET", "/configurations", nil, nil, &out); err != nil {
				return err
			}
			return g.print(out, configurationColumns)
		}),
	}
	del := &cobra.Command{
		Use: "delete ID", Short: "Delete a configuration (the twins keep what it wrote)", Args: cobra.ExactArgs(1),
		RunE: withClient(g, func(c *client, args []string) error {
			_, err := c.call("DELETE", "/configurations/"+escape(args[0]), map[string]string{"If-Match": "*"}, nil, nil)
			return err
		}),
	}
	cmd.AddCommand(create, show, list, del)
	return cmd
}
