package twinhub

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/twinhub/twinhub"

// layers lists, for each package of the layered core, the packages of
// this module its non-test files may import (docs/architecture.md): the
// front ends call the hub and nothing below it, the hub sits on the
// index, the codec and the domain, the store knows nothing of the hub,
// and the domain imports only the JSON reader beneath it. Packages not listed (cmd, bench, the
// test helpers under internal, interop) may import what they need.
var layers = map[string][]string{
	".":                   {"internal/jsonread"},
	"internal/jsonread":   {},
	"internal/scratch":    {},
	"internal/recordjson": {".", "internal/jsonread"},
	"index":               {".", "internal/recordjson", "internal/scratch", "query"},
	"hub":                 {".", "index", "internal/recordjson", "internal/scratch", "query", "sas", "metrics"},
	"jetstream":           {".", "internal/recordjson"},
	"blobstore":           {"."},
	"httpapi":             {".", "hub", "sas", "throttle", "metrics"},
	"metrics":             {},
	"mqtt":                {".", "hub", "sas", "throttle", "metrics", "internal/accept", "internal/wsstream", "internal/deadline", "internal/ondemand"},
	"query":               {},
	"sas":                 {},
	"throttle":            {},
	"certs":               {},
	"console":             {},
	"datadir":             {"sas"},
	"amqp/wire":           {},
	"amqp":                {".", "hub", "sas", "throttle", "metrics", "amqp/wire", "internal/accept", "internal/wsstream", "internal/deadline", "internal/ondemand"},
	"internal/ondemand":   {},
}

// TestLayers: no package of the core imports one it may not, so that
// imports keep pointing one way.
func TestLayers(t *testing.T) {
	for dir, allowed := range layers {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Errorf("%s: no Go files (%v): is the table out of date?", dir, err)
			continue
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			file, err := parser.ParseFile(token.NewFileSet(), f, src, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range file.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				var rel string
				switch {
				case path == module:
					rel = "."
				case strings.HasPrefix(path, module+"/"):
					rel = strings.TrimPrefix(path, module+"/")
				default:
					continue
				}
				if !slices.Contains(allowed, rel) {
					t.Errorf("%s imports %s, which sits above it or beside it (allowed: %v)", f, path, allowed)
				}
			}
		}
	}
}
