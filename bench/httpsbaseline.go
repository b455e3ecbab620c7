package bench

import (
	"crypto/tls"
	"errors"
	"math/rand/v2"
	"net/http"
	"time"
)

// baselineTwin is what the bare HTTPS server answers: a device twin of the
// size twin-read reads (about 700 bytes), so that both move the same bytes.
const baselineTwin = `{"deviceId":"read-0","etag":"AAAAAAAAAAE=","deviceEtag":"MTIzNDU2Nzg=","status":"enabled","statusUpdateTime":"0001-01-01T00:00:00Z","connectionState":"Disconnected","lastActivityTime":"0001-01-01T00:00:00Z","cloudToDeviceMessageCount":0,"authenticationType":"sas","x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null},"modelId":"","version":2,"tags":{"n":0,"group":0},"properties":{"desired":{"$metadata":{"$lastUpdated":"2026-11-25T22:30:00.0000000Z"},"$version":1},"reported":{"$metadata":{"$lastUpdated":"2026-11-25T22:30:00.0000000Z"},"$version":1}},"capabilities":{"iotEdge":false}}`

// httpsBaseline measures GETs answered by a bare Go net/http server over
// TLS (HTTP/1.1, keep-alive, the same kind of certificate as the hub) with
// a fixed twin-sized body and no authentication, through the same REST
// client code and concurrency as twin-read: the ceiling of a REST read on
// this machine, client and server in this process.
func (e *env) httpsBaseline() error {
	cert, roots, ln, closeServer, err := bareServer("https")
	if err != nil {
		return err
	}
	defer closeServer()
	body := []byte(baselineTwin)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.Write(body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	go func() {
		if err := srv.Serve(tls.NewListener(ln, conf)); !errors.Is(err, http.ErrServerClosed) {
			e.progressf("  https baseline server: %v", err)
		}
	}()
	defer srv.Close()
	t := *e.t
	t.Host, t.HTTPSAddr, t.RootCAs = "localhost", ln.Addr().String(), roots
	svc := newService(&t, e.cfg.Clients)
	defer svc.close()
	ids := e.ids("read", e.cfg.Clients)
	rec := newRecorder()
	usage := e.t.Usage
	e.t.Usage = nil
	res := e.measure("https-get", "reads", e.cfg.Clients, rec, func() {
		e.forDuration(e.cfg.Clients, e.cfg.Duration, func(int) {
			start := time.Now()
			rec.done(start, svc.getTwin(e.ctx, ids[rand.IntN(len(ids))]))
		})
	})
	e.t.Usage = usage
	res.Kind = "baseline"
	res.note("bare Go net/http server over TLS answering every GET with a fixed %d-byte twin, no authentication; same REST client and concurrency as twin-read/rest", len(body))
	return nil
}
