package bench

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/twinhub/twinhub/sas"
)

// deviceOptions say how a simulated device connects.
type deviceOptions struct {
	addr       string // host:port of the MQTT listener
	tls        *tls.Config
	username   string // empty: IoT Hub's, from host and id
	password   string // empty: a SAS token from key
	host       string
	key        string
	keepAlive  time.Duration
	timeout    time.Duration
	onDesired  func(payload []byte, at time.Time)
	onMethod   func(d *device, method, rid string, payload []byte)
	subscribes []string // extra subscriptions, QoS 0 unless noted
}

// device is one simulated device: a paho client speaking IoT Hub's MQTT
// dialect, with request/response matching on $rid for twin requests.
type device struct {
	id string
	c  paho.Client

	rid     atomic.Uint64
	mu      sync.Mutex
	pending map[string]chan twinReply
}

type twinReply struct {
	status int
	body   []byte
}

const twinResPrefix = "$iothub/twin/res/"

// connectDevice connects one device and subscribes as asked; it does not
// return until the subscriptions are granted.
func connectDevice(id string, o deviceOptions) (*device, error) {
	d := &device{id: id, pending: map[string]chan twinReply{}}
	user, pass := o.username, o.password
	if user == "" {
		user = deviceUsername(o.host, id)
	}
	if pass == "" && o.key != "" {
		tok, err := deviceToken(o.host, id, o.key)
		if err != nil {
			return nil, err
		}
		pass = tok
	}
	if o.timeout == 0 {
		o.timeout = 30 * time.Second
	}
	if o.keepAlive == 0 {
		o.keepAlive = 4 * time.Minute
	}
	opts := paho.NewClientOptions().
		AddBroker("tls://" + o.addr).
		SetClientID(id).
		SetUsername(user).
		SetPassword(pass).
		SetTLSConfig(o.tls).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetOrderMatters(false).
		SetKeepAlive(o.keepAlive).
		SetPingTimeout(30 * time.Second).
		SetConnectTimeout(o.timeout).
		SetWriteTimeout(o.timeout).
		SetMessageChannelDepth(1000)
	d.c = paho.NewClient(opts)
	if err := wait(d.c.Connect(), o.timeout); err != nil {
		return nil, fmt.Errorf("connecting %s: %w", id, err)
	}
	subs := map[string]paho.MessageHandler{}
	for _, s := range o.subscribes {
		subs[s] = nil
	}
	if len(subs) > 0 || o.onDesired != nil || o.onMethod != nil {
		subs[twinResPrefix+"#"] = d.onTwinReply
	}
	if o.onDesired != nil {
		subs["$iothub/twin/PATCH/properties/desired/#"] = func(_ paho.Client, m paho.Message) { o.onDesired(m.Payload(), time.Now()) }
	}
	if o.onMethod != nil {
		subs["$iothub/methods/POST/#"] = func(_ paho.Client, m paho.Message) {
			method, rid := parseMethodTopic(m.Topic())
			o.onMethod(d, method, rid, m.Payload())
		}
	}
	for topic, h := range subs {
		if h == nil {
			h = d.onTwinReply
		}
		if err := wait(d.c.Subscribe(topic, 0, h), o.timeout); err != nil {
			d.close()
			return nil, fmt.Errorf("%s subscribing to %s: %w", id, topic, err)
		}
	}
	return d, nil
}

// deviceUsername is the MQTT user name IoT Hub expects of device id.
func deviceUsername(host, id string) string {
	return host + "/" + id + "/?api-version=" + apiVersion + "&DeviceClientType=twinhub-bench"
}

// deviceToken is an hour-long SAS token of device id, signed with its key.
func deviceToken(host, id, key string) (string, error) {
	return sas.NewToken(host+"/devices/"+id, "", key, time.Now().Add(time.Hour))
}

func wait(t paho.Token, timeout time.Duration) error {
	if !t.WaitTimeout(timeout) {
		return errors.New("timed out")
	}
	return t.Error()
}

