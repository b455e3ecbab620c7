package reliability

import (
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	goamqp "github.com/Azure/go-amqp"
)

// ehReader reads one partition of the Event Hubs-compatible endpoint
// with go-amqp as an Event Hubs consumer does: it keeps its checkpoint
// (the offset of the last event it handled) and, when the connection
// fails, connects again and goes on after the checkpoint.
type ehReader struct {
	p         *proc
	partition int

	mu         sync.Mutex
	checkpoint string // "-1": the start
	seqs       []int  // the device's "seq" of each event read, in order
	offsets    []int64
	reconnects int
}

// run reads until ctx ends.
func (r *ehReader) run(ctx context.Context) {
	for ctx.Err() == nil {
		err := r.readOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		r.reconnects++
		r.mu.Unlock()
		r.p.t.Logf("event hub reader: %v; connecting again", err)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (r *ehReader) readOnce(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := goamqp.Dial("amqps://"+net.JoinHostPort(r.p.Addr, "5671"), &goamqp.ConnOptions{
		SASLType: goamqp.SASLTypeAnonymous(), TLSConfig: r.p.TLSConfig(), Timeout: 10 * time.Second})
	if err != nil {
		return err
	}
	defer conn.Close()
	s, err := conn.NewSession(dctx, nil)
	if err != nil {
		return err
	}
	if err := r.putToken(dctx, s); err != nil {
		return err
	}
	r.mu.Lock()
	from := r.checkpoint
	r.mu.Unlock()
	address := "twinhub/ConsumerGroups/$Default/Partitions/" + strconv.Itoa(r.partition)
	rcv, err := s.NewReceiver(dctx, address, &goamqp.ReceiverOptions{Credit: 50,
		Filters: []goamqp.LinkFilter{goamqp.NewSelectorFilter("amqp.annotation.x-opt-offset > '" + from + "'")}})
	if err != nil {
		return err
	}
	for {
		m, err := rcv.Receive(ctx)
		if err != nil {
			return err
		}
		var body struct{ Seq int }
		if err := json.Unmarshal(m.GetData(), &body); err != nil {
			return err
		}
		offset, _ := m.Annotations["x-opt-offset"].(string)
		n, err := strconv.ParseInt(offset, 10, 64)
		if err != nil {
			return errors.New("event without an x-opt-offset")
		}
		rcv.AcceptMessage(ctx, m)
		r.mu.Lock()
		r.seqs = append(r.seqs, body.Seq)
		r.offsets = append(r.offsets, n)
		r.checkpoint = offset
		r.mu.Unlock()
	}
}

// putToken puts the service policy's token for the hub on $cbs.
func (r *ehReader) putToken(ctx context.Context, s *goamqp.Session) error {
	snd, err := s.NewSender(ctx, "$cbs", nil)
	if err != nil {
		return err
	}
	defer snd.Close(ctx)
	rcv, err := s.NewReceiver(ctx, "$cbs", nil)
	if err != nil {
		return err
	}
	defer rcv.Close(ctx)
	err = snd.Send(ctx, &goamqp.Message{
		Properties: &goamqp.MessageProperties{MessageID: "put-1"},
		ApplicationProperties: map[string]any{"operation": "put-token", "type": "servicebus.windows.net:sastoken",
			"name": "sb://" + r.p.HostName + "/twinhub"},
		Value: r.p.tokenFor("sb://"+r.p.HostName+"/twinhub", "service", r.p.Policies["service"].PrimaryKey, time.Hour),
	})
	if err != nil {
		return err
	}
	res, err := rcv.Receive(ctx)
	if err != nil {
		return err
	}
	if code, _ := res.ApplicationProperties["status-code"].(int32); code != 200 {
		return errors.New("put-token refused: " + strconv.Itoa(int(code)))
	}
	return nil
}

// TestEventHubReaderAcrossKill: a device sends telemetry at QoS 1 while
// an Event Hubs reader (go-amqp) reads its partition; the hub is killed
// with SIGKILL and started again. The reader connects again from its
// checkpoint and, in the end, has read every acknowledged event, each
// once, in the order sent, with offsets that only grow. Address
// 127.0.0.70.
func TestEventHubReaderAcrossKill(t *testing.T) {
	p := newProc(t, "127.0.0.70")
	c := p.rest()
	d := c.createDevice(t, "eh-reader")
	h := fnv.New32a()
	h.Write([]byte(d.ID))
	r := &ehReader{p: p, partition: int(h.Sum32() % 4), checkpoint: "-1"}

	readCtx, stopReading := context.WithCancel(context.Background())
	defer stopReading()
	readerDone := make(chan struct{})
	go func() { defer close(readerDone); r.run(readCtx) }()

	load := newTelemetryLoad([]device{d})
	loadCtx, stopLoad := context.WithCancel(context.Background())
	loadDone := make(chan struct{})
	go func() { defer close(loadDone); load.run(loadCtx, t, p) }()

	time.Sleep(1500 * time.Millisecond) // load before the kill; nothing is timed
	p.Kill()
	p.Start(t)
	time.Sleep(1500 * time.Millisecond) // and after it
	stopLoad()
	<-loadDone

	load.mu.Lock()
	acked := append([]int(nil), load.acked[d.ID]...)
	load.mu.Unlock()
	if len(acked) == 0 {
		t.Fatal("no event was acknowledged: the load did not run")
	}
	last := acked[len(acked)-1]
	// Wait until the reader has read past the last acknowledged event.
	deadline := time.Now().Add(60 * time.Second)
	for {
		r.mu.Lock()
		done := len(r.seqs) > 0 && r.seqs[len(r.seqs)-1] >= last
		r.mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopReading()
	<-readerDone

	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[int]int{}
	for i, s := range r.seqs {
		seen[s]++
		if seen[s] == 2 {
			t.Errorf("event %d read twice", s)
		}
		if i > 0 && (s <= r.seqs[i-1] || r.offsets[i] <= r.offsets[i-1]) {
			t.Errorf("event %d (offset %d) read after %d (offset %d)", s, r.offsets[i], r.seqs[i-1], r.offsets[i-1])
		}
	}
	lost := 0
	for _, s := range acked {
		if seen[s] == 0 {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged event %d was not read", s)
			}
		}
	}
	t.Logf("acknowledged %d events, read %d (some unacknowledged ones may be stored too), lost %d; the reader connected again %d times",
		len(acked), len(r.seqs), lost, r.reconnects)
	if r.reconnects == 0 {
		t.Error("the reader never lost its connection: the hub was not killed under it")
	}
}
