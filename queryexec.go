package twinhub

import (
	"context"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"

	"github.com/twinhub/twinhub/query"
)

// QueryPage is one page of a query's results.
type QueryPage struct {
	Items []map[string]any
	// ItemType is what IoT Hub puts in x-ms-item-type: "Twin" for whole
	// twins, "DeviceJob" for jobs, "Raw" for projections and aggregates.
	ItemType string
	// Continuation asks for the next page; empty on the last one.
	Continuation string
}

// Query runs a query in the IoT Hub language over the twins and returns
// the page that continuation names (the first when empty). The index is
// first brought up to the store's last revision, so the query sees every
// write acknowledged before it arrived.
func (h *Hub) Query(ctx context.Context, src string, pageSize int, continuation string) (*QueryPage, error) {
	q, err := query.Parse(src)
	if err != nil {
		var qe *query.Error
		if errors.As(err, &qe) {
			return nil, ErrInvalid("query: %s", qe.Error())
		}
		return nil, ErrInvalid("query: %v", err)
	}
	offset, err := decodeContinuation(continuation)
	if err != nil {
		return nil, err
	}
	var keep func(Key) bool
	switch q.Collection {
	case query.Devices:
		keep = func(k Key) bool { return k.ModuleID == "" }
	case query.DevicesModules:
		keep = func(k Key) bool { return k.ModuleID != "" }
	default:
		keep = func(Key) bool { return false }
	}
	entries, err := h.scan(ctx, keep)
	if err != nil {
		return nil, err
	}
	items, err := q.Execute(func(yield func(map[string]any) bool) {
		for _, e := range entries {
			if !yield(e.doc) {
				return
			}
		}
	})
	if err != nil {
		return nil, ErrInvalid("query: %v", err)
	}
	page := &QueryPage{ItemType: q.ItemType(), Items: []map[string]any{}}
	if offset < len(items) {
		end := min(offset+pageSize, len(items))
		page.Items = items[offset:end]
		if end < len(items) {
			page.Continuation = encodeContinuation(end)
		}
	}
	return page, nil
}

// Continuation tokens are opaque to clients; today they carry the offset
// of the next result.
func encodeContinuation(offset int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("o:" + strconv.Itoa(offset)))
}

func decodeContinuation(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		if n, ok := strings.CutPrefix(string(raw), "o:"); ok {
			if off, err := strconv.Atoi(n); err == nil && off >= 0 {
				return off, nil
			}
		}
	}
	return 0, ErrInvalid("x-ms-continuation is not a token this hub issued")
}