func (d *device) close() { d.c.Disconnect(0) }

// onTwinReply routes $iothub/twin/res/<status>/?$rid=<rid>... to the
// request waiting for it.
func (d *device) onTwinReply(_ paho.Client, m paho.Message) {
	rest, ok := strings.CutPrefix(m.Topic(), twinResPrefix)
	if !ok {
		return
	}
	statusStr, query, _ := strings.Cut(rest, "/?")
	status, _ := strconv.Atoi(statusStr)
	rid := ""
	for _, kv := range strings.Split(query, "&") {
		if v, ok := strings.CutPrefix(kv, "$rid="); ok {
			rid = v
		}
	}
	d.mu.Lock()
	ch := d.pending[rid]
	delete(d.pending, rid)
	d.mu.Unlock()
	if ch != nil {
		ch <- twinReply{status: status, body: m.Payload()}
	}
}

// twinRequest publishes a twin request and waits for its reply.
func (d *device) twinRequest(topicFmt string, body []byte, timeout time.Duration) (twinReply, error) {
	rid := strconv.FormatUint(d.rid.Add(1), 10)
	ch := make(chan twinReply, 1)
	d.mu.Lock()
	d.pending[rid] = ch
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.pending, rid)
		d.mu.Unlock()
	}()
	if err := wait(d.c.Publish(fmt.Sprintf(topicFmt, rid), 0, false, body), timeout); err != nil {
		return twinReply{}, err
	}
	select {
	case r := <-ch:
		if r.status >= 300 {
			return r, fmt.Errorf("twin request: status %d: %s", r.status, truncate(string(r.body), 200))
		}
		return r, nil
	case <-time.After(timeout):
		return twinReply{}, errors.New("twin request: no reply in time")
	}
}

func (d *device) getTwin(timeout time.Duration) error {
	_, err := d.twinRequest("$iothub/twin/GET/?$rid=%s", nil, timeout)
	return err
}

func (d *device) patchReported(body []byte, timeout time.Duration) error {
	_, err := d.twinRequest("$iothub/twin/PATCH/properties/reported/?$rid=%s", body, timeout)
	return err
}

// sendTelemetry publishes one QoS 1 message and waits for the PUBACK.
func (d *device) sendTelemetry(topic string, body []byte, timeout time.Duration) error {
	return wait(d.c.Publish(topic, 1, false, body), timeout)
}

func (d *device) answerMethod(rid string, status int, body []byte) {
	d.c.Publish(fmt.Sprintf("$iothub/methods/res/%d/?$rid=%s", status, rid), 0, false, body)
}

// parseMethodTopic splits $iothub/methods/POST/<method>/?$rid=<rid>.
func parseMethodTopic(topic string) (method, rid string) {
	rest := strings.TrimPrefix(topic, "$iothub/methods/POST/")
	method, query, _ := strings.Cut(rest, "/?")
	for _, kv := range strings.Split(query, "&") {
		if v, ok := strings.CutPrefix(kv, "$rid="); ok {
			rid = v
		}
	}
	return method, rid
}

// connectAll connects n devices, conc at a time, calling progress after
// each; it returns the devices that connected (in order of ids, nil
// where one failed), the connect latencies and the errors.
func connectAll(ids []string, conc int, o func(i int) deviceOptions, rec *recorder) []*device {
	devs := make([]*device, len(ids))
	forEach(len(ids), conc, func(i int) {
		start := time.Now()
		d, err := connectDevice(ids[i], o(i))
		rec.done(start, err)
		devs[i] = d
	})
	return devs
}

// forEach calls fn(i) for every i from 0 to n-1, conc calls at a time.
func forEach(n, conc int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(conc, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		})
	}
	wg.Wait()
}

func closeAll(devs []*device) {
	forEach(len(devs), 64, func(i int) {
		if devs[i] != nil {
			devs[i].close()
		}
	})
}
