package bench

import (
	"math/rand/v2"
	"time"
)

// baselineTwin is what the bare HTTPS server answers: a device twin of the
// size twin-read reads (about 700 bytes), so that both move the same bytes.
const baselineTwin = `{"deviceId":"read-0","etag":"AAAAAAAAAAE=","deviceEtag":"MTIzNDU2Nzg=","status":"enabled","statusUpdateTime":"0001-01-01T00:00:00Z","connectionState":"Disconnected","lastActivityTime":"0001-01-01T00:00:00Z","cloudToDeviceMessageCount":0,"authenticationType":"sas","x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null},"modelId":"","version":2,"tags":{"n":0,"group":0},"properties":{"desired":{"$metadata":{"$lastUpdated":"2026-11-25T22:30:00.0000000Z"},"$version":1},"reported":{"$metadata":{"$lastUpdated":"2026-11-25T22:30:00.0000000Z"},"$version":1}},"capabilities":{"iotEdge":false}}`

// httpsBaseline measures GETs answered by a bare Go net/http server over
// TLS (HTTP/1.1, keep-alive, the same kind of certificate as the hub) with
// a fixed twin-sized body and no authentication, through the same REST
// client code and concurrency as twin-read: the ceiling of a REST read on
// this machine, the server running where the hub runs (startBare).
func (e *env) httpsBaseline() error {
	srv, err := e.startBare("https")
	if err != nil {
		return err
	}
	defer srv.stop()
	t := *e.t
	t.Host, t.HTTPSAddr, t.RootCAs = "localhost", srv.addr, srv.roots
	svc := newService(&t, e.cfg.Clients)
	defer svc.close()
	ids := e.ids("read", e.cfg.Clients)
	rec := newRecorder()
	res := e.measureBaseline(srv.usage, "the bare server's process", func() *Result {
		return e.measure("https-get", "reads", e.cfg.Clients, rec, func() {
			e.forDuration(e.cfg.Clients, e.cfg.Duration, func(int) {
				start := time.Now()
				rec.done(start, svc.getTwin(e.ctx, ids[rand.IntN(len(ids))]))
			})
		})
	})
	res.note("bare Go net/http server over TLS answering every GET with a fixed %d-byte twin, no authentication, %s; same REST client and concurrency as twin-read/rest", len(baselineTwin), srv.where)
	return nil
}
