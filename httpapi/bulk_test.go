package httpapi

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestBulkOrderWithinADevice: the entries of a bulk request run several
// devices at once, but a device's own entries in their order: a module
// after its device is created, a second creation of an id fails, and the
// errors are listed in the request's order.
func TestBulkOrderWithinADevice(t *testing.T) {
	ta := newTestAPI(t)
	var entries []string
	for i := range 40 {
		id := fmt.Sprintf("b%02d", i)
		entries = append(entries, fmt.Sprintf(`{"id":%q,"importMode":"create"}`, id),
			fmt.Sprintf(`{"id":%q,"moduleId":"m1","importMode":"create"}`, id),
			fmt.Sprintf(`{"id":%q,"moduleId":"m2","importMode":"create"}`, id))
	}
	entries = entries[:99]                                          // 33 devices with two modules each
	entries = append(entries, `{"id":"b07","importMode":"create"}`) // created above: fails
	rec := ta.do("POST", "/devices"+v, ta.owner, "["+strings.Join(entries, ",")+"]")
	if rec.Code != 400 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var res bulkResult
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) != 1 || res.Errors[0].DeviceID != "b07" || res.Errors[0].ModuleID != "" {
		t.Fatalf("errors %+v, want b07's second creation alone", res.Errors)
	}
	for i := range 33 {
		id := fmt.Sprintf("b%02d", i)
		for _, path := range []string{"/devices/" + id, "/devices/" + id + "/modules/m1", "/devices/" + id + "/modules/m2"} {
			if rec := ta.do("GET", path+v, ta.owner, ""); rec.Code != 200 {
				t.Errorf("GET %s: %d %s", path, rec.Code, rec.Body)
			}
		}
	}
}
