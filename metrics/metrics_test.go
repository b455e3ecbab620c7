package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestReadyz: /readyz is 503 with the failed checks by name while any
// fails, and 200 once all hold; a nil *Metrics records nothing.
func TestReadyz(t *testing.T) {
	open := false
	m := New(nil)
	h := m.Handler([]Check{
		{Name: "store", Run: func(context.Context) error { return nil }},
		{Name: "listeners", Run: func(context.Context) error {
			if !open {
				return errors.New("not open")
			}
			return nil
		}},
	})
	get := func() (int, map[string]any) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		var body map[string]any
		json.Unmarshal(rec.Body.Bytes(), &body)
		return rec.Code, body
	}
	code, body := get()
	failed, _ := body["failed"].(map[string]any)
	if code != http.StatusServiceUnavailable || body["ready"] != false || failed["listeners"] != "not open" || failed["store"] != nil {
		t.Errorf("/readyz while a check fails: %d %v", code, body)
	}
	open = true
	if code, body := get(); code != http.StatusOK || body["ready"] != true {
		t.Errorf("/readyz: %d %v", code, body)
	}
	var none *Metrics
	none.ObserveHTTP("GET /x", 200, 0) // records nothing, does not panic
}
