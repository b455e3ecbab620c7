package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
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
	cmd.AddCommand(status, haproxyCommand())
	return cmd
}

// haproxyOptions are what `cluster haproxy` puts in the configuration.
type haproxyOptions struct {
	front      string   // the address the load balancer binds: the hub's HostName resolves to it
	nodes      []string // the nodes' addresses
	maxconn    int
	readyzPort int // the nodes' --metrics-addr port for an HTTP /readyz check; 0 checks the hub port itself
}

func haproxyCommand() *cobra.Command {
	o := haproxyOptions{}
	cmd := &cobra.Command{
		Use:   "haproxy --front ADDRESS NODE_ADDRESS...",
		Short: "Print an HAProxy configuration that puts one address in front of the nodes",
		Long: `Print an HAProxy configuration (TCP mode, TLS ends at the nodes) that
forwards the hub's ports 443, 8883 and 5671 on --front to the same ports
of each node, round robin over the nodes that pass a health check every
500 ms (down after two failures, up after two successes), and sends a
connection a node refuses to another. The hub's HostName must resolve to
--front. The check is a TCP connect to the port, or with --readyz-port
the node's /readyz on its --metrics-addr port, which also takes out a node
whose store does not answer or whose cluster has no quorum (during a
leader election that can be every node for a few seconds).

	twinhub cluster haproxy --front 10.0.0.10 10.0.0.1 10.0.0.2 10.0.0.3 > /etc/haproxy/haproxy.cfg`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			o.nodes = args
			cfg, err := haproxyConfig(o)
			if err != nil {
				return err
			}
			_, err = os.Stdout.WriteString(cfg)
			return err
		},
	}
	cmd.Flags().StringVar(&o.front, "front", "", "address HAProxy listens on, which the hub's HostName resolves to (required)")
	cmd.Flags().IntVar(&o.maxconn, "maxconn", 4000, "connections HAProxy takes at once (each uses two file descriptors; raise it with the process's limit for large fleets)")
	cmd.Flags().IntVar(&o.readyzPort, "readyz-port", 0, "check each node's /readyz on this port (its --metrics-addr) instead of a TCP connect")
	cmd.MarkFlagRequired("front")
	return cmd
}

// hubPorts are the ports the SDKs dial on the HostName: HTTPS and
// WebSockets, MQTT, AMQP.
var hubPorts = []int{443, 8883, 5671}

// haproxyConfig is the configuration `cluster haproxy` prints: the one
// way the tests, the cluster benchmark and users put the nodes behind one
// address.
func haproxyConfig(o haproxyOptions) (string, error) {
	for _, a := range append([]string{o.front}, o.nodes...) {
		if net.ParseIP(a) == nil && !validHostName(a) {
			return "", fmt.Errorf("%q is neither an IP address nor a host name", a)
		}
	}
	if o.maxconn <= 0 {
		return "", errors.New("--maxconn must be positive")
	}
	if o.readyzPort < 0 || o.readyzPort > 65535 {
		return "", fmt.Errorf("--readyz-port %d is not a port", o.readyzPort)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# twinhub cluster haproxy: %s in front of %s\n", o.front, strings.Join(o.nodes, ", "))
	fmt.Fprintf(&b, "global\n  maxconn %d\n", o.maxconn)
	// Device connections live for hours: the timeouts only bound a silent
	// peer (MQTT keep-alives and AMQP idle timeouts are shorter).
	b.WriteString("defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 1h\n  timeout server 1h\n  retries 2\n  option redispatch\n")
	check := "check inter 500ms fall 2 rise 2"
	if o.readyzPort != 0 {
		check += fmt.Sprintf(" port %d", o.readyzPort)
	}
	for _, port := range hubPorts {
		fmt.Fprintf(&b, "frontend f%d\n  bind %s:%d\n  default_backend b%d\n", port, o.front, port, port)
		fmt.Fprintf(&b, "backend b%d\n  balance roundrobin\n", port)
		if o.readyzPort != 0 {
			b.WriteString("  option httpchk GET /readyz\n")
		}
		for i, n := range o.nodes {
			fmt.Fprintf(&b, "  server n%d %s %s\n", i+1, net.JoinHostPort(n, strconv.Itoa(port)), check)
		}
	}
	return b.String(), nil
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

// validHostName says whether s is a DNS name (letters, digits, hyphens
// and dots): what may stand for an address in the configuration.
func validHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}
