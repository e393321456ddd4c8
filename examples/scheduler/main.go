// Command scheduler runs a nightly job in three replicas at once, as a
// scheduler in each replica would, and runs it once per day: the day is in
// the lock's key (//dlock:once key="nightly-report:{day}"), so only one
// replica runs it at a time, and the job records the day as done in the
// store, so a late tick of the same day (replicas' clocks differ, a tick
// is retried) finds it done instead of running it again. A lock alone
// ends with the job: it excludes concurrent runs, not later ones. The job
// passes its fencing token to the store, which rejects writes older than
// the newest it has seen: the defence when a replica stalls past its lease
// (a long GC pause, a frozen VM) and wakes up believing it still holds the
// lock.
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
// fencing-aware resource. It remembers the days whose report it has.
type Store struct {
	mu     sync.Mutex
	last   int64
	done   map[string]bool
	Writes []string
}

// ErrStale is returned for a write with an old token.
var ErrStale = errors.New("store: stale fencing token")

// ErrDone is returned by the job when the day's report is already written.
var ErrDone = errors.New("report already written for this day")

// Done reports whether the day's report is written.
func (s *Store) Done(day string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done[day]
}

// Write records the day's report v if token is the newest seen.
func (s *Store) Write(token int64, day, v string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token <= s.last {
		return ErrStale
	}
	if s.done == nil {
		s.done = map[string]bool{}
	}
	s.last, s.done[day] = token, true
	s.Writes = append(s.Writes, v)
	return nil
}

// Job is the nightly report of one replica.
type Job struct {
	Store   *Store
	Replica string
}

// Run is the job that must run once per day. Each replica wraps its Job
// with NewJobWithDlock and its own client.
//
//dlock:once key="nightly-report:{day}" ttl=10s
func (j *Job) Run(ctx context.Context, day string) error {
	token, ok := dlockrt.TokenFromContext(ctx)
	if !ok {
		return errors.New("no fencing token")
	}
	if j.Store.Done(day) { // holding the day's lock: nobody writes it meanwhile
		return ErrDone
	}
	time.Sleep(100 * time.Millisecond) // the work
	return j.Store.Write(token, day, "report of "+day+" by "+j.Replica)
}

// Runner is what the scheduler calls; both *Job and *JobWithDlock are one.
type Runner interface {
	Run(ctx context.Context, day string) error
}

// tick makes every replica try the day's job at once; it returns who ran it.
func tick(ctx context.Context, store *Store, replicas []*dlockrt.Client, day string) []string {
	var mu sync.Mutex
	var ran []string
	var wg sync.WaitGroup
	for i, c := range replicas {
		name := fmt.Sprintf("replica-%d", i+1)
		var job Runner = NewJobWithDlock(&Job{Store: store, Replica: name}, c)
		wg.Go(func() {
			err := job.Run(ctx, day)
			if err == nil {
				mu.Lock()
				ran = append(ran, name)
				mu.Unlock()
			} else if !errors.Is(err, dlockrt.ErrNotAcquired) && !errors.Is(err, ErrDone) {
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
	for _, day := range []string{"2026-11-28", "2026-11-28", "2026-11-29"} { // a late second tick of the 28th
		fmt.Printf("tick for %s: ran in %v\n", day, tick(ctx, store, replicas, day))
	}
	fmt.Printf("store accepted %d writes, last token %d; a write with an older token is refused: %v\n",
		len(store.Writes), store.last, store.Write(1, "2026-11-30", "from a stalled replica"))
}
