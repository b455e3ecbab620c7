package hub

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/index"
	"github.com/twinhub/twinhub/query"
)

// Query runs a query in the IoT Hub language over the twins and returns
// the page that continuation names (the first when empty). The index is
// first brought up to the store's last revision, so the query sees every
// write acknowledged before it arrived.
//
// Results come in key order (device id, then module id). A page of a query
// that returns twins or projections of them ends with a token that carries
// the last key returned (and, under TOP, how many were returned so far), so
// the next page starts after that key: twins that change between pages are
// neither skipped nor repeated, unless a change makes them match or stop
// matching. Grouped queries (aggregates, GROUP BY) are computed again for
// every page, and their tokens carry the offset of the next group.
func (h *Hub) Query(ctx context.Context, src string, pageSize int, continuation string) (*twinhub.QueryPage, error) {
	start := time.Now()
	page, _, err := h.query(ctx, src, pageSize, continuation, false)
	h.countQuery(start, err)
	return page, err
}

// QueryJSON is Query for the REST API, which only writes the page out: its
// items come as a JSON array, the bytes json.Marshal makes of Query's
// Items (which it leaves nil), and whole twins are written straight from
// the index (index.QueryJSON) instead of built as maps and encoded.
func (h *Hub) QueryJSON(ctx context.Context, src string, pageSize int, continuation string) (*twinhub.QueryPage, []byte, error) {
	start := time.Now()
	page, items, err := h.query(ctx, src, pageSize, continuation, true)
	h.countQuery(start, err)
	return page, items, err
}

func (h *Hub) countQuery(start time.Time, err error) {
	if h.metrics != nil {
		h.metrics.Query(time.Since(start), resultOf(err))
	}
}

// query is Query (or, asJSON, QueryJSON), uncounted: for the hub's own
// queries too (queryEach).
func (h *Hub) query(ctx context.Context, src string, pageSize int, continuation string, asJSON bool) (*twinhub.QueryPage, []byte, error) {
	q, err := query.Parse(src)
	if err != nil {
		var qe *query.Error
		if errors.As(err, &qe) {
			return nil, nil, twinhub.ErrInvalid("query: %s", qe.Error())
		}
		return nil, nil, twinhub.ErrInvalid("query: %v", err)
	}
	if pageSize < 1 {
		pageSize = 100
	}
	tok, err := h.readToken(q, continuation)
	if err != nil {
		return nil, nil, err
	}
	if q.Collection == query.DevicesJobs {
		// Device job records are few next to twins and live in the job
		// store, not the index: a page is an offset into them.
		rows, next, err := h.queryDeviceJobs(ctx, q, pageSize, tok.Count)
		if err != nil {
			return nil, nil, err
		}
		page := &twinhub.QueryPage{ItemType: q.ItemType(), Items: rows}
		if next > 0 {
			page.Continuation = h.writeToken(q, index.Cursor{Count: next})
		}
		if !asJSON {
			return page, nil, nil
		}
		items, err := json.Marshal(rows)
		page.Items = nil
		return page, items, err
	}
	if err := h.catchUp(ctx); err != nil {
		return nil, nil, err
	}
	var page *twinhub.QueryPage
	var items []byte
	var next *index.Cursor
	if asJSON {
		page, items, next, err = h.index.QueryJSON(q, pageSize, tok)
		if err != nil {
			return nil, nil, err
		}
	} else {
		page, next = h.index.Query(q, pageSize, tok)
	}
	if next != nil {
		page.Continuation = h.writeToken(q, *next)
	}
	return page, items, nil
}

// queryEach runs a query to its last page, in pages of 1,000, calling fn
// with each item: for the hub's own queries (a job's devices, a
// configuration's targets and metrics).
func (h *Hub) queryEach(ctx context.Context, src string, fn func(item map[string]any)) error {
	cont := ""
	for {
		page, _, err := h.query(ctx, src, 1000, cont, false)
		if err != nil {
			return err
		}
		for _, item := range page.Items {
			fn(item)
		}
		if cont = page.Continuation; cont == "" {
			return nil
		}
	}
}

