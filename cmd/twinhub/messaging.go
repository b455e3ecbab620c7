package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/jetstream"
)

// c2dSweepInterval is how often expired cloud-to-device messages are
// deleted (with feedback) when no delivery has come across them.
const c2dSweepInterval = time.Minute

// openMessaging opens the telemetry streams, the cloud-to-device queues
// and their feedback, the file-upload notifications, and the Event Hubs
// endpoint's consumer groups, the jobs and the automatic configurations,
// for the hub's configuration.
func openMessaging(ctx context.Context, nc *nats.Conn, f *serveFlags, log *slog.Logger, conf *hub.Config) error {
	tel, err := jetstream.OpenTelemetry(ctx, nc, jetstream.TelemetryOptions{
		Partitions: f.telemetryPartitions, Retention: f.telemetryRetention, Replicas: f.replicas, Log: log,
	})
	if err != nil {
		return err
	}
	q, err := jetstream.OpenC2D(ctx, nc, f.replicas)
	if err != nil {
		return err
	}
	fb, err := jetstream.OpenFeedback(ctx, nc, f.replicas)
	if err != nil {
		return err
	}
	files, err := jetstream.OpenFileNotifications(ctx, nc, f.replicas)
	if err != nil {
		return err
	}
	groups, err := jetstream.OpenConsumerGroups(ctx, nc, f.replicas)
	if err != nil {
		return err
	}
	jobs, err := jetstream.OpenJobs(ctx, nc, f.replicas)
	if err != nil {
		return err
	}
	configs, err := jetstream.OpenConfigurations(ctx, nc, f.replicas)
	if err != nil {
		return err
	}
	uploads, err := jetstream.OpenUploads(ctx, nc, f.replicas)
	if err != nil {
		return err
	}
	conf.Telemetry, conf.C2D, conf.Feedback, conf.FileNotifications, conf.ConsumerGroups = tel, q, fb, files, groups
	conf.Jobs, conf.ImportExportJobs, conf.Configurations, conf.Uploads = jobs, jobs, configs, uploads
	return nil
}
