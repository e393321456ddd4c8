package main

//go:generate go run github.com/dlock-go/dlock/cmd/dlockgen

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
)

// Report is what buildReport computes.
type Report struct {
	Day     string
	Visits  int64
	BuiltBy string
}

// rdb and prefix are set by the worker; buildReport counts its executions
// in Redis so the parent can show them.
var (
	rdb    *redis.Client
	prefix string
)

// buildReport is the expensive job: BuildReport runs it once per day
// across every process, and every caller gets the same Report.
//
//dlock:fanout key="report:{day}" ttl=5s
func buildReport(ctx context.Context, day string) (Report, error) {
	k := prefix + ":executions:" + day
	rdb.Incr(ctx, k)
	rdb.Expire(ctx, k, 10*time.Minute) // leave nothing lasting in your Redis
	time.Sleep(300 * time.Millisecond) // a slow query
	return Report{Day: day, Visits: int64(len(day)) * 1000, BuiltBy: fmt.Sprintf("pid %d", os.Getpid())}, nil
}

// cleanup must never run twice at once: Cleanup runs it only if no other
// process is running it, and otherwise returns dlockrt.ErrNotAcquired.
//
//dlock:once key="nightly-cleanup" ttl=5s
func cleanup(ctx context.Context) error {
	time.Sleep(500 * time.Millisecond) // the work
	return nil
}
