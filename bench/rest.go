package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/twinhub/twinhub/sas"
)

const apiVersion = "2021-04-12"

// service is the back-end side: HTTPS REST with a service SAS token, over
// a pool of keep-alive connections (one per concurrent caller at most).
type service struct {
	t    *Target
	http *http.Client
	base string

	mu       sync.Mutex
	token    string
	tokenExp time.Time
}

func newService(t *Target, conns int) *service {
	tr := &http.Transport{
		TLSClientConfig:     t.tlsConfig(0),
		MaxIdleConns:        conns + 16,
		MaxIdleConnsPerHost: conns + 16,
		IdleConnTimeout:     time.Minute,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, t.HTTPSAddr)
		},
	}
	_, port, _ := net.SplitHostPort(t.HTTPSAddr)
	return &service{t: t, http: &http.Client{Transport: tr, Timeout: time.Minute}, base: "https://" + net.JoinHostPort(t.Host, port)}
}

func (s *service) close() { s.http.CloseIdleConnections() }

// sasToken is an hour-long owner token, renewed well before it expires.
func (s *service) sasToken() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Until(s.tokenExp) > 10*time.Minute {
		return s.token, nil
	}
	exp := time.Now().Add(time.Hour)
	tok, err := sas.NewToken(s.t.Host, s.t.PolicyName, s.t.PolicyKey, exp)
	if err != nil {
		return "", err
	}
	s.token, s.tokenExp = tok, exp
	return tok, nil
}

// httpError is a reply with a status of 300 or more.
type httpError struct {
	Status int
	Body   string
}

func (e *httpError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.Status, truncate(e.Body, 200))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// do sends a request and returns the reply's body and headers; statuses
// of 300 and more are *httpError.
func (s *service) do(ctx context.Context, method, path string, header map[string]string, body []byte) ([]byte, http.Header, error) {
	u := s.base + path
	if strings.Contains(path, "?") {
		u += "&api-version=" + apiVersion
	} else {
		u += "?api-version=" + apiVersion
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, nil, err
	}
	tok, err := s.sasToken()
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode >= 300 {
		return data, resp.Header, &httpError{Status: resp.StatusCode, Body: string(data)}
	}
	return data, resp.Header, nil
}

// bulkEntry is one identity of POST /devices.
type bulkEntry struct {
	ID             string         `json:"id"`
	ImportMode     string         `json:"importMode"`
	Status         string         `json:"status"`
	Authentication map[string]any `json:"authentication"`
	Tags           map[string]any `json:"tags,omitempty"`
}

// createDevices creates (or updates) devices with the given SAS key, 100
// a request, conc requests at once; tags(i) gives the tags of ids[i]
// (nil: none). progress is called with the number done so far.
func (s *service) createDevices(ctx context.Context, ids []string, key string, conc int, tags func(i int) map[string]any, progress func(int)) error {
	type batch struct{ from, to int }
	batches := make(chan batch)
	errs := make(chan error, conc)
	var done int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				entries := make([]bulkEntry, 0, b.to-b.from)
				for i := b.from; i < b.to; i++ {
					e := bulkEntry{
						ID: ids[i], ImportMode: "createOrUpdate", Status: "enabled",
						Authentication: map[string]any{"type": "sas", "symmetricKey": map[string]string{"primaryKey": key, "secondaryKey": key}},
					}
					if tags != nil {
						e.Tags = tags(i)
					}
					entries = append(entries, e)
				}
				body, _ := json.Marshal(entries)
				var err error
				for attempt := 0; attempt < 5; attempt++ {
					_, _, err = s.do(ctx, http.MethodPost, "/devices", nil, body)
					if he, ok := err.(*httpError); !ok || he.Status != http.StatusTooManyRequests {
						break
					}
					time.Sleep(time.Second)
				}
				if err != nil {
					select {
					case errs <- fmt.Errorf("creating devices %s..%s: %w", ids[b.from], ids[b.to-1], err):
					default:
					}
					continue
				}
				mu.Lock()
				done += b.to - b.from
				n := done
				mu.Unlock()
				if progress != nil {
					progress(n)
				}
			}
		}()
	}
	for i := 0; i < len(ids); i += 100 {
		select {
		case batches <- batch{i, min(i+100, len(ids))}:
		case err := <-errs:
			close(batches)
			wg.Wait()
			return err
		case <-ctx.Done():
			close(batches)
			wg.Wait()
			return ctx.Err()
		}
	}
	close(batches)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// deleteDevices removes devices, 100 a request; errors are ignored (it
