package main

import (
	"errors"
	"testing"

	"github.com/dlock-go/dlock/dlocktest"
	dlockrt "github.com/dlock-go/dlock/runtime"
)

func TestTick_oneReplicaPerTickAndFencedStore(t *testing.T) {
	c := dlocktest.NewClient(t)
	replicas := []*dlockrt.Client{c, c, c} // one server; each wrapper contends alike
	store := &Store{}
	for range 3 {
		if ran := tick(t.Context(), store, replicas); len(ran) != 1 {
			t.Fatalf("tick ran in %v; want exactly one replica", ran)
		}
	}
	if len(store.Writes) != 3 {
		t.Fatalf("store writes = %v; want 3", store.Writes)
	}
	if err := store.Write(1, "stale"); !errors.Is(err, ErrStale) {
		t.Fatalf("stale write = %v; want ErrStale", err)
	}
}
