package main

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	dlockrt "github.com/dlock-go/dlock/runtime"
)

// fanout: 10 clients (each with its own connections, as 10 processes) x 4
// goroutines call Fanout on one fresh key per round. Goals: 1.00 executions
// per round, <= 4 Redis commands per process per round. With an instant
// job a waiter's subscribe and second join are on the round's critical
// path; with a 5 ms job they happen while the job runs, and what the round
// takes beyond the job is compared to the floor. The CPU rows say what
// bounds a round on a small host: the 10 clients share this process's
// cores with Redis, so a round takes at least its CPU over the cores.
func fanout(ctx context.Context, addr string) []row {
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	var cs []*dlockrt.Client
	var rdbs []*redis.Client
	for range 10 {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		defer rdb.Close()
		rdbs = append(rdbs, rdb)
		c, _ := dlockrt.New(rdb, &dlockrt.Options{Prefix: "benchfan"})
		defer c.Close()
		cs = append(cs, c)
	}
	const n = 200
	// The floor: a round in which each process makes one round trip (a
	// PING), all at once, as a fanout's leader alone would.
	var floor []time.Duration
	cpu0, srv0 := cpuTime(), serverCPU(ctx, admin)
	for range n {
		start := time.Now()
		var wg sync.WaitGroup
		for _, rdb := range rdbs {
			wg.Go(func() { rdb.Ping(ctx) })
		}
		wg.Wait()
		floor = append(floor, time.Since(start))
	}
	floorCPU, floorSrv := perRound(cpuTime()-cpu0, n), perRound(serverCPU(ctx, admin)-srv0, n)
	slices.Sort(floor)
	floor50 := float64(floor[n/2].Microseconds())

	instant := fanoutRounds(ctx, admin, cs, n, 0)
	p50 := float64(instant.rounds[n/2].Microseconds())
	slow := fanoutRounds(ctx, admin, cs, n, 5*time.Millisecond)
	beyond := float64(slow.beyondJob[n/2].Microseconds())
	g := "fanout, 10 clients × 4 goroutines, instant job"
	gs := "fanout, 10 clients × 4 goroutines, 5 ms job"
	return []row{
		{group: g, name: "dlock executions per round", value: instant.execs, goal: "1.00"},
		{group: g, name: "dlock Redis commands per process per round", value: instant.cmds, goal: "<= 4"},
		{group: g, name: "dlock round p50", value: p50, unit: "µs", vs: "PING floor", ratio: p50 / max(floor50, 1), goal: "<= 2× floor"},
		{group: g, name: "one PING per process, round p50 (floor)", value: floor50, unit: "µs"},
		{group: g, name: "dlock round p99", value: float64(instant.rounds[n*99/100].Microseconds()), unit: "µs"},
		{group: g, name: "dlock clients' CPU per round (all 10)", value: instant.cpu, unit: "µs", vs: "PING floor", ratio: instant.cpu / max(floorCPU, 1)},
		{group: g, name: "dlock Redis CPU per round", value: instant.srv, unit: "µs", vs: "PING floor", ratio: instant.srv / max(floorSrv, 1)},
		{group: g, name: "one PING per process: clients' CPU per round", value: floorCPU, unit: "µs"},
		{group: g, name: "one PING per process: Redis CPU per round", value: floorSrv, unit: "µs"},
		{group: gs, name: "dlock executions per round", value: slow.execs, goal: "1.00"},
		{group: gs, name: "dlock round beyond the job's run, p50", value: beyond, unit: "µs", vs: "PING floor", ratio: beyond / max(floor50, 1), goal: "<= 2× floor"},
	}
}

// fanned is what fanoutRounds measured.
type fanned struct {
	execs, cmds float64         // per round; per process per round
	cpu, srv    float64         // µs of the clients' CPU, of Redis's, per round
	rounds      []time.Duration // each round, sorted
	beyondJob   []time.Duration // each round less its job's run, sorted
}

