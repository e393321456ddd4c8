package main

import (
	"context"
	"slices"
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

// lockCycles: acquire+release cycles per second on uncontended keys, at 1,
// 4 and 32 workers, with what each cycle cost: Redis commands (the
// server's INFO commandstats, scripts' inner commands included), round
// trips (counted on the client) and the server's CPU time (INFO cpu: what
// a single-threaded server runs out of first). Goals: dlock >= 1.0x raw at one worker,
// >= 1.5x at 32.
func lockCycles(ctx context.Context, addr string) []row {
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 64})
	defer rdb.Close()
	trips := &tripCounter{}
	rdb.AddHook(trips)
	impls := lockImpls(rdb)
	names := []string{"raw SET NX PX + Lua DEL", "dlock Once+Release", "bsm/redislock", "go-redsync/redsync"}
	var rows []row
	for _, workers := range []int{1, 4, 32} {
		group := "lock acquire+release, " + strconv.Itoa(workers) + " worker(s)"
		fs := map[string]func() float64{}
		cmdsPer, tripsPer, cpuPer := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
		for name, f := range impls {
			fs[name] = func() float64 {
				var n atomic.Int64
				stop := time.Now().Add(*dur)
				cmds0, cpu0 := allCalls(ctx, rdb), serverCPU(ctx, rdb)
				trips0 := trips.n.Load()
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
				cycles := float64(max(n.Load(), 1))
				trips1 := trips.n.Load()
				cmdsPer[name] = append(cmdsPer[name], float64(allCalls(ctx, rdb)-cmds0-2)/cycles) // -2: the INFOs that read them
				cpuPer[name] = append(cpuPer[name], (serverCPU(ctx, rdb)-cpu0).Seconds()*1e6/cycles)
				tripsPer[name] = append(tripsPer[name], float64(trips1-trips0)/cycles)
				return float64(n.Load()) / dur.Seconds()
			}
		}
		results := interleaved(fs)
		raw := results[names[0]]
		for _, name := range names {
			r := row{group: group, name: name, value: results[name], unit: "cycles/s"}
			if name != names[0] {
				r.vs, r.ratio = "raw", results[name]/raw
			}
			if name == "dlock Once+Release" {
				r.goal = ">= 1.0× raw"
				if workers == 32 {
					r.goal = ">= 1.5× raw"
				}
			}
			rows = append(rows, r)
		}
		for _, name := range names[:2] {
			rows = append(rows,
				row{group: group, name: name + ": Redis commands per cycle", value: medianOf(cmdsPer[name])},
				row{group: group, name: name + ": round trips per cycle", value: medianOf(tripsPer[name])},
				row{group: group, name: name + ": server CPU per cycle", value: medianOf(cpuPer[name]), unit: "µs"})
		}
	}
	return rows
}

// handoff: 4 and 32 workers contend for one key, hold it 1ms, release,
// and try again at once. dlock's Lock waits for the release notification;
// redsync retries (with its default delays, and every 10ms). Reports
// successes per second, failed tries per success, and how long a worker
// waited for each success (p99) — a lock the releaser can take straight
// back is busy all the time, but may make the others wait.
func handoff(ctx context.Context, addr string) []row {
	var rows []row
	for _, workers := range []int{4, 32} {
		rows = append(rows, handoffN(ctx, addr, workers)...)
	}
	return rows
}

// contention is what one run of a hand-off measured.
type contention struct {
	perSec  float64
	failed  float64       // failed tries per success
	waitP99 time.Duration // from a worker's first try to its success (or to the end of the run)
	starved int           // workers that never got the lock
}

// contend runs workers that call acquire until it succeeds, hold for 1ms
// and release, for the bench duration. acquire reports ok and its failed
// tries.
func contend(workers int, acquire func(ctx context.Context) (release func(), failed int, ok bool)) contention {
	var mu sync.Mutex
	var waits []time.Duration
	var n, failed atomic.Int64
	stop := time.Now().Add(*dur)
	var wg sync.WaitGroup
	var starved atomic.Int64
	for range workers {
		wg.Go(func() {
			got := false
			start := time.Now()
			for time.Now().Before(stop) {
				wctx, cancel := context.WithDeadline(context.Background(), stop)
				release, f, ok := acquire(wctx)
				cancel()
				failed.Add(int64(f))
				if !ok {
					continue
				}
				w := time.Since(start)
				time.Sleep(time.Millisecond) // the critical section
				release()
				n.Add(1)
				got = true
				mu.Lock()
				waits = append(waits, w)
				mu.Unlock()
				start = time.Now()
			}
			// A wait the run's end cut short counts for as long as it lasted.
			mu.Lock()
			waits = append(waits, time.Since(start))
			mu.Unlock()
			if !got {
				starved.Add(1)
			}
		})
	}
	wg.Wait()
	slices.Sort(waits)
	c := contention{perSec: float64(n.Load()) / dur.Seconds(), failed: float64(failed.Load()) / float64(max(n.Load(), 1)),
		starved: int(starved.Load())}
	if len(waits) > 0 {
		c.waitP99 = waits[len(waits)*99/100]
	}
	return c
}

