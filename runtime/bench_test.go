package dlockrt

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clientCommands sums the calls of the commands clients send dlock's way
// (scripts and subscriptions; not the commands scripts run inside).
func clientCommands(b *testing.B, rdb *redis.Client) int64 {
	var n float64
	for _, cmd := range []string{"evalsha", "eval", "ssubscribe", "sunsubscribe"} {
		n += commandStat(b, rdb, cmd, "calls")
	}
	return int64(n)
}

// commandStat is field (calls, usec) of cmd in the server's INFO
// commandstats; 0 when cmd has not run since the stats were reset.
func commandStat(b *testing.B, rdb *redis.Client, cmd, field string) float64 {
	b.Helper()
	info, err := rdb.Info(bg(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if _, rest, ok := strings.Cut(line, "cmdstat_"+cmd+":"); ok {
			for _, kv := range strings.Split(strings.TrimSpace(rest), ",") {
				if v, ok := strings.CutPrefix(kv, field+"="); ok {
					f, err := strconv.ParseFloat(v, 64)
					if err != nil {
						b.Fatal(err)
					}
					return f
				}
			}
		}
	}
	return 0
}

// BenchmarkFanout: 10 clients (as 10 processes, each with its own
// connections) x 4 goroutines call Fanout on one fresh key per round.
// Reports executions per round (goal 1.00), Redis commands per process per
// round (goal <= 4) and the round's p50/p99.
func BenchmarkFanout(b *testing.B) {
	for _, job := range []time.Duration{0, 50 * time.Millisecond} {
		b.Run("job="+job.String(), func(b *testing.B) {
			rdb := newRedis(b)
			var cs []*Client
			for range 10 {
				cs = append(cs, newClient(b, newRedis(b), &Options{Prefix: "bench" + strconv.Itoa(int(time.Now().UnixNano()%1e9))}))
			}
			// Each client shares one prefix so all join the same fanouts.
			for _, c := range cs[1:] {
				c.opts.Prefix = cs[0].opts.Prefix
			}
			var execs atomic.Int64
			var rounds []time.Duration
			before := clientCommands(b, rdb)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				k := "round" + strconv.Itoa(i)
				start := time.Now()
				var wg sync.WaitGroup
				for _, c := range cs {
					for range 4 {
						wg.Go(func() {
							_, err := c.Fanout(context.Background(), k, func(context.Context) ([]byte, error) {
								execs.Add(1)
								time.Sleep(job)
								return []byte("v"), nil
							})
							if err != nil {
								b.Error(err)
							}
						})
					}
				}
				waitGroup(b, &wg, time.Minute, "the round's callers")
				rounds = append(rounds, time.Since(start))
			}
			b.StopTimer()
			n := float64(len(rounds))
			cmds := clientCommands(b, rdb) - before
			slices.Sort(rounds)
			b.ReportMetric(float64(execs.Load())/n, "execs/round")
			b.ReportMetric(float64(cmds)/n/10, "cmds/proc/round")
			b.ReportMetric(float64(rounds[len(rounds)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(rounds[len(rounds)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkLock_OnceRelease: acquire + release cycles, uncontended keys.
func BenchmarkLock_OnceRelease(b *testing.B) {
	for _, workers := range []int{1, 32} {
		b.Run("workers="+strconv.Itoa(workers), func(b *testing.B) {
			c := newClient(b, newRedis(b), &Options{Prefix: "benchlock"})
			var next atomic.Int64
			b.SetParallelism(workers)
			b.RunParallel(func(pb *testing.PB) {
				k := "k" + strconv.FormatInt(next.Add(1), 10)
				ctx := context.Background()
				for pb.Next() {
					l, err := c.Once(ctx, k, WithWatchdog(false))
					if err != nil {
						b.Error(err)
						return
					}
					l.Release(ctx)
				}
			})
		})
	}
}

// BenchmarkLock_serverTime: what each lock script costs the server's single
// thread, as INFO commandstats times it (server-µs/op), apart from the
// round trip: acquire of a key just released (it keeps its last token)
// and of a key Redis never saw, by this build's script and by 0.3's
// (testdata), interleaved; and release. The lock cycle's throughput under
// load is bounded by this plus the round trips' system calls.
func BenchmarkLock_serverTime(b *testing.B) {
	rdb := newRedis(b)
	c := newClient(b, rdb, &Options{Prefix: "benchsrv"})
	owner := c.newOwnerID()
	tag, _ := c.tag("k")
	k := []string{lockKey(tag)}
	acquire03 := oldLockAcquire(b)
	released := func() { rdb.Set(bg(), k[0], "1765000000000000 -"+owner, time.Minute) }
	fresh := func() { rdb.Del(bg(), k[0]) }
	for _, bc := range []struct {
		name  string
		s     *redis.Script
		args  []any
		setup func()
	}{
		{"acquire/released", scriptLockAcquire, []any{owner, 10000}, released},
		{"acquire-0.3/released", acquire03, []any{owner, 10000}, released},
		{"acquire/new", scriptLockAcquire, []any{owner, 10000}, fresh},
		{"acquire-0.3/new", acquire03, []any{owner, 10000}, fresh},
		{"release", scriptLockRelease, []any{owner, 60000, lockChannel(tag)}, func() { rdb.Set(bg(), k[0], "1765000000000000 "+owner, time.Minute) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if err := bc.s.Load(bg(), rdb).Err(); err != nil {
				b.Fatal(err)
			}
			rdb.ConfigResetStat(bg())
			for b.Loop() {
				bc.setup()
				if err := bc.s.EvalSha(bg(), rdb, k, bc.args...).Err(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(commandStat(b, rdb, "evalsha", "usec")/float64(b.N), "server-µs/op")
		})
	}
}

// BenchmarkSemaphore_wakeup: how long a waiter takes to get the permit after
// the holder releases it (one notification, not a poll interval).
func BenchmarkSemaphore_wakeup(b *testing.B) {
	holder := newClient(b, newRedis(b), &Options{Prefix: "benchsem"})
	waiter := newClient(b, newRedis(b), &Options{Prefix: "benchsem"})
	queued := make(chan struct{}, 1)
	testHookSemQueued = func(string) {
		sendGo(b, queued, struct{}{}, 10*time.Second, "the benchmark to see the waiter queued")
	}
	b.Cleanup(func() { testHookSemQueued = nil })
	var total time.Duration
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		k := "w" + strconv.Itoa(i)
		p, err := holder.Semaphore(k, 1).Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		got := make(chan time.Time, 1)
		go func() {
			p2, err := waiter.Semaphore(k, 1).Acquire(ctx)
			if err != nil {
				b.Error(err)
			}
			got <- time.Now()
			p2.Release(ctx)
		}()
		recv(b, queued, 10*time.Second, "the waiter to queue")
		released := time.Now()
		p.Release(ctx)
		total += recv(b, got, 10*time.Second, "the waiter's permit").Sub(released)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "wake-µs")
}

// BenchmarkSemaphore_contended: permits of one key (limit 2) passed among
// six goroutines of three clients, on a standalone server and on a
// Cluster; the two should be of the same order (a Cluster once ran 50×
// slower: the multiplexer took its own unsubscribe replies for slot moves).
func BenchmarkSemaphore_contended(b *testing.B) {
	for _, topo := range []string{"standalone", "cluster"} {
		b.Run(topo, func(b *testing.B) {
			var clients []*Client
			for range 3 {
				var rdb redis.UniversalClient = newRedis(b)
				if topo == "cluster" {
					rdb = sharedCluster(b).Client()
				}
				clients = append(clients, newClient(b, rdb, &Options{Prefix: "benchsemc"}))
			}
			k := "k" + strconv.FormatInt(time.Now().UnixNano(), 36)
			var next atomic.Int64
			b.SetParallelism(3) // × GOMAXPROCS goroutines
			b.ResetTimer()      // starting the cluster is not the benchmark
			b.RunParallel(func(pb *testing.PB) {
				c := clients[next.Add(1)%3]
				ctx := context.Background()
				for pb.Next() {
					if err := c.Semaphore(k, 2).Do(ctx, func(context.Context) error { return nil }); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
