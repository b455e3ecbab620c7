package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/twinhub/twinhub"
)

var registryJobColumns = []string{"jobId", "type", "status", "progress", "startTimeUtc", "endTimeUtc", "failureReason"}

// registryJobCommand runs the hub's import and export jobs (POST
// /jobs/create): the registry to or from a blob container of the user's
// storage account, named by its SAS URI, as `az iot hub device-identity
// export|import` does. `device export|import FILE` does the same through
// the REST API from this machine, with a local file.
func registryJobCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "registry-job", Short: "Export the registry to, or import it from, a blob container (import and export jobs)"}
	var excludeKeys, configurations, wait bool
	// create posts the job, then with --wait polls it until it ends.
	create := func(c *client, j twinhub.ImportExportJob) error {
		j.IncludeConfigurations = configurations
		var out twinhub.ImportExportJob
		if _, err := c.call("POST", "/jobs/create", nil, j, &out); err != nil {
			return err
		}
		for wait && !out.Done() {
			time.Sleep(time.Second)
			if _, err := c.call("GET", "/jobs/"+escape(out.JobID), nil, nil, &out); err != nil {
				return err
			}
		}
		return g.print(out, registryJobColumns)
	}
	export := &cobra.Command{
		Use:   "export CONTAINER_SAS_URI [--exclude-keys] [--include-configurations] [--wait]",
		Short: "Write every device and module to devices.txt in the container",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(g, func(c *client, args []string) error {
			return create(c, twinhub.ImportExportJob{Type: twinhub.ImportExportExport, OutputBlobContainerURI: args[0], ExcludeKeysInExport: excludeKeys})
		}),
	}
	export.Flags().BoolVar(&excludeKeys, "exclude-keys", false, "leave the keys out (authentication null)")
	imp := &cobra.Command{
		Use:   "import INPUT_CONTAINER_SAS_URI OUTPUT_CONTAINER_SAS_URI [--include-configurations] [--wait]",
		Short: "Apply devices.txt of the input container (createOrUpdate unless a line says otherwise); failures go to importErrors.log in the output container",
		Args:  cobra.ExactArgs(2),
		RunE: withClient(g, func(c *client, args []string) error {
			return create(c, twinhub.ImportExportJob{Type: twinhub.ImportExportImport, InputBlobContainerURI: args[0], OutputBlobContainerURI: args[1]})
		}),
	}
	for _, sub := range []*cobra.Command{export, imp} {
		sub.Flags().BoolVar(&configurations, "include-configurations", false, "also the automatic configurations (configurations.txt)")
		sub.Flags().BoolVar(&wait, "wait", false, "wait until the job ends")
	}
	show := &cobra.Command{
		Use: "show JOB_ID", Short: "Show an import or export job", Args: cobra.ExactArgs(1),
		RunE: withClient(g, func(c *client, args []string) error {
			var out twinhub.ImportExportJob
			if _, err := c.call("GET", "/jobs/"+escape(args[0]), nil, nil, &out); err != nil {
				return err
			}
			return g.print(out, registryJobColumns)
		}),
	}
	cancel := &cobra.Command{
		Use: "cancel JOB_ID", Short: "Cancel an import or export job that has not ended", Args: cobra.ExactArgs(1),
		RunE: withClient(g, func(c *client, args []string) error {
			var out twinhub.ImportExportJob
			if _, err := c.call("DELETE", "/jobs/"+escape(args[0]), nil, nil, &out); err != nil {
				return err
			}
			return g.print(out, registryJobColumns)
		}),
	}
	list := &cobra.Command{
		Use: "list", Short: "List import and export jobs, oldest first", Args: cobra.NoArgs,
		RunE: withClient(g, func(c *client, _ []string) error {
			var all []twinhub.ImportExportJob
			if _, err := c.call("GET", "/jobs", nil, nil, &all); err != nil {
				return err
			}
			return g.print(all, registryJobColumns)
		}),
	}
	cmd.AddCommand(export, imp, show, cancel, list)
	return cmd
}
