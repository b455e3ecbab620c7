package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/twinhub/twinhub/sas"
)

// do sends a request with a raw body and returns the response, for the
// routes that do not speak JSON both ways. The caller closes the body.
func (c *client) do(method, path string, header http.Header, body []byte) (*http.Response, error) {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	req, err := http.NewRequest(method, c.base+path+sep+"api-version="+apiVersion, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	token, err := sas.NewToken(c.host, c.policy.Name, c.policy.PrimaryKey, time.Now().Add(time.Hour))
	if err != nil {
		return nil, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Authorization", token)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		var e struct{ Message string }
		json.Unmarshal(data, &e)
		msg := strings.TrimPrefix(e.Message, "ErrorCode:")
		if code, text, ok := strings.Cut(msg, ";"); ok {
			msg = code + ": " + text
		}
		if msg == "" {
			msg = strings.TrimSpace(string(data))
		}
		return nil, fmt.Errorf("%s (HTTP %d)", msg, resp.StatusCode)
	}
	return resp, nil
}

func c2dCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "c2d", Short: "Send cloud-to-device messages and manage device queues"}
	var props []string
	var ack, messageID, correlationID, contentType string
	var ttl int
	send := &cobra.Command{
		Use:   "send ID BODY",
		Short: "Queue a cloud-to-device message for a device",
		Args:  cobra.ExactArgs(2),
		RunE: withClient(g, func(c *client, args []string) error {
			h := http.Header{}
			for _, p := range props {
				k, v, ok := strings.Cut(p, "=")
				if !ok || k == "" {
					return fmt.Errorf("--props %q is not key=value", p)
				}
				h.Add("iothub-app-"+k, v)
			}
			set := func(k, v string) {
				if v != "" {
					h.Set(k, v)
				}
			}
			set("iothub-ack", ack)
			set("iothub-messageid", messageID)
			set("iothub-correlationid", correlationID)
			set("Content-Type", contentType)
			path := "/twinhub/c2d/" + escape(args[0])
			if ttl > 0 {
				path += "?ttl=" + strconv.Itoa(ttl)
			}
			resp, err := c.do("POST", path, h, []byte(args[1]))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var out map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				return err
			}
			return g.print(out, []string{"messageId", "expiryTimeUtc"})
		}),
	}
	fl := send.Flags()
	fl.StringArrayVar(&props, "props", nil, "application property key=value (repeat for more)")
	fl.StringVar(&ack, "ack", "", "feedback wanted: none, positive, negative or full")
	fl.IntVar(&ttl, "ttl", 0, "time to live in seconds (default 3600, at most 172800)")
	fl.StringVar(&messageID, "message-id", "", "message id (default: generated)")
	fl.StringVar(&correlationID, "correlation-id", "", "correlation id")
	fl.StringVar(&contentType, "content-type", "", "content type of the body")
	purge := &cobra.Command{
		Use:   "purge ID",
		Short: "Delete the pending cloud-to-device messages of a device",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(g, func(c *client, args []string) error {
			var out map[string]any
			if _, err := c.call("DELETE", "/devices/"+escape(args[0])+"/commands", nil, nil, &out); err != nil {
				return err
			}
			return g.print(out, []string{"deviceId", "totalMessagesPurged"})
		}),
	}
	var keep bool
	feedback := &cobra.Command{
		Use:   "feedback",
		Short: "Print the feedback on cloud-to-device messages and complete it",
		Args:  cobra.NoArgs,
		RunE: withClient(g, func(c *client, _ []string) error {
			var recs []map[string]any
			h, err := c.call("GET", "/messages/serviceBound/feedback", nil, nil, &recs)
			if err != nil {
				return err
			}
			if recs == nil {
				recs = []map[string]any{}
			}
			if err := g.print(recs, []string{"originalMessageId", "deviceId", "statusCode", "enqueuedTimeUtc"}); err != nil {
				return err
			}
			lock := strings.Trim(h.Get("ETag"), `"`)
			if lock == "" {
				return nil
			}
			if keep {
				_, err = c.call("POST", "/messages/serviceBound/feedback/"+escape(lock)+"/abandon", nil, nil, nil)
			} else {
				_, err = c.call("DELETE", "/messages/serviceBound/feedback/"+escape(lock), nil, nil, nil)
			}
			return err
		}),
	}
	feedback.Flags().BoolVar(&keep, "keep", false, "abandon the records instead of completing them, so they are read again")
	cmd.AddCommand(send, purge, feedback)
	return cmd
}
