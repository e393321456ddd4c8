// Command scheduler runs a nightly job in three replicas at once, as a
// scheduler in each replica would: //dlock:once lets exactly one replica run
// it per tick, and the job passes its fencing token to the store, which
// rejects writes older than the newest it has seen. That is the defence
// when a replica stalls past its lease (a long GC pause, a frozen VM) and
// wakes up believing it still holds the lock.
//
//	go run ./examples/scheduler
package main

//go:generate go run github.com/dlock-go/dlock/cmd/dlockgen

import (
	"context"
	"errors"
	"fmt"
	"log"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/dlocktest"
	dlockrt "github.com/dlock-go/dlock/runtime"
)

// Store accepts a write only with a token newer than any it accepted: a
// fencing-aware resource.
type Store struct {
	mu     sync.Mutex
	last   int64
	Writes []string
}

// ErrStale is returned for a write with an old token.
var ErrStale = errors.New("store: stale fencing token")

// Write records v if token is the newest seen.
func (s *Store) Write(token int64, v string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token <= s.last {
		return ErrStale
	}
	s.last = token
	s.Writes = append(s.Writes, v)
	return nil
}

// Job is the nightly report of one replica.
type Job struct {
	Store   *Store
	Replica string
}

// Run is the job that must not run twice at once. Each replica wraps its
// Job with NewJobWithDlock and its own client.
//
//dlock:once key="nightly-report" ttl=10s
func (j *Job) Run(ctx context.Context) error {
	token, ok := dlockrt.TokenFromContext(ctx)
	if !ok {
		return errors.New("no fencing token")
	}
	time.Sleep(100 * time.Millisecond) // the work
	return j.Store.Write(token, "report by "+j.Replica)
}

// Runner is what the scheduler calls; both *Job and *JobWithDlock are one.
type Runner interface {
	Run(ctx context.Context) error
}

// tick makes every replica try the job at once; it returns who ran it.
func tick(ctx context.Context, store *Store, replicas []*dlockrt.Client) []string {
	var mu sync.Mutex
	var ran []string
	var wg sync.WaitGroup
	for i, c := range replicas {
		name := fmt.Sprintf("replica-%d", i+1)
		var job Runner = NewJobWithDlock(&Job{Store: store, Replica: name}, c)
		wg.Go(func() {
			err := job.Run(ctx)
			if err == nil {
				mu.Lock()
				ran = append(ran, name)
				mu.Unlock()
			} else if !errors.Is(err, dlockrt.ErrNotAcquired) {
				log.Printf("%s: %v", name, err)
			}
		})
	}
	wg.Wait()
	return ran
}

func main() {
	srv, err := dlocktest.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	fmt.Printf("Using an embedded in-process Redis-compatible server at %s.\n", srv.Addr())
	var replicas []*dlockrt.Client
	for range 3 {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		defer rdb.Close()
		c, err := dlockrt.New(rdb, nil)
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close()
		replicas = append(replicas, c)
	}
	ctx := context.Background()
	store := &Store{}
	for t := 1; t <= 3; t++ {
		fmt.Printf("tick %d: ran in %v\n", t, tick(ctx, store, replicas))
	}
	fmt.Printf("store accepted %d writes, last token %d; a write with an older token is refused: %v\n",
		len(store.Writes), store.last, store.Write(1, "from a stalled replica"))
}