// fanoutRounds runs n rounds in which 4 goroutines of each client call
// Fanout on one fresh key, with a job that sleeps for job.
func fanoutRounds(ctx context.Context, admin *redis.Client, cs []*dlockrt.Client, n int, job time.Duration) fanned {
	var execs atomic.Int64
	var f fanned
	before := commandCalls(ctx, admin, "evalsha", "eval", "ssubscribe", "sunsubscribe")
	cpu0, srv0 := cpuTime(), serverCPU(ctx, admin)
	for r := range n {
		k := "round" + strconv.Itoa(r) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		var ran atomic.Int64 // the job's run, in ns
		start := time.Now()
		var wg sync.WaitGroup
		for _, c := range cs {
			for range 4 {
				wg.Go(func() {
					c.Fanout(ctx, k, func(context.Context) ([]byte, error) {
						execs.Add(1)
						began := time.Now()
						if job > 0 {
							time.Sleep(job)
						}
						ran.Add(int64(time.Since(began)))
						return []byte("v"), nil
					})
				})
			}
		}
		wg.Wait()
		d := time.Since(start)
		f.rounds = append(f.rounds, d)
		f.beyondJob = append(f.beyondJob, d-time.Duration(ran.Load()))
	}
	f.cpu, f.srv = perRound(cpuTime()-cpu0, n), perRound(serverCPU(ctx, admin)-srv0, n)
	f.cmds = float64(commandCalls(ctx, admin, "evalsha", "eval", "ssubscribe", "sunsubscribe")-before) / float64(n) / float64(len(cs))
	f.execs = float64(execs.Load()) / float64(n)
	slices.Sort(f.rounds)
	slices.Sort(f.beyondJob)
	return f
}

// perRound is d over n rounds, in µs.
func perRound(d time.Duration, n int) float64 { return float64(d.Microseconds()) / float64(n) }

// joiners: 32 goroutines of one process call the same key over and over,
// with a 1ms job; dlock (which also coordinates with the fleet through
// Redis) against x/sync/singleflight (this process only). Goal: <= 2x per
// call.
func joiners(ctx context.Context, addr string) []row {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	c, _ := dlockrt.New(rdb, &dlockrt.Options{Prefix: "benchjoin", ResultTTL: time.Millisecond})
	defer c.Close()
	var sf singleflight.Group
	job := func() { time.Sleep(time.Millisecond) }
	measure := func(call func(k string)) float64 {
		return median(func() float64 {
			var n atomic.Int64
			stop := time.Now().Add(*dur)
			var wg sync.WaitGroup
			for range 32 {
				wg.Go(func() {
					for time.Now().Before(stop) {
						call("k" + strconv.FormatInt(time.Now().UnixNano()/int64(2*time.Millisecond), 10))
						n.Add(1)
					}
				})
			}
			wg.Wait()
			return float64(dur.Nanoseconds()) * 32 / float64(n.Load()) / 1000
		})
	}
	d := measure(func(k string) {
		c.Fanout(ctx, k, func(context.Context) ([]byte, error) { job(); return nil, nil })
	})
	s := measure(func(k string) {
		sf.Do(k, func() (any, error) { job(); return nil, nil })
	})
	g := "in-process joiners, 32 goroutines, 1ms job"
	return []row{
		{group: g, name: "dlock Fanout", value: d, unit: "µs/call", vs: "singleflight", ratio: d / s, goal: "<= 2× singleflight"},
		{group: g, name: "x/sync/singleflight", value: s, unit: "µs/call"},
	}
}

// semaphoreWake: how long after a release the next waiter holds the
// permit (one notification).
func semaphoreWake(ctx context.Context, addr string) []row {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	c, _ := dlockrt.New(rdb, &dlockrt.Options{Prefix: "benchsem"})
	defer c.Close()
	var lat []time.Duration
	for i := range 100 {
		s := c.Semaphore("w"+strconv.Itoa(i), 1)
		p, _ := s.Acquire(ctx)
		got := make(chan time.Time, 1)
		go func() {
			p2, err := s.Acquire(ctx)
			got <- time.Now()
			if err == nil {
				p2.Release(ctx)
			}
		}()
		time.Sleep(5 * time.Millisecond) // the waiter queues meanwhile
		released := time.Now()
		p.Release(ctx)
		lat = append(lat, (<-got).Sub(released))
	}
	slices.Sort(lat)
	return []row{{group: "semaphore", name: "dlock wake-up after release, p50", value: float64(lat[50].Microseconds()), unit: "µs"}}
}
