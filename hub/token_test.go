package hub

import (
	"encoding/base64"
	"testing"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/index"
	"github.com/twinhub/twinhub/query"
)

func TestContinuationTokens(t *testing.T) {
	h := &Hub{host: "h", index: index.NewIndex()}
	q1, _ := query.Parse(`SELECT * FROM devices`)
	q2, _ := query.Parse(`SELECT * FROM devices WHERE status = 'enabled'`)
	g, _ := query.Parse(`SELECT COUNT() AS n FROM devices GROUP BY status`)
	tok := h.writeToken(q1, index.Cursor{After: "dev\x00x", Count: 12})
	if got, err := h.readToken(q1, tok); err != nil || got.After != "dev\x00x" || got.Count != 12 {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	raw, _ := decodeB64(tok)
	tampered := append([]byte(nil), raw...)
	tampered[12] ^= 1
	other := &Hub{host: "other", index: index.NewIndex()}
	for name, bad := range map[string]string{
		"garbage":       "garbage",
		"not base64":    "@@@",
		"truncated":     tok[:len(tok)-3],
		"tampered":      encodeB64(tampered),
		"another hub":   other.writeToken(q1, index.Cursor{After: "a"}),
		"another query": h.writeToken(q2, index.Cursor{After: "a"}),
		"grouped":       h.writeToken(g, index.Cursor{Count: 1}),
	} {
		if _, err := h.readToken(q1, bad); err == nil {
			t.Errorf("%s: accepted", name)
		} else if e, ok := err.(*twinhub.Error); !ok || e.Status != 400 {
			t.Errorf("%s: %v, want a 400", name, err)
		}
	}
}

func decodeB64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func encodeB64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
