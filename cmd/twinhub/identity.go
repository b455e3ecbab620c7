package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/twinhub/twinhub/certs"
	"github.com/twinhub/twinhub/datadir"
	"github.com/twinhub/twinhub/jetstream"
)

// The keys of the settings bucket.
const (
	caSetting  = "ca"
	hubSetting = "hub"
)

// sharedIdentity makes this node serve the hub its store belongs to. The
// hub's identity (host name, shared access policies) and its CA live in
// the store's settings bucket, where the first node to start puts them:
// those of its data folder when the hub ran there before (hub.json, the
// CA files), new ones otherwise. Every node then writes them into its data
// folder, hub.json for the CLI and the CA for its server certificate, so
// a node that joins a cluster needs no files copied (except the CA for an
// embedded cluster's routes, which must trust each other before they can
// share anything). A data folder with another CA is another hub's: the
// node refuses to start rather than serve under a name it does not own.
// firstStart says that the data folder had no hub.json yet.
func sharedIdentity(ctx context.Context, dir datadir.Dir, nc *nats.Conn, f *serveFlags, log *slog.Logger) (h datadir.Hub, firstStart bool, err error) {
	settings, err := jetstream.OpenSettings(ctx, nc, f.replicas)
	if err != nil {
		return datadir.Hub{}, false, err
	}
	if err := shareCA(ctx, dir, settings, log); err != nil {
		return datadir.Hub{}, false, err
	}
	clustered := f.cluster != "" || f.natsURL != ""
	local, err := dir.LoadHub()
	firstStart = errors.Is(err, os.ErrNotExist)
	h, err = shareHub(ctx, dir, local, err, settings, f.hostname, clustered, log)
	return h, firstStart, err
}

// identityWait is how long a node of a cluster that has no identity of
// its own (no hub.json, no --hostname) waits for another node to store
// one before it makes one, named localhost.
const identityWait = time.Minute

func shareCA(ctx context.Context, dir datadir.Dir, settings *jetstream.Settings, log *slog.Logger) error {
	local, err := certs.LoadCA(dir.Path)
	had := err == nil
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	stored, _, found, err := settings.Get(ctx, caSetting)
	if err != nil {
		return fmt.Errorf("reading the hub's CA from the store: %w", err)
	}
	if !found {
		if !had {
			if local, err = certs.NewCA(dir.Path); err != nil {
				return err
			}
		}
		proposed, err := json.Marshal(local)
		if err != nil {
			return err
		}
		var created bool
		if stored, _, created, err = settings.Agree(ctx, caSetting, proposed); err != nil {
			return fmt.Errorf("storing the hub's CA: %w", err)
		}
		if created {
			log.Info("the hub's CA is kept in the store for every node", "ca", dir.File(certs.CAFile))
		}
	}
	var shared certs.CA
	if err := json.Unmarshal(stored, &shared); err != nil {
		return fmt.Errorf("the hub's CA in the store is unreadable: %w", err)
	}
	switch {
	case shared.Same(local):
		return nil
	case had:
		return fmt.Errorf("the CA in %s is not that of the hub whose store this node joined: the data folder is another hub's. "+
			"Start this node with an empty data folder (or with the hub's own %s and %s)", dir.Path, certs.CAFile, certs.CAKeyFile)
	}
	log.Info("took the hub's CA from the store", "ca", dir.File(certs.CAFile))
	return shared.Write(dir.Path)
}

// shareHub agrees on the hub's identity with the store, starting from
// local, the data folder's hub.json as LoadHub read it (with its error).
func shareHub(ctx context.Context, dir datadir.Dir, local datadir.Hub, err error, settings *jetstream.Settings, hostname string, clustered bool, log *slog.Logger) (datadir.Hub, error) {
	had := err == nil
	if errors.Is(err, os.ErrNotExist) && hostname == "" && clustered {
		// The nodes of a new cluster start at once, and the first to
		// store an identity wins: this one's would be named localhost.
		if err := awaitSetting(ctx, settings, hubSetting, log); err != nil {
			return local, err
		}
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
		if local, err = datadir.NewHub(hostname); err != nil {
			return local, err
		}
	case err != nil:
		return local, err
	case hostname != "":
		local.HostName = hostname
	}
	proposed, err := json.Marshal(local)
	if err != nil {
		return local, err
	}
	stored, rev, created, err := settings.Agree(ctx, hubSetting, proposed)
	if err != nil {
		return local, fmt.Errorf("storing the hub's identity: %w", err)
	}
	var h datadir.Hub
	if err := json.Unmarshal(stored, &h); err != nil || h.HostName == "" || len(h.Policies) == 0 {
		return h, fmt.Errorf("the hub's identity in the store is unreadable (%v)", err)
	}
	switch {
	case created && had:
		log.Info("the hub's identity (host name, policies) is kept in the store for every node, from hub.json", "host", h.HostName)
	case created:
		log.Info("made the hub's identity (host name, policies), kept in the store for every node", "host", h.HostName)
	case had && !slices.Equal(local.Policies, h.Policies):
		log.Warn("this node's hub.json has other shared access policies than the hub's store; serving the store's and rewriting hub.json")
	}
	if !created && hostname != "" && hostname != h.HostName {
		// As on one node, --hostname renames the hub.
		log.Info("the hub's host name changes", "from", h.HostName, "to", hostname)
		h.HostName = hostname
		data, err := json.Marshal(h)
		if err != nil {
			return h, err
		}
		if err := settings.Replace(ctx, hubSetting, data, rev); err != nil {
			return h, err
		}
	}
	return h, dir.SaveHub(h)
}

// awaitSetting waits up to identityWait for key to be stored by another
// node.
func awaitSetting(ctx context.Context, settings *jetstream.Settings, key string, log *slog.Logger) error {
	deadline := time.Now().Add(identityWait)
	for said := false; time.Now().Before(deadline); said = true {
		_, _, found, err := settings.Get(ctx, key)
		if err != nil || found {
			return err
		}
		if !said {
			log.Info("waiting for another node to store the hub's identity (the node started with --hostname)", "up to", identityWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	log.Warn("no node stored the hub's identity: making one, named localhost (start a node with --hostname to rename it)")
	return nil
}