// is cleanup).
func (s *service) deleteDevices(ctx context.Context, ids []string) {
	for i := 0; i < len(ids); i += 100 {
		var entries []map[string]string
		for _, id := range ids[i:min(i+100, len(ids))] {
			entries = append(entries, map[string]string{"id": id, "importMode": "delete"})
		}
		body, _ := json.Marshal(entries)
		s.do(ctx, http.MethodPost, "/devices", nil, body)
	}
}

func (s *service) getTwin(ctx context.Context, id string) error {
	_, _, err := s.do(ctx, http.MethodGet, "/twins/"+url.PathEscape(id), nil, nil)
	return err
}

func (s *service) patchTwin(ctx context.Context, id string, patch any) error {
	body, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	_, _, err = s.do(ctx, http.MethodPatch, "/twins/"+url.PathEscape(id), nil, body)
	return err
}

// query runs a query to its last page and returns the number of items.
func (s *service) query(ctx context.Context, q string, pageSize int) (int, error) {
	return s.queryPages(ctx, q, pageSize, nil)
}

// queryPages is query, calling page (if not nil) as each page arrives:
// an SDK's query.next() is one page.
func (s *service) queryPages(ctx context.Context, q string, pageSize int, page func()) (int, error) {
	body, _ := json.Marshal(map[string]string{"query": q})
	cont := ""
	n := 0
	for {
		h := map[string]string{"x-ms-max-item-count": fmt.Sprint(pageSize)}
		if cont != "" {
			h["x-ms-continuation"] = cont
		}
		data, hdr, err := s.do(ctx, http.MethodPost, "/devices/query", h, body)
		if err != nil {
			return n, err
		}
		var items []json.RawMessage
		if err := json.Unmarshal(data, &items); err != nil {
			return n, fmt.Errorf("query reply: %w", err)
		}
		n += len(items)
		if page != nil {
			page()
		}
		cont = hdr.Get("x-ms-continuation")
		if cont == "" {
			return n, nil
		}
	}
}

// invokeMethod calls a direct method and returns the device's status.
func (s *service) invokeMethod(ctx context.Context, id, method string, payload any, timeoutSec int) (int, error) {
	body, _ := json.Marshal(map[string]any{"methodName": method, "payload": payload, "responseTimeoutInSeconds": timeoutSec})
	data, _, err := s.do(ctx, http.MethodPost, "/twins/"+url.PathEscape(id)+"/methods", nil, body)
	if err != nil {
		return 0, err
	}
	var r struct {
		Status int `json:"status"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return 0, fmt.Errorf("method reply: %w", err)
	}
	return r.Status, nil
}

// methodsSupported asks whether the hub serves POST /twins/{id}/methods:
// an unknown device gives DeviceNotFound (or DeviceNotOnline) where the
// route exists, and the catch-all NotFound where it does not.
func (s *service) methodsSupported(ctx context.Context) (bool, error) {
	body, _ := json.Marshal(map[string]any{"methodName": "probe", "responseTimeoutInSeconds": 5})
	_, hdr, err := s.do(ctx, http.MethodPost, "/twins/bench-no-such-device/methods", nil, body)
	if err == nil {
		return true, nil
	}
	he, ok := err.(*httpError)
	if !ok {
		return false, err
	}
	if he.Status == http.StatusNotFound && hdr.Get("iothub-errorcode") == "NotFound" || he.Status == http.StatusMethodNotAllowed {
		return false, nil
	}
	return true, nil
}
