package main

import (
	"testing"

	"github.com/dlock-go/dlock/dlocktest"
	dlockrt "github.com/dlock-go/dlock/runtime"
)

func TestDemo_oneQueryForAStampede(t *testing.T) {
	dlockrt.SetDefault(dlocktest.NewClient(t))
	t.Cleanup(func() { dlockrt.SetDefault(nil) })
	ok, queries, err := demo(100)
	if err != nil || ok != 100 || queries != 1 {
		t.Fatalf("demo = %d answered, %d queries, %v; want 100, 1, nil", ok, queries, err)
	}
}