func handoffN(ctx context.Context, addr string, workers int) []row {
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 64})
	defer rdb.Close()
	c, _ := dlockrt.New(rdb, &dlockrt.Options{Prefix: "bench"})
	defer c.Close()
	rs := redsync.New(goredis.NewPool(rdb))
	runs := map[string][]contention{}
	run := func(name string, f func() contention) func() float64 {
		return func() float64 {
			r := f()
			runs[name] = append(runs[name], r)
			return r.perSec
		}
	}
	perSec := interleaved(map[string]func() float64{
		"dlock": run("dlock", func() contention {
			before := evalCalls(ctx, rdb)
			r := contend(workers, func(ctx context.Context) (func(), int, bool) {
				l, err := c.Lock(ctx, "handoff", dlockrt.WithTTL(5*time.Second), dlockrt.WithWatchdog(false))
				if err != nil {
					return nil, 0, false
				}
				return func() { l.Release(context.Background()) }, 0, true
			})
			// Every success costs one try and one release; the rest failed.
			succ := r.perSec * dur.Seconds()
			r.failed = (float64(evalCalls(ctx, rdb)-before) - 2*succ) / max(succ, 1)
			return r
		}),
		"redsync default": run("redsync default", func() contention {
			return contend(workers, func(ctx context.Context) (func(), int, bool) {
				m := rs.NewMutex("rs-default-handoff", redsync.WithExpiry(5*time.Second)) // its default retries
				if m.LockContext(ctx) != nil {
					return nil, 0, false
				}
				return func() { m.UnlockContext(context.Background()) }, 0, true
			})
		}),
		"redsync 10ms": run("redsync 10ms", func() contention {
			return contend(workers, func(ctx context.Context) (func(), int, bool) {
				m := rs.NewMutex("rs-handoff", redsync.WithExpiry(5*time.Second), redsync.WithTries(1))
				failed := 0
				for m.LockContext(ctx) != nil {
					failed++
					select {
					case <-time.After(10 * time.Millisecond):
					case <-ctx.Done():
						return nil, failed, false
					}
				}
				return func() { m.UnlockContext(context.Background()) }, failed, true
			})
		}),
	})
	med := func(name string, f func(contention) float64) float64 {
		var vs []float64
		for _, r := range runs[name] {
			vs = append(vs, f(r))
		}
		slices.Sort(vs)
		return vs[len(vs)/2]
	}
	p99 := func(r contention) float64 { return float64(r.waitP99.Microseconds()) / 1000 }
	failedTries := func(r contention) float64 { return r.failed }
	starved := func(r contention) float64 { return float64(r.starved) }
	dl, rsDefault, rs10 := perSec["dlock"], perSec["redsync default"], perSec["redsync 10ms"]
	dlWait, rsWait, rs10Wait := med("dlock", p99), med("redsync default", p99), med("redsync 10ms", p99)
	g := "contended hand-off, " + strconv.Itoa(workers) + " workers, 1 key"
	return []row{
		{group: g, name: "dlock Lock (woken by release)", value: dl, unit: "successes/s", vs: "redsync default", ratio: dl / rsDefault, goal: ">= 2× redsync"},
		{group: g, name: "go-redsync/redsync (default retries)", value: rsDefault, unit: "successes/s"},
		{group: g, name: "go-redsync/redsync (retry every 10ms)", value: rs10, unit: "successes/s", vs: "dlock", ratio: rs10 / dl},
		{group: g, name: "dlock failed tries per success", value: med("dlock", failedTries), unit: "", goal: "<= 1"},
		{group: g, name: "redsync (10ms) failed tries per success", value: med("redsync 10ms", failedTries), unit: ""},
		{group: g, name: "dlock wait for the lock, p99", value: dlWait, unit: "ms"},
		{group: g, name: "redsync (default) wait for the lock, p99", value: rsWait, unit: "ms", vs: "dlock", ratio: rsWait / max(dlWait, 0.001)},
		{group: g, name: "redsync (10ms) wait for the lock, p99", value: rs10Wait, unit: "ms", vs: "dlock", ratio: rs10Wait / max(dlWait, 0.001)},
		{group: g, name: "dlock workers that never got the lock", value: med("dlock", starved), unit: ""},
		{group: g, name: "redsync (default) workers that never got the lock", value: med("redsync default", starved), unit: ""},
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

// allCalls is the number of commands the server has run, of every kind
// (a script's inner commands included).
func allCalls(ctx context.Context, rdb *redis.Client) int64 {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0
	}
	var n int64
	for _, line := range strings.Split(info, "\n") {
		if _, rest, ok := strings.Cut(line, ":calls="); ok && strings.HasPrefix(line, "cmdstat_") {
			v, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
			n += v
		}
	}
	return n
}

// serverCPU is the CPU time the server has used (user and system).
func serverCPU(ctx context.Context, rdb *redis.Client) time.Duration {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0
	}
	var secs float64
	for _, line := range strings.Split(info, "\n") {
		for _, k := range []string{"used_cpu_user:", "used_cpu_sys:"} {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), k); ok {
				f, _ := strconv.ParseFloat(v, 64)
				secs += f
			}
		}
	}
	return time.Duration(secs * float64(time.Second))
}

// tripCounter counts a go-redis client's round trips: one per command
// sent alone, one per pipeline.
type tripCounter struct{ n atomic.Int64 }

func (t *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (t *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		t.n.Add(1)
		return next(ctx, cmd)
	}
}

func (t *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		t.n.Add(1)
		return next(ctx, cmds)
	}
}

func medianOf(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	vs = slices.Clone(vs)
	slices.Sort(vs)
	return vs[len(vs)/2]
}
