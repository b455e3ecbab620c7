package main

import (
	"github.com/spf13/cobra"
)

// consumerGroupCommand manages the consumer groups of the Event
// Hubs-compatible endpoint (on IoT Hub, the portal's "Built-in
// endpoints" page).
func consumerGroupCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "consumer-group", Short: "Manage the consumer groups of the Event Hubs-compatible endpoint"}
	columns := []string{"name", "createdTime"}
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a consumer group", Args: cobra.ExactArgs(1),
		RunE: withClient(g, func(c *client, args []string) error {
			var out map[string]any
			if _, err := c.call("PUT", "/twinhub/eventhub/consumergroups/"+escape(args[0]), nil, nil, &out); err != nil {
				return err
			}
			return g.print(out, columns)
		}),
	}
	list := &cobra.Command{
		Use: "list", Short: "List the consumer groups ($Default first)", Args: cobra.NoArgs,
		RunE: withClient(g, func(c *client, _ []string) error {
			var out []map[string]any
			if _, err := c.call("GET", "/twinhub/eventhub/consumergroups", nil, nil, &out); err != nil {
				return err
			}
			return g.print(out, columns)
		}),
	}
	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete a consumer group", Args: cobra.ExactArgs(1),
		RunE: withClient(g, func(c *client, args []string) error {
			_, err := c.call("DELETE", "/twinhub/eventhub/consumergroups/"+escape(args[0]), nil, nil, nil)
			return err
		}),
	}
	cmd.AddCommand(create, list, del)
	return cmd
}
