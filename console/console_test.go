package console

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWrap(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot) // marks what reached the API
	})
	h := Wrap(api)
	for _, c := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/console/", http.StatusOK, `src="console.js"`},
		{"HEAD", "/console/", http.StatusOK, ""},
		{"GET", "/console/console.js", http.StatusOK, "authorization()"},
		{"GET", "/console/console.css", http.StatusOK, "font-family"},
		{"GET", "/console", http.StatusMovedPermanently, ""},
		{"GET", "/console/missing.js", http.StatusNotFound, ""},
		{"POST", "/console/", http.StatusMethodNotAllowed, ""},
		{"GET", "/consoles", http.StatusTeapot, ""},
		{"GET", "/devices/console", http.StatusTeapot, ""},
		{"PUT", "/devices/x", http.StatusTeapot, ""},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		if rec.Code != c.status {
			t.Errorf("%s %s: status %d, want %d", c.method, c.path, rec.Code, c.status)
		}
		if !strings.Contains(rec.Body.String(), c.body) {
			t.Errorf("%s %s: body lacks %q", c.method, c.path, c.body)
		}
		if rec.Code == http.StatusTeapot {
			if rec.Header().Get("Content-Security-Policy") != "" {
				t.Errorf("%s %s: the API's response got the console's headers", c.method, c.path)
			}
			continue
		}
		for k, v := range securityHeaders {
			if k == "Cache-Control" && rec.Code == http.StatusNotFound {
				continue // the file server's error drops it; nothing is cached
			}
			if got := rec.Header().Get(k); got != v {
				t.Errorf("%s %s: %s = %q, want %q", c.method, c.path, k, got, v)
			}
		}
	}
}

// TestNoInlineScript: the page loads its script and style from files, so
// the policy can forbid inline ones (which an injected string would need).
func TestNoInlineScript(t *testing.T) {
	page, err := fs.ReadFile(assets, "index.html")
	if err != nil {
		t.Fatal(err)
	}
	s := string(page)
	for _, bad := range []string{"<script>", " onclick=", " onload=", "<style>", " style="} {
		if strings.Contains(s, bad) {
			t.Errorf("index.html has %q, which the Content-Security-Policy refuses", bad)
		}
	}
}
