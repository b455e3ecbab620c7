// Package console is twinhub's web console: a page served by the hub at
// https://HOST/console that signs in with a hub connection string and
// works the hub through its own REST API (devices, modules, twins,
// queries, methods, C2D messages and their feedback, live telemetry).
//
// The console has no server side of its own. The page signs each request
// with a SAS token it makes in the browser (Web Crypto's HMAC-SHA256, the
// key imported as non-extractable), so every action is checked by the
// REST API against the signed-in policy's rights exactly as any other
// client's, and the connection string never leaves the tab: it is not sent,
// not put in a URL, and not stored. The assets are embedded in the binary,
// so `go run ./cmd/twinhub serve` serves the console with nothing else
// installed.
package console

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// Path is where the console is served.
const Path = "/console"

//go:embed assets
var embedded embed.FS

// assets is the folder the page's files are served from.
var assets, _ = fs.Sub(embedded, "assets")

// securityHeaders are sent with every console response. The policy allows
// the page's own scripts, styles and requests only (no inline script, no
// other origin), and no site may frame the console, so that a page
// elsewhere cannot overlay it to trick a signed-in user into a click.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	"X-Frame-Options":        "DENY",
	"X-Content-Type-Options": "nosniff",
	"Referrer-Policy":        "no-referrer",
	// The page is small and changes with the binary: always ask again.
	"Cache-Control":                "no-cache",
	"Cross-Origin-Opener-Policy":   "same-origin",
	"Cross-Origin-Resource-Policy": "same-origin",
}

// Handler serves the console's files below Path.
func Handler() http.Handler {
	files := http.StripPrefix(Path, http.FileServerFS(assets))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range securityHeaders {
			w.Header().Set(k, v)
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the console's files are only read", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.Path == Path {
			http.Redirect(w, r, Path+"/", http.StatusMovedPermanently)
			return
		}
		files.ServeHTTP(w, r)
	})
}

// Wrap serves the console below Path and hands every other request to
// next (the REST API), so that the console shares the HTTPS listener and
// host name with the API it calls.
func Wrap(next http.Handler) http.Handler {
	console := Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == Path || strings.HasPrefix(r.URL.Path, Path+"/") {
			console.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
