// Command twinhub is a self-hosted device hub that speaks the Azure IoT
// Hub protocols. `twinhub serve` runs the hub; the other commands manage
// it over its REST API, in the spirit of `az iot hub`.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := rootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "twinhub:", err)
		os.Exit(1)
	}
}

// globals are the flags every command shares.
type globals struct {
	data  string
	table bool
}

func rootCommand() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "twinhub",
		Short:         "A self-hosted device hub that speaks the Azure IoT Hub protocols",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	defData := os.Getenv("TWINHUB_DATA")
	if defData == "" {
		defData = "./twinhub-data"
	}
	root.PersistentFlags().StringVar(&g.data, "data", defData, "data folder (env TWINHUB_DATA)")
	root.PersistentFlags().BoolVar(&g.table, "table", false, "print a table instead of JSON")
	root.AddCommand(
		serveCommand(g),
		clusterCommand(g),
		connectionStringCommand(g),
		deviceCommand(g),
		moduleCommand(g),
		twinCommand(g),
		queryCommand(g),
		caCommand(g),
		methodCommand(g),
		jobCommand(g),
		registryJobCommand(g),
		configurationCommand(g),
		c2dCommand(g),
		monitorEventsCommand(g),
		monitorFileNotificationsCommand(g),
		consumerGroupCommand(g),
		benchCommand(g),
		benchProbeCommand(),
		benchBareServerCommand(),
	)
	return root
}
