package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twinhub/twinhub/certs"
	"github.com/twinhub/twinhub/datadir"
	"github.com/twinhub/twinhub/sas"
)

// apiVersion is the REST API version the CLI speaks, as the SDKs do.
const apiVersion = "2021-04-12"

// client calls a hub's REST API with the owner policy, finding the hub
// through its data folder: the host name and key in hub.json, the address
// in serve.json and the CA in ca.pem.
type client struct {
	http   *http.Client
	host   string
	base   string
	policy sas.Policy
}

func newClient(g *globals) (*client, error) {
	dir := datadir.Dir{Path: g.data}
	hub, err := dir.LoadHub()
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no hub in %s: start one with `twinhub serve --data %s`, or pass --data", g.data, g.data)
	} else if err != nil {
		return nil, err
	}
	srv, err := dir.LoadServe()
	if err != nil {
		return nil, fmt.Errorf("the hub in %s has not been started (%w)", g.data, err)
	}
	owner, err := hub.Policy("iothubowner")
	if err != nil {
		return nil, err
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if pem, err := os.ReadFile(dir.File(certs.CAFile)); err == nil {
		roots.AppendCertsFromPEM(pem)
	}
	host, port, err := net.SplitHostPort(srv.HTTPSAddr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	dialAddr := net.JoinHostPort(host, port)
	transport := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: hub.HostName, MinVersion: tls.VersionTLS12},
		// Export and import keep up to 64 requests in flight: their
		// connections stay open rather than each request's TLS handshake.
		MaxIdleConnsPerHost: 64,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, dialAddr)
		},
	}
	return &client{
		http:   &http.Client{Transport: transport, Timeout: 60 * time.Second},
		host:   hub.HostName,
		base:   "https://" + net.JoinHostPort(hub.HostName, port),
		policy: owner,
	}, nil
}

// call sends a request and decodes a JSON reply into out (when not nil).
// An error reply becomes one line: the IoT Hub error code and message.
func (c *client) call(method, path string, header map[string]string, in, out any) (http.Header, error) {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(data)
	}
	u := c.base + path
	if strings.Contains(path, "?") {
		u += "&api-version=" + apiVersion
	} else {
		u += "?api-version=" + apiVersion
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return nil, err
	}
	token, err := sas.NewToken(c.host, c.policy.Name, c.policy.PrimaryKey, time.Now().Add(time.Hour))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", token)
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		var e struct{ Message string }
		json.Unmarshal(data, &e)
		msg := strings.TrimPrefix(e.Message, "ErrorCode:")
		if code, text, ok := strings.Cut(msg, ";"); ok {
			msg = code + ": " + text
		}
		if msg == "" {
			msg = strings.TrimSpace(string(data))
		}
		return nil, &replyError{status: resp.StatusCode, body: data, msg: fmt.Sprintf("%s (HTTP %d)", msg, resp.StatusCode)}
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return nil, fmt.Errorf("reading the reply: %w", err)
		}
	}
	return resp.Header, nil
}

// pages reads a paged answer to its last page (twin queries, the jobs
// list): pageSize items a request asked for with x-ms-max-item-count,
// the next page with the x-ms-continuation the last one gave.
func pages[T any](c *client, method, path string, body any, pageSize int) ([]T, error) {
	all := []T{}
	continuation := ""
	for {
		h := map[string]string{"x-ms-max-item-count": strconv.Itoa(pageSize)}
		if continuation != "" {
			h["x-ms-continuation"] = continuation
		}
		var page []T
		header, err := c.call(method, path, h, body, &page)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if continuation = header.Get("x-ms-continuation"); continuation == "" {
			return all, nil
		}
	}
}

// replyError is an error reply of the hub, with its body for a caller
// that reads more than the message (bulk registry replies list each
// failed entry).
type replyError struct {
	status int
	body   []byte
	msg    string
}

func (e *replyError) Error() string { return e.msg }

// escape makes an id safe in a URL path; ids may hold # ? % and more.
func escape(id string) string { return url.PathEscape(id) }
