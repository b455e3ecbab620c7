package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/twinhub/twinhub"
)

var jobColumns = []string{"jobId", "type", "status", "queryCondition", "startTime", "endTime", "deviceJobStatistics.deviceCount",
	"deviceJobStatistics.succeededCount", "deviceJobStatistics.failedCount"}

// jobCommand schedules, shows, lists and cancels jobs (jobs v2).
func jobCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "job", Short: "Schedule twin updates and direct methods over many devices"}
	var condition, start, tags, desired, payload string
	var maxSeconds, timeout int
	var wait bool
	// schedule PUTs the job, then with --wait polls it until it ends.
	schedule := func(c *client, j twinhub.Job) error {
		j.QueryCondition, j.MaxExecutionTimeInSeconds = condition, int64(maxSeconds)
		if start != "" {
			t, err := time.Parse(time.RFC3339, start)
			if err != nil {
				return fmt.Errorf("--start %q: want a time such as 2026-12-24T18:00:00Z", start)
			}
			j.StartTime = twinhub.Time{Time: t}
		}
		var out twinhub.Job
		if _, err := c.call("PUT", "/jobs/v2/"+escape(j.JobID), nil, j, &out); err != nil {
			return err
		}
		for wait && !out.Done() {
			time.Sleep(time.Second)
			if _, err := c.call("GET", "/jobs/v2/"+escape(j.JobID), nil, nil, &out); err != nil {
				return err
			}
		}
		return g.print(out, jobColumns)
	}
	twin := &cobra.Command{
		Use:   "update-twin JOB_ID --condition COND [--tags JSON] [--desired JSON]",
		Short: "Merge tags and desired properties into every twin the condition matches",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(g, func(c *client, args []string) error {
			update := map[string]any{"etag": "*"}
			if tags != "" {
				if !json.Valid([]byte(tags)) {
					return fmt.Errorf("--tags is not JSON")
				}
				update["tags"] = json.RawMessage(tags)
			}
			if desired != "" {
				if !json.Valid([]byte(desired)) {
					return fmt.Errorf("--desired is not JSON")
				}
				update["properties"] = map[string]any{"desired": json.RawMessage(desired)}
			}
			raw, _ := json.Marshal(update)
			return schedule(c, twinhub.Job{JobID: args[0], Type: twinhub.JobUpdateTwin, UpdateTwin: raw})
		}),
	}
	method := &cobra.Command{
		Use:   "invoke-method JOB_ID METHOD --condition COND [--payload JSON]",
		Short: "Call a direct method on every device the condition matches",
		Args:  cobra.ExactArgs(2),
		RunE: withClient(g, func(c *client, args []string) error {
			req := twinhub.MethodRequest{MethodName: args[1], ResponseTimeoutInSeconds: &timeout}
			if payload != "" {
				if !json.Valid([]byte(payload)) {
					return fmt.Errorf("--payload is not JSON")
				}
				req.Payload = json.RawMessage(payload)
			}
			return schedule(c, twinhub.Job{JobID: args[0], Type: twinhub.JobDeviceMethod, CloudToDeviceMethod: &req})
		}),
	}
	for _, c := range []*cobra.Command{twin, method} {
		fl := c.Flags()
		fl.StringVar(&condition, "condition", "", "which devices: a WHERE condition of a devices query, or * for every device")
		fl.StringVar(&start, "start", "", "when to start (RFC 3339; default now)")
		fl.IntVar(&maxSeconds, "max-seconds", twinhub.DefaultJobMaxExecution, "how long the job may run")
		fl.BoolVar(&wait, "wait", false, "wait for the job to end")
		_ = c.MarkFlagRequired("condition")
	}
	twin.Flags().StringVar(&tags, "tags", "", "tags to merge (JSON)")
	twin.Flags().StringVar(&desired, "desired", "", "desired properties to merge (JSON)")
	method.Flags().StringVar(&payload, "payload", "", "JSON payload of each call")
	method.Flags().IntVar(&timeout, "timeout", 30, "seconds to wait for each device's answer (5 to 300)")

	show := &cobra.Command{
		Use: "show JOB_ID", Short: "Show a job", Args: cobra.ExactArgs(1),
		RunE: withClient(g, func(c *client, args []string) error {
			var out twinhub.Job
			if _, err := c.call("GET", "/jobs/v2/"+escape(args[0]), nil, nil, &out); err != nil {
				return err
			}
			return g.print(out, jobColumns)
		}),
	}
	cancel := &cobra.Command{
		Use: "cancel JOB_ID", Short: "Cancel a job that has not ended", Args: cobra.ExactArgs(1),
		RunE: withClient(g, func(c *client, args []string) error {
			var out twinhub.Job
			if _, err := c.call("POST", "/jobs/v2/"+escape(args[0])+"/cancel", nil, nil, &out); err != nil {
				return err
			}
			return g.print(out, jobColumns)
		}),
	}
	var jobType, status string
	list := &cobra.Command{
		Use: "list [--type T] [--status S]", Short: "List jobs, oldest first", Args: cobra.NoArgs,
		RunE: withClient(g, func(c *client, _ []string) error {
			q := url.Values{}
			if jobType != "" {
				q.Set("jobType", jobType)
			}
			if status != "" {
				q.Set("jobStatus", status)
			}
			all, err := pages[twinhub.Job](c, "GET", "/jobs/v2/query?"+q.Encode(), nil, 1000)
			if err != nil {
				return err
			}
			return g.print(all, jobColumns)
		}),
	}
	list.Flags().StringVar(&jobType, "type", "", "scheduleUpdateTwin or scheduleDeviceMethod")
	list.Flags().StringVar(&status, "status", "", "queued, scheduled, running, completed, failed or cancelled")
	cmd.AddCommand(twin, method, show, cancel, list)
	return cmd
}
