package query

import (
	"iter"
	"slices"

	"github.com/twinhub/twinhub/query/querytest"
)

// The fixed fleets of the conformance cases (see package querytest).
var (
	deviceFleet = querytest.Devices()
	moduleFleet = querytest.Modules()
	jobFleet    = querytest.Jobs()
)

func seq(docs []map[string]any) iter.Seq[map[string]any] { return slices.Values(docs) }

// docID names a result document in test expectations.
func docID(d map[string]any) string { return querytest.DocID(d) }
