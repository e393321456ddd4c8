package main

import (
	"errors"
	"testing"

	"github.com/dlock-go/dlock/dlocktest"
	dlockrt "github.com/dlock-go/dlock/runtime"
)

func TestTick_oncePerDayAndFencedStore(t *testing.T) {
	c := dlocktest.NewClient(t)
	replicas := []*dlockrt.Client{c, c, c} // one server; each wrapper contends alike
	store := &Store{}
	for i, day := range []string{"2026-11-28", "2026-11-28", "2026-11-29"} {
		want := 1
		if i == 1 {
			want = 0 // a late tick of a day already done runs nothing
		}
		if ran := tick(t.Context(), store, replicas, day); len(ran) != want {
			t.Fatalf("tick %d (%s) ran in %v; want %d replica(s)", i, day, ran, want)
		}
	}
	if len(store.Writes) != 2 {
		t.Fatalf("store writes = %v; want one per day", store.Writes)
	}
	if err := store.Write(1, "2026-11-30", "stale"); !errors.Is(err, ErrStale) {
		t.Fatalf("stale write = %v; want ErrStale", err)
	}
}
