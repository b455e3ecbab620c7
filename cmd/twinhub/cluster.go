package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/twinhub/twinhub/jetstream"
)

// clusterStatus is what GET /twinhub/cluster answers: the nodes that
// answered the node asked, its view of the JetStream meta group (an
// embedded cluster's), and the hub's streams with their replicas.
type clusterStatus struct {
	AskedNode string                 `json:"askedNode"`
	Nodes     []jetstream.NodeStatus `json:"nodes"`
	Meta      *jetstream.MetaStatus  `json:"meta,omitempty"`
	// MetaError and StreamsError say why the meta group or the streams
	// could not be read (a cluster without a quorum, JetStream busy): the
	// status shows what it can rather than nothing.
	MetaError    string                   `json:"metaError,omitempty"`
	Streams      []jetstream.StreamStatus `json:"streams"`
	StreamsError string                   `json:"streamsError,omitempty"`
}

// statusWait is how long a node waits for the others to say how they are.
const statusWait = 500 * time.Millisecond

// gatherClusterStatus returns the function that gathers clusterStatus on
// the node named self.
func gatherClusterStatus(nc *nats.Conn, embedded *jetstream.Embedded, self string) func(context.Context) (any, error) {
	return func(ctx context.Context) (any, error) {
		s := clusterStatus{AskedNode: self}
		var err error
		if s.Nodes, err = jetstream.NodeStatuses(ctx, nc, statusWait); err != nil {
			return nil, err
		}
		if embedded != nil {
			if s.Meta, err = embedded.Meta(); err != nil {
				s.MetaError = err.Error()
			}
		}
		if s.Streams, err = jetstream.Streams(ctx, nc); err != nil {
			s.StreamsError = err.Error()
		}
		return s, nil
	}
}

func clusterCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "The nodes of the hub"}
	var asJSON bool
	status := &cobra.Command{
		Use:   "status",
		Short: "Print the hub's nodes (with their device connections), JetStream's meta group and each stream's replicas",
		Long: `Print the hub's nodes, as the node of this data folder sees them: the
nodes that answered it (with their addresses and device connections), the
JetStream meta group of an embedded cluster (its leader, and how current
each node is), and each stream of the hub with its replicas: its leader,
and for the others whether they have every write (current) or how many
they lack (lag). A node that does not answer is down or cut off.`,
		Args: cobra.NoArgs,
		RunE: withClient(g, func(c *client, _ []string) error {
			var s clusterStatus
			if _, err := c.call("GET", "/twinhub/cluster", nil, nil, &s); err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			printClusterStatus(os.Stdout, s, time.Now())
			return nil
		}),
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	cmd.AddCommand(status)
	return cmd
}

// printClusterStatus writes s as tables.
func printClusterStatus(w io.Writer, s clusterStatus, now time.Time) {
	fmt.Fprintf(w, "Nodes answering %s: %d\n", s.AskedNode, len(s.Nodes))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tUP\tHTTPS\tMQTT\tAMQP\tMQTT DEVICES\tAMQP DEVICES")
	for _, n := range s.Nodes {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%d\t%d\n", n.Name, now.Sub(n.Started).Round(time.Second),
			n.Addresses["https"], n.Addresses["mqtt"], n.Addresses["amqp"], n.Connections["mqtt"], n.Connections["amqp"])
	}
	tw.Flush()
	if s.MetaError != "" {
		fmt.Fprintf(w, "\nJetStream meta group: unreadable: %s\n", s.MetaError)
	}
	if m := s.Meta; m != nil {
		leader := m.Leader
		if leader == "" {
			leader = "none (no quorum)"
		}
		fmt.Fprintf(w, "\nJetStream meta group: %d nodes, leader %s\n", m.Size, leader)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  NODE\tSTATE\tLAST HEARD")
		for _, p := range m.Peers {
			fmt.Fprintf(tw, "  %s\t%s\t%s ago\n", p.Name, peerState(p), time.Duration(p.ActiveMs)*time.Millisecond)
		}
		tw.Flush()
	}
	if s.StreamsError != "" {
		fmt.Fprintf(w, "\nStreams: unreadable: %s\n", s.StreamsError)
		return
	}
	fmt.Fprintf(w, "\nStreams: %d\n", len(s.Streams))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  STREAM\tREPLICAS\tLEADER\tMESSAGES\tBYTES\tOTHER REPLICAS")
	for _, st := range s.Streams {
		var others []string
		for _, p := range st.Peers {
			others = append(others, p.Name+" "+peerState(p))
		}
		leader := st.Leader
		if leader == "" && st.Replicas > 1 {
			leader = "none"
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%d\t%d\t%s\n", st.Name, st.Replicas, leader, st.Messages, st.Bytes, strings.Join(others, ", "))
	}
	tw.Flush()
}

func peerState(p jetstream.PeerStatus) string {
	switch {
	case p.Offline:
		return "offline"
	case p.Current:
		return "current"
	default:
		return fmt.Sprintf("behind by %d", p.Lag)
	}
}
