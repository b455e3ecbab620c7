package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
)

func methodCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "method", Short: "Call direct methods on devices and modules"}
	var module, payload string
	var timeout, connectTimeout int
	invoke := &cobra.Command{
		Use:   "invoke ID NAME",
		Short: "Call a direct method and print the device's status and payload",
		Args:  cobra.ExactArgs(2),
		RunE: withClient(g, func(c *client, args []string) error {
			req := map[string]any{"methodName": args[1], "responseTimeoutInSeconds": timeout}
			if connectTimeout > 0 {
				req["connectTimeoutInSeconds"] = connectTimeout
			}
			if payload != "" {
				if !json.Valid([]byte(payload)) {
					return fmt.Errorf("--payload is not JSON")
				}
				req["payload"] = json.RawMessage(payload)
			}
			path := "/twins/" + escape(args[0])
			if module != "" {
				path += "/modules/" + escape(module)
			}
			path += "/methods"
			c.http.Timeout = 0 // the hub bounds the call
			var out struct {
				Status  int             `json:"status"`
				Payload json.RawMessage `json:"payload"`
			}
			if _, err := c.call("POST", path, nil, req, &out); err != nil {
				return err
			}
			return g.print(out, []string{"status", "payload"})
		}),
	}
	fl := invoke.Flags()
	fl.StringVar(&module, "module", "", "call a method of this module of the device")
	fl.StringVar(&payload, "payload", "", "JSON payload of the call")
	fl.IntVar(&timeout, "timeout", 30, "seconds to wait for the device's answer (5 to 300)")
	fl.IntVar(&connectTimeout, "connect-timeout", 0, "seconds to wait for the device to come online (0 to 300)")
	cmd.AddCommand(invoke)
	return cmd
}
