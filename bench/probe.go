package bench

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"time"
)

// A query probe is a back end of its own, in a process of its own, that
// asks a by-id query every 20 ms: the million scenario runs one beside
// its in-process queries while the updates run. A query of the load
// generator's own waits for a core behind the generator's 64 writers
// (its goroutines have no priority over theirs), which at a million
// twins was about half of the by-id p50 the generator measured (2.02 ms
// in-process against 0.94 ms from another process, same run); an
// application querying the hub is not the process that writes its
// twins, and the system's scheduler, not the generator's, shares the
// cores between them.

// probeSpec is what the parent hands a probe on its standard input.
type probeSpec struct {
	Host       string        `json:"host"`
	HTTPSAddr  string        `json:"https_addr"`
	PolicyName string        `json:"policy_name"`
	PolicyKey  string        `json:"policy_key"`
	CAPEM      []byte        `json:"ca_pem"`
	IDs        []string      `json:"ids"` // the device ids to query, one at random each time
	Duration   time.Duration `json:"duration_ns"`
}

// probeResult is what a probe writes to its standard output.
type probeResult struct {
	Latencies []time.Duration `json:"latencies_ns"`
	Failed    int             `json:"failed"`
	Errors    []string        `json:"errors"` // the first few
}

// probeEvery is the pace of a probe's queries, as the scenario's own.
const probeEvery = 20 * time.Millisecond

// RunProbe runs a query probe: the spec from in, the result to out. It is
// `twinhub bench-probe`, which Config.ProbeCommand names.
func RunProbe(ctx context.Context, in io.Reader, out io.Writer) error {
	var spec probeSpec
	if err := json.NewDecoder(in).Decode(&spec); err != nil {
		return fmt.Errorf("probe spec: %w", err)
	}
	if len(spec.IDs) == 0 {
		return errors.New("probe spec: no device ids")
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(spec.CAPEM) {
		return errors.New("probe spec: no CA certificate")
	}
	t := &Target{Host: spec.Host, HTTPSAddr: spec.HTTPSAddr, RootCAs: roots, PolicyName: spec.PolicyName, PolicyKey: spec.PolicyKey}
	svc := newService(t, 1)
	defer svc.close()
	var res probeResult
	tick := time.NewTicker(probeEvery)
	defer tick.Stop()
	end := time.After(spec.Duration)
	// The first query goes at once, so that a probe that started late in
	// a short phase still measures one.
	for {
		q := fmt.Sprintf("SELECT * FROM devices WHERE deviceId = '%s'", spec.IDs[rand.IntN(len(spec.IDs))])
		s := time.Now()
		n, err := svc.queryPages(ctx, q, 100, nil)
		if err == nil && n != 1 {
			err = fmt.Errorf("%d twins for one device id", n)
		}
		if err == nil {
			res.Latencies = append(res.Latencies, time.Since(s))
		} else if res.Failed++; len(res.Errors) < 5 {
			res.Errors = append(res.Errors, err.Error())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-end:
			return json.NewEncoder(out).Encode(res)
		case <-tick.C:
		}
	}
}

// startProbe starts a query probe over a sample of ids for d; wait
// records what it measured in rec. wait is nil when the run has no
// ProbeCommand.
func (e *env) startProbe(ids []string, d time.Duration, rec *recorder) (wait func() error, err error) {
	if len(e.cfg.ProbeCommand) == 0 || len(e.t.CAPEM) == 0 {
		return nil, nil
	}
	sample := make([]string, min(len(ids), 10_000))
	for i := range sample {
		sample[i] = ids[rand.IntN(len(ids))]
	}
	spec, err := json.Marshal(probeSpec{
		Host: e.t.Host, HTTPSAddr: e.t.HTTPSAddr, PolicyName: e.t.PolicyName, PolicyKey: e.t.PolicyKey,
		CAPEM: e.t.CAPEM, IDs: sample, Duration: d,
	})
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(e.ctx, e.cfg.ProbeCommand[0], e.cfg.ProbeCommand[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(spec), &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the query probe: %w", err)
	}
	return func() error {
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("query probe: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
		}
		var res probeResult
		if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
			return fmt.Errorf("query probe's result: %w", err)
		}
		for _, l := range res.Latencies {
			rec.doneLatency(l, nil)
		}
		for i := range res.Failed {
			msg := "(other errors)"
			if i < len(res.Errors) {
				msg = res.Errors[i]
			}
			rec.doneLatency(0, errors.New(msg))
		}
		return nil
	}, nil
}
