// Command workerpool runs 20 workers that all call a rate-limited partner
// API, which allows 3 calls at a time across the whole fleet:
// //dlock:semaphore limit=3 makes every worker, in every process, wait its
// turn (first come, first served) instead of hammering the API.
//
//	go run ./examples/workerpool
package main

//go:generate go run github.com/dlock-go/dlock/cmd/dlockgen

import (
	"context"
	"fmt"
	"log"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/dlocktest"
	dlockrt "github.com/dlock-go/dlock/runtime"
)

var inFlight, peak atomic.Int32

// callPartner is the rate-limited call.
//
//dlock:semaphore limit=3 key="partner-api" ttl=10s wait=30s
func callPartner(ctx context.Context, job int) (string, error) {
	n := inFlight.Add(1)
	defer inFlight.Add(-1)
	for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
	}
	time.Sleep(50 * time.Millisecond) // the partner's latency
	return fmt.Sprintf("job %d done", job), nil
}

// work runs jobs on workers goroutines; it returns how many succeeded.
func work(ctx context.Context, workers, jobs int) int {
	var done atomic.Int32
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for j := range next {
				if _, err := CallPartner(ctx, j); err != nil {
					log.Printf("job %d: %v", j, err)
					continue
				}
				done.Add(1)
			}
		})
	}
	for j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
	return int(done.Load())
}

func main() {
	srv, err := dlocktest.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	fmt.Printf("Using an embedded in-process Redis-compatible server at %s.\n", srv.Addr())
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	c, err := dlockrt.New(rdb, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	dlockrt.SetDefault(c)
	start := time.Now()
	n := work(context.Background(), 20, 60)
	fmt.Printf("60 jobs on 20 workers: %d done in %v, at most %d partner calls at once (limit 3).\n",
		n, time.Since(start).Round(time.Millisecond), peak.Load())
}
