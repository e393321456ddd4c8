package main

import (
	"os"
	"testing"

	"github.com/dlock-go/dlock/internal/redistest"
)

// The quickstart re-executes its binary as workers; under test, that is
// this test binary, which then runs as a worker.
func TestMain(m *testing.M) {
	if os.Getenv("QUICKSTART_WORKER") != "" {
		if err := worker(); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// parent checks the outcome itself: one execution per day, one result per
// day shared by all 20 callers, the once-only job run by one process.
func TestQuickstart_embedded(t *testing.T) {
	t.Setenv("REDIS_URL", "")
	if err := parent(); err != nil {
		t.Fatal(err)
	}
}

func TestQuickstart_realRedis(t *testing.T) {
	srv := redistest.StartServer(t)
	t.Setenv("REDIS_URL", "redis://"+srv.Addr())
	if err := parent(); err != nil {
		t.Fatal(err)
	}
}
