package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	dlockrt "github.com/dlock-go/dlock/runtime"
)

// renewals: one client holds 1,000 and then 10,000 locks with the
// watchdog on (a 3s lease, renewed about every second) for 15 times the
// bench duration (30s by default). Reports the round trips per second the
// client made, the commands per second Redis ran, the client's CPU, and
// leases lost (goal 0). Renewals that fall due together share round trips,
// so round trips grow far slower than the leases held.
func renewals(ctx context.Context, addr string) []row {
	var rows []row
	for _, n := range []int{1000, 10000} {
		rows = append(rows, holdMany(ctx, addr, n)...)
	}
	return rows
}

func holdMany(ctx context.Context, addr string, n int) []row {
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 64})
	defer rdb.Close()
	trips := &tripCounter{}
	rdb.AddHook(trips)
	c, _ := dlockrt.New(rdb, &dlockrt.Options{Prefix: "benchhold", Startup: dlockrt.StartupSkip})
	defer c.Close()
	const ttl = 3 * time.Second
	locks := make([]*dlockrt.Lock, n)
	var wg sync.WaitGroup
	var failed atomic.Int64
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	for w := range 32 {
		wg.Go(func() {
			for i := w; i < n; i += 32 {
				l, err := c.Once(ctx, "hold:"+run+":"+strconv.Itoa(i), dlockrt.WithTTL(ttl))
				if err != nil {
					failed.Add(1)
					continue
				}
				locks[i] = l
			}
		})
	}
	wg.Wait()
	hold := 15 * *dur
	trips0, cmds0, cpu0 := trips.n.Load(), allCalls(ctx, rdb), cpuTime()
	start := time.Now()
	time.Sleep(hold)
	elapsed := time.Since(start).Seconds()
	trips1, cmds1, cpu1 := trips.n.Load(), allCalls(ctx, rdb), cpuTime()
	lost := failed.Load()
	for _, l := range locks {
		if l == nil {
			continue
		}
		select {
		case <-l.Done():
			lost++
		default:
		}
		l.Release(ctx)
	}
	g := fmt.Sprintf("%d locks held %v, watchdog on, %v lease", n, hold, ttl)
	renewalsPerSec := float64(n) / (ttl / 3).Seconds()
	tripsPerSec := float64(trips1-trips0) / elapsed
	return []row{
		{group: g, name: "renewals due per second", value: renewalsPerSec, unit: "/s"},
		{group: g, name: "dlock round trips per second", value: tripsPerSec, unit: "/s", vs: "renewals", ratio: tripsPerSec / renewalsPerSec, goal: "far below 1×"},
		{group: g, name: "Redis commands per second", value: float64(cmds1-cmds0) / elapsed, unit: "/s"},
		{group: g, name: "client CPU", value: 100 * (cpu1 - cpu0).Seconds() / elapsed, unit: "% of a core"},
		{group: g, name: "leases lost or not taken", value: float64(lost), goal: "0"},
	}
}

// cpuTime is the CPU this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
