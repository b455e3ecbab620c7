package twinhub

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// TestSentinels: every error sentinel of the package (a package-level
// Err... variable) has its IoT Hub error in sentinels, a client error and
// not a 500, also when wrapped; and nothing else becomes one. The
// sentinels are found in the source, so that a new one without its entry
// fails here.
func TestSentinels(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var found []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			for _, spec := range g.Specs {
				for _, n := range spec.(*ast.ValueSpec).Names {
					if strings.HasPrefix(n.Name, "Err") {
						found = append(found, n.Name)
					}
				}
			}
		}
	}
	if len(found) != len(sentinels) {
		t.Errorf("the package declares %d sentinels %v; sentinels maps %d", len(found), found, len(sentinels))
	}
	for _, s := range sentinels {
		for _, err := range []error{s.err, fmt.Errorf("storing dev1: %w", s.err)} {
			e := AsError(err)
			if e.Status >= 500 || e.Status < 400 || e.Status != s.status || e.Code != s.code {
				t.Errorf("%v: %d %s, want the client error %d %s", err, e.Status, e.Code, s.status, s.code)
			}
			if _, ok := errorNumbers[e.Code]; !ok {
				t.Errorf("%v: code %s has no IoT Hub number", err, e.Code)
			}
		}
	}
	if e := AsError(fmt.Errorf("nats: timeout")); e.Status != http.StatusInternalServerError || strings.Contains(e.Message, "nats") {
		t.Errorf("an internal error: %d %q, want a 500 that says nothing of it", e.Status, e.Message)
	}
	if e := ErrInvalid("x"); AsError(fmt.Errorf("wrapped: %w", e)) != e {
		t.Error("a wrapped *Error is not answered as itself")
	}
}
