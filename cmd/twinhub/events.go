package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func monitorEventsCommand(g *globals) *cobra.Command {
	var device, module, group, from string
	var limit int
	cmd := &cobra.Command{
		Use:   "monitor-events",
		Short: "Print device-to-cloud messages as they arrive, with their properties",
		Long: `Print device-to-cloud messages as they arrive, one JSON object a line
(newline-delimited JSON, whatever --table says):
device and module, partition, sequence number, enqueued time, system and
application properties, and the body (as text, or base64 when it is not
UTF-8). A consumer group keeps its position in the hub: run it again with
the same --consumer-group and it resumes after the last event it printed.
--from chooses where a new group starts.`,
		Args: cobra.NoArgs,
		RunE: withClient(g, func(c *client, _ []string) error {
			if from != "start" && from != "now" {
				return fmt.Errorf("--from must be start or now")
			}
			q := url.Values{"consumerGroup": {group}, "from": {from}}
			if device != "" {
				q.Set("deviceId", device)
			}
			if module != "" {
				q.Set("moduleId", module)
			}
			if limit > 0 {
				q.Set("max", strconv.Itoa(limit))
			}
			c.http.Timeout = 0
			resp, err := c.do("GET", "/twinhub/events?"+q.Encode(), nil, nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			out := bufio.NewWriter(os.Stdout)
			for sc.Scan() {
				var v any
				if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
					return fmt.Errorf("reading the event stream: %w", err)
				}
				enc := json.NewEncoder(out)
				enc.SetEscapeHTML(false)
				enc.Encode(v)
				out.Flush()
			}
			return sc.Err()
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&device, "device", "", "only this device's events (and its modules')")
	fl.StringVar(&module, "module", "", "only this module's events (needs --device)")
	fl.StringVar(&group, "consumer-group", "$Default", "consumer group: its position is kept in the hub")
	fl.IntVar(&limit, "max", 0, "exit after this many events (0: run until interrupted)")
	fl.StringVar(&from, "from", "now", "where a new consumer group starts: start (oldest kept) or now")
	return cmd
}

// fileNotificationPoll is how often monitor-file-notifications asks the
// hub again when it had none (IoT Hub's REST receive does not wait).
const fileNotificationPoll = 500 * time.Millisecond

func monitorFileNotificationsCommand(g *globals) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "monitor-file-notifications",
		Short: "Print file-upload notifications as devices complete uploads, and complete them",
		Long: `Print file-upload notifications as devices complete their uploads, one
JSON object a line (deviceId, blobUri, blobName, lastUpdatedTime,
blobSizeInBytes, enqueuedTimeUtc), completing each once printed, as a
back end's file-notification receiver does. Back ends share the
notifications: one that this command completed is not given to another.`,
		Args: cobra.NoArgs,
		RunE: withClient(g, func(c *client, _ []string) error {
			out := bufio.NewWriter(os.Stdout)
			for n := 0; limit == 0 || n < limit; {
				var note map[string]any
				h, err := c.call("GET", "/messages/serviceBound/filenotifications", nil, nil, &note)
				if err != nil {
					return err
				}
				lock := strings.Trim(h.Get("ETag"), `"`)
				if lock == "" {
					time.Sleep(fileNotificationPoll)
					continue
				}
				enc := json.NewEncoder(out)
				enc.SetEscapeHTML(false)
				enc.Encode(note)
				out.Flush()
				if _, err := c.call("DELETE", "/messages/serviceBound/filenotifications/"+escape(lock), nil, nil, nil); err != nil {
					return err
				}
				n++
			}
			return nil
		}),
	}
	cmd.Flags().IntVar(&limit, "max", 0, "exit after this many notifications (0: run until interrupted)")
	return cmd
}
