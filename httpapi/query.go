package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/twinhub/twinhub"
)

// Paging as IoT Hub does it: x-ms-max-item-count asks for a page size, and
// x-ms-continuation carries the opaque token of the next page both ways.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

type queryRequest struct {
	Query string `json:"query"`
}

func (a *API) query(r *http.Request) (int, any, error) {
	var req queryRequest
	if err := readJSON(r, &req); err != nil {
		return 0, nil, err
	}
	size, err := pageSize(r.Header.Get("x-ms-max-item-count"))
	if err != nil {
		return 0, nil, err
	}
	page, items, err := a.hub.QueryJSON(r.Context(), req.Query, size, r.Header.Get("x-ms-continuation"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, queryReply{page: page, items: items}, nil
}

// pageSize reads x-ms-max-item-count (defaultPageSize when empty; at
// most maxPageSize).
func pageSize(s string) (int, error) {
	if s == "" {
		return defaultPageSize, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, twinhub.ErrInvalid("x-ms-max-item-count must be a positive whole number")
	}
	return min(n, maxPageSize), nil
}

// queryReply is a page with the headers that describe it, and its items
// already encoded.
type queryReply struct {
	page  *twinhub.QueryPage
	items json.RawMessage
}

func (q queryReply) setHeaders(h http.Header) {
	h.Set("x-ms-item-type", q.page.ItemType)
	if q.page.Continuation != "" {
		h.Set("x-ms-continuation", q.page.Continuation)
	}
}

func (q queryReply) payload() any { return q.items }
