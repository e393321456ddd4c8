package main

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"

	dlockrt "github.com/dlock-go/dlock/runtime"
)

var rawRelease = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

// cycle is one acquire+release of an uncontended key; it reports success.
type cycle func(ctx context.Context, key string) bool

func lockImpls(rdb *redis.Client) map[string]cycle {
	c, _ := dlockrt.New(rdb, &dlockrt.Options{Prefix: "bench"})
	rl := redislock.New(rdb)
	rs := redsync.New(goredis.NewPool(rdb))
	return map[string]cycle{
		"raw SET NX PX + Lua DEL": func(ctx context.Context, k string) bool {
			ok, err := rdb.SetNX(ctx, k, "v", 10*time.Second).Result()
			if err != nil || !ok {
				return false
			}
			return rawRelease.Run(ctx, rdb, []string{k}, "v").Err() == nil
		},
		"dlock Once+Release": func(ctx context.Context, k string) bool {
			l, err := c.Once(ctx, k, dlockrt.WithTTL(10*time.Second), dlockrt.WithWatchdog(false))
			if err != nil {
				return false
			}
			return l.Release(ctx) == nil
		},
		"bsm/redislock": func(ctx context.Context, k string) bool {
			l, err := rl.Obtain(ctx, k, 10*time.Second, nil)
			if err != nil {
				return false
			}
			return l.Release(ctx) == nil
		},
		"go-redsync/redsync": func(ctx context.Context, k string) bool {
			m := rs.NewMutex(k, redsync.WithExpiry(10*time.Second), redsync.WithTries(1))
			if m.LockContext(ctx) != nil {
				return false
			}
			_, err := m.UnlockContext(ctx)
			return err == nil
		},
	}
}

// lockCycles: acquire+release cycles per second on uncontended keys, at 1
// and 32 workers. Goal: dlock >= 0.95x the raw floor.
func lockCycles(ctx context.Context, addr string) []row {
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 64})
	defer rdb.Close()
	impls := lockImpls(rdb)
	var rows []row
	for _, workers := range []int{1, 32} {
		group := "lock acquire+release, " + strconv.Itoa(workers) + " worker(s)"
		fs := map[string]func() float64{}
		for name, f := range impls {
			fs[name] = func() float64 {
				var n atomic.Int64
				stop := time.Now().Add(*dur)
				var wg sync.WaitGroup
				for w := range workers {
					wg.Go(func() {
						k := "cyc:" + strings.ReplaceAll(name, " ", "") + strconv.Itoa(w)
						for time.Now().Before(stop) {
							if f(ctx, k) {
								n.Add(1)
							}
						}
					})
				}
				wg.Wait()
				return float64(n.Load()) / dur.Seconds()
			}
		}
		results := interleaved(fs)
		raw := results["raw SET NX PX + Lua DEL"]
		for _, name := range []string{"raw SET NX PX + Lua DEL", "dlock Once+Release", "bsm/redislock", "go-redsync/redsync"} {
			r := row{group: group, name: name, value: results[name], unit: "cycles/s"}
			if name != "raw SET NX PX + Lua DEL" {
				r.vs, r.ratio = "raw", results[name]/raw
			}
			if name == "dlock Once+Release" {
				r.goal = ">= 0.95× raw"
			}
			rows = append(rows, r)
		}
	}
	return rows
}

// handoff: 4 and 32 workers contend for one key, hold it 1ms, release. dlock's
// Lock waits for the release notification; redsync retries (every 10ms,
// more eagerly than its default). Reports successes per second and failed
// tries per success.
func handoff(ctx context.Context, addr string) []row {
	var rows []row
	for _, workers := range []int{4, 32} {
		rows = append(rows, handoffN(ctx, addr, workers)...)
	}
	return rows
}

func handoffN(ctx context.Context, addr string, workers int) []row {
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 64})
	defer rdb.Close()
	c, _ := dlockrt.New(rdb, &dlockrt.Options{Prefix: "bench"})
	defer c.Close()
	rs := redsync.New(goredis.NewPool(rdb))
	var dlockFailed, rsFailed float64
	dl := median(func() float64 {
		before := evalCalls(ctx, rdb)
		var n atomic.Int64
		stop := time.Now().Add(*dur)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for time.Now().Before(stop) {
					wctx, cancel := context.WithDeadline(ctx, stop)
					l, err := c.Lock(wctx, "handoff", dlockrt.WithTTL(5*time.Second), dlockrt.WithWatchdog(false))
					cancel()
					if err != nil {
						continue
					}
					time.Sleep(time.Millisecond) // the critical section
					l.Release(ctx)
					n.Add(1)
				}
			})
		}
		wg.Wait()
		calls := evalCalls(ctx, rdb) - before // tries + releases
		dlockFailed = (float64(calls) - 2*float64(n.Load())) / float64(max(n.Load(), 1))
		return float64(n.Load()) / dur.Seconds()
	})
	rsv := median(func() float64 {
		var n, failed atomic.Int64
		stop := time.Now().Add(*dur)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				m := rs.NewMutex("rs-handoff", redsync.WithExpiry(5*time.Second), redsync.WithTries(1))
				_ = w
				for time.Now().Before(stop) {
					if err := m.LockContext(ctx); err != nil {
						failed.Add(1)
						time.Sleep(10 * time.Millisecond)
						continue
					}
					time.Sleep(time.Millisecond)
					m.UnlockContext(ctx)
					n.Add(1)
				}
			})
		}
		wg.Wait()
		rsFailed = float64(failed.Load()) / float64(max(n.Load(), 1))
		return float64(n.Load()) / dur.Seconds()
	})
	rsDefault := median(func() float64 {
		var n atomic.Int64
		stop := time.Now().Add(*dur)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				m := rs.NewMutex("rs-default-handoff", redsync.WithExpiry(5*time.Second)) // its default retries
				for time.Now().Before(stop) {
					wctx, cancel := context.WithDeadline(ctx, stop)
					err := m.LockContext(wctx)
					cancel()
					if err != nil {
						continue
					}
					time.Sleep(time.Millisecond)
					m.UnlockContext(ctx)
					n.Add(1)
				}
			})
		}
		wg.Wait()
		return float64(n.Load()) / dur.Seconds()
	})
	g := "contended hand-off, " + strconv.Itoa(workers) + " workers, 1 key"
	return []row{
		{group: g, name: "dlock Lock (woken by release)", value: dl, unit: "successes/s", vs: "redsync default", ratio: dl / rsDefault, goal: ">= 2× redsync"},
		{group: g, name: "go-redsync/redsync (default retries)", value: rsDefault, unit: "successes/s"},
		{group: g, name: "go-redsync/redsync (retry every 10ms)", value: rsv, unit: "successes/s", vs: "dlock", ratio: rsv / dl},
		{group: g, name: "dlock failed tries per success", value: dlockFailed, unit: "", goal: "<= 1"},
		{group: g, name: "redsync failed tries per success", value: rsFailed, unit: ""},
	}
}

// evalCalls is the number of EVAL/EVALSHA calls the server has run.
func evalCalls(ctx context.Context, rdb *redis.Client) int64 {
	return commandCalls(ctx, rdb, "evalsha", "eval")
}

func commandCalls(ctx context.Context, rdb *redis.Client, cmds ...string) int64 {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0
	}
	var n int64
	for _, line := range strings.Split(info, "\n") {
		for _, cmd := range cmds {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":calls="); ok {
				v, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
				n += v
			}
		}
	}
	return n
}
