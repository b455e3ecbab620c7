package hub_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/internal/hubtest"
)

// TestConsumerGroups: groups are created, listed ($Default first) and
// deleted, names compare in any case, Event Hubs' name rules hold, and
// $Default can be neither made nor deleted.
func TestConsumerGroups(t *testing.T) {
	h := hubtest.New(t, hubtest.WithMessaging())
	ctx := context.Background()
	status := func(err error) int { return twinhub.AsError(err).Status }

	if err := h.CheckConsumerGroup(ctx, "$default"); err != nil {
		t.Errorf("$Default: %v", err)
	}
	if err := h.CheckConsumerGroup(ctx, "analytics"); status(err) != http.StatusNotFound {
		t.Errorf("a group never made: %v", err)
	}
	g, err := h.CreateConsumerGroup(ctx, "Analytics")
	if err != nil || g.Name != "Analytics" || g.Created.IsZero() {
		t.Fatalf("create: %+v, %v", g, err)
	}
	if _, err := h.CreateConsumerGroup(ctx, "analytics"); status(err) != http.StatusConflict {
		t.Errorf("the same name in another case: %v", err)
	}
	if _, err := h.CreateConsumerGroup(ctx, "$Default"); status(err) != http.StatusBadRequest {
		t.Errorf("$Default: %v", err)
	}
	for _, bad := range []string{"", "-dash-first", "sp ace", "slash/", strings.Repeat("a", 51)} {
		if _, err := h.CreateConsumerGroup(ctx, bad); status(err) != http.StatusBadRequest {
			t.Errorf("name %q: %v", bad, err)
		}
	}
	if _, err := h.CreateConsumerGroup(ctx, "b.2_x-y"); err != nil {
		t.Errorf("a name of every allowed kind: %v", err)
	}
	if err := h.CheckConsumerGroup(ctx, "ANALYTICS"); err != nil {
		t.Errorf("check in another case: %v", err)
	}
	groups, err := h.ConsumerGroups(ctx)
	if err != nil || len(groups) != 3 || groups[0].Name != "$Default" || groups[1].Name != "Analytics" || groups[2].Name != "b.2_x-y" {
		t.Errorf("list: %+v, %v", groups, err)
	}
	if err := h.DeleteConsumerGroup(ctx, "$DEFAULT"); status(err) != http.StatusBadRequest {
		t.Errorf("delete $Default: %v", err)
	}
	if err := h.DeleteConsumerGroup(ctx, "analytics"); err != nil {
		t.Errorf("delete: %v", err)
	}
	if err := h.DeleteConsumerGroup(ctx, "analytics"); status(err) != http.StatusNotFound {
		t.Errorf("delete again: %v", err)
	}
	if err := h.CheckConsumerGroup(ctx, "Analytics"); status(err) != http.StatusNotFound {
		t.Errorf("a deleted group: %v", err)
	}
	if _, err := h.CreateConsumerGroup(ctx, "analytics"); err != nil {
		t.Errorf("a deleted group made again: %v", err)
	}

	// A hub without a store of groups has $Default only.
	bare := hubtest.New(t)
	if groups, err := bare.ConsumerGroups(ctx); err != nil || len(groups) != 1 {
		t.Errorf("list without a store: %+v, %v", groups, err)
	}
	if _, err := bare.CreateConsumerGroup(ctx, "x"); status(err) != http.StatusServiceUnavailable {
		t.Errorf("create without a store: %v", err)
	}
}