// A token is base64url of: version, kind ('k' keyset or 'g' groups), the
// first 8 bytes of SHA-256 of the query text, count as a uvarint, the key,
// and 16 bytes of HMAC-SHA256 over all that with a key derived from the
// hub's host and policies, which every node of a hub shares. A token thus
// works on any node, only for the query it came from, and cannot be made
// up or altered by a client.
const (
	tokenVersion = 1
	tokenMAC     = 16
)

func (h *Hub) tokenKey() []byte { return h.derivedKey("query continuation") }

// derivedKey is a key for what the hub signs for a purpose (query
// continuations, file upload correlation ids): derived from the hub's
// host and policies, which every node of a hub shares, so that what one
// node signs another checks.
func (h *Hub) derivedKey(purpose string) []byte {
	s := sha256.New()
	s.Write([]byte("twinhub " + purpose + "\x00" + h.host))
	for _, p := range h.policies {
		s.Write([]byte("\x00" + p.Name + "\x00" + p.PrimaryKey))
	}
	return s.Sum(nil)
}

func tokenKind(q *query.Query) byte {
	if q.Grouped() {
		return 'g'
	}
	return 'k'
}

func (h *Hub) writeToken(q *query.Query, t index.Cursor) string {
	fp := sha256.Sum256([]byte(q.Source))
	b := append([]byte{tokenVersion, tokenKind(q)}, fp[:8]...)
	b = binary.AppendUvarint(b, uint64(t.Count))
	b = append(b, t.After...)
	mac := hmac.New(sha256.New, h.tokenKey())
	mac.Write(b)
	b = append(b, mac.Sum(nil)[:tokenMAC]...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (h *Hub) readToken(q *query.Query, s string) (index.Cursor, error) {
	if s == "" {
		return index.Cursor{}, nil
	}
	bad := twinhub.ErrInvalid("x-ms-continuation is not a token this hub issued for this query")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 2+8+1+tokenMAC {
		return index.Cursor{}, bad
	}
	body, sum := b[:len(b)-tokenMAC], b[len(b)-tokenMAC:]
	mac := hmac.New(sha256.New, h.tokenKey())
	mac.Write(body)
	fp := sha256.Sum256([]byte(q.Source))
	if !hmac.Equal(sum, mac.Sum(nil)[:tokenMAC]) || body[0] != tokenVersion || body[1] != tokenKind(q) || string(body[2:10]) != string(fp[:8]) {
		return index.Cursor{}, bad
	}
	count, n := binary.Uvarint(body[10:])
	if n <= 0 || count > 1<<31 {
		return index.Cursor{}, bad
	}
	return index.Cursor{Count: int(count), After: string(body[10+n:])}, nil
}

// Ready says whether the hub can serve: its store answers and the query
// index has caught up with it (within ctx's deadline), for /readyz.
func (h *Hub) Ready(ctx context.Context) error {
	if _, err := h.store.LastRevision(ctx); err != nil {
		return fmt.Errorf("the store does not answer: %w", err)
	}
	if err := h.catchUp(ctx); err != nil {
		return fmt.Errorf("the query index has not caught up with the store: %w", err)
	}
	return nil
}

// IndexLag is how many store revisions the query index has yet to see.
func (h *Hub) IndexLag(ctx context.Context) (uint64, error) {
	rev, err := h.store.LastRevision(ctx)
	if err != nil {
		return 0, err
	}
	return rev - min(rev, h.index.Revision()), nil
}

// catchUp brings the index up to the store's last revision, so that what
// the caller reads next includes every write acknowledged before (for the
// sole writer of its store, the last of its own writes).
func (h *Hub) catchUp(ctx context.Context) error {
	last := h.store.LastRevision
	if h.marked != nil {
		last = h.marked.lastWritten
	}
	rev, err := last(ctx)
	if err != nil {
		return err
	}
	return h.index.WaitFor(ctx, rev)
}
