package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/twinhub/twinhub/certs"
	"github.com/twinhub/twinhub/datadir"
)

// caCommand makes the hub's CA ahead of the first start, so that clients
// can be told to trust it before the hub runs (Node.js reads
// NODE_EXTRA_CA_CERTS only when it starts), and so that several hubs can
// share one CA by copying ca.pem and ca-key.pem into their data folders.
func caCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "The hub's certificate authority"}
	cmd.AddCommand(&cobra.Command{
		Use:   "init",
		Short: "Create the CA in the data folder if it is missing, and print the path of its certificate",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			dir, err := datadir.Open(g.data)
			if err != nil {
				return err
			}
			if err := certs.EnsureCA(dir.Path); err != nil {
				return err
			}
			fmt.Println(dir.File(certs.CAFile))
			return nil
		},
	})
	var certOut, keyOut string
	issue := &cobra.Command{
		Use:   "issue HOST... --cert FILE --key FILE",
		Short: "Write a server certificate for HOSTs signed by the hub's CA (for a service beside the hub, such as Azurite for file upload)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, hosts []string) error {
			dir, err := datadir.Open(g.data)
			if err != nil {
				return err
			}
			return certs.Issue(dir.Path, hosts, certOut, keyOut)
		},
	}
	issue.Flags().StringVar(&certOut, "cert", "cert.pem", "where to write the certificate (PEM)")
	issue.Flags().StringVar(&keyOut, "key", "key.pem", "where to write its private key (PEM)")
	cmd.AddCommand(issue)
	return cmd
}
