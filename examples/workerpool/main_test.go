package main

import (
	"testing"

	"github.com/dlock-go/dlock/dlocktest"
	dlockrt "github.com/dlock-go/dlock/runtime"
)

func TestWork_neverMoreThanThreeAtOnce(t *testing.T) {
	dlockrt.SetDefault(dlocktest.NewClient(t))
	t.Cleanup(func() { dlockrt.SetDefault(nil) })
	if n := work(t.Context(), 20, 30); n != 30 {
		t.Fatalf("work = %d done; want 30", n)
	}
	if p := peak.Load(); p != 3 {
		t.Fatalf("peak concurrency = %d; want 3 (the limit, reached)", p)
	}
}
