package dlockrt

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func init() {
	helpers["fanouters"] = helperFanouters
	helpers["fanleader"] = helperFanLeader
}

// sweepJobs are the job durations of the P6 sweep, one round each, with
// a leader lease (TTL) of 300ms: from instant to twice the TTL.
var sweepJobs = []time.Duration{time.Millisecond, 20 * time.Millisecond, 100 * time.Millisecond,
	300 * time.Millisecond, 600 * time.Millisecond, 5 * time.Millisecond}

const sweepTTL = 300 * time.Millisecond

// helperFanouters runs the P6 workload in one process: for every round, at
// its start time, GOROUTINES callers each wait a random 0-500ms and call
// Fanout on the round's key. The job counts its runs in Redis and returns
// an id unique to the run; every caller adds what it got to a Redis set.
// Env: ADDR, NAME, START (unix ms), GOROUTINES.
func helperFanouters() int {
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("ADDR")})
	defer rdb.Close()
	name := os.Getenv("NAME")
	c, err := New(rdb, &Options{Prefix: name, TTL: sweepTTL})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	start, _ := strconv.ParseInt(os.Getenv("START"), 10, 64)
	g, _ := strconv.Atoi(os.Getenv("GOROUTINES"))
	failed := false
	var mu sync.Mutex
	for r, d := range sweepJobs {
		at := time.UnixMilli(start).Add(time.Duration(r) * 1500 * time.Millisecond)
		time.Sleep(time.Until(at)) // the round's schedule
		k := "round" + strconv.Itoa(r)
		var wg sync.WaitGroup
		for range g {
			wg.Go(func() {
				time.Sleep(time.Duration(rand.IntN(500)) * time.Millisecond) // stagger 0-500ms
				b, err := c.Fanout(context.Background(), k, func(ctx context.Context) ([]byte, error) {
					if err := rdb.Incr(ctx, name+":runs:"+k).Err(); err != nil {
						return nil, err
					}
					time.Sleep(d) // the job's work
					return []byte(randomID()), nil
				}, WithTimeout(5*time.Second))
				if err == nil {
					err = rdb.SAdd(context.Background(), name+":got:"+k, b).Err()
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, "fanout:", err)
					mu.Lock()
					failed = true
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	if failed {
		return 1
	}
	return 0
}

// P6: four processes call Fanout on one key per round, staggered 0-500ms,
// with jobs from 1ms to twice the TTL: exactly one run per round, and every
// caller gets the same bytes. (The Node package runs short jobs many times:
// a late retry finds the lock free and runs again.)
func TestFanout_oneRunPerGenerationAcrossProcesses(t *testing.T) {
	name := "p6-" + strconv.Itoa(rand.IntN(1e9))
	start := time.Now().Add(time.Second).UnixMilli()
	var cmds []*child
	for range 4 {
		cmds = append(cmds, startHelper(t, "fanouters", "ADDR="+standaloneAddr(t), "NAME="+name,
			"START="+strconv.FormatInt(start, 10), "GOROUTINES=3"))
	}
	for _, cmd := range cmds {
		if err := cmd.wait(t, 2*time.Minute); err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	rdb := newRedis(t)
	for r, d := range sweepJobs {
		k := "round" + strconv.Itoa(r)
		runs, _ := rdb.Get(bg(), name+":runs:"+k).Int()
		got, _ := rdb.SMembers(bg(), name+":got:"+k).Result()
		if runs != 1 || len(got) != 1 {
			t.Errorf("round %d (job %v): runs = %d, distinct results = %d; want 1, 1", r, d, runs, len(got))
		}
	}
}

// helperFanLeader leads a fanout whose job never ends, says "leading" on
// stdout, and waits to be killed (or helperLife to pass). Env: ADDR, NAME,
// KEY, TTL (ms).
func helperFanLeader() int {
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("ADDR")})
	ttl, _ := strconv.Atoi(os.Getenv("TTL"))
	c, err := New(rdb, &Options{Prefix: os.Getenv("NAME"), TTL: time.Duration(ttl) * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	c.Fanout(context.Background(), os.Getenv("KEY"), func(ctx context.Context) ([]byte, error) {
		fmt.Println("leading")
		os.Exit(awaitKill("fanleader")) // hang until killed
		return nil, nil
	}, WithTimeout(time.Hour))
	return 1
}

// P7: the leader process is killed mid-job; one waiter takes over once the
// lease lapses, and every caller gets its result within TTL + a margin of
// the kill. (The Node package makes them wait for their full timeout.)
func TestFanout_leaderKilledWaiterTakesOver(t *testing.T) {
	name := "p7-" + strconv.Itoa(rand.IntN(1e9))
	ttl := 500 * time.Millisecond
	cmd := startHelperSaying(t, "fanleader", "leading", "ADDR="+standaloneAddr(t), "NAME="+name, "KEY=k", "TTL=500")
	type outcome struct {
		b   []byte
		err error
		at  time.Time
	}
	outcomes := make(chan outcome, 20)
	var runs sync.Map
	waiting := make(chan struct{}, 20) // callers started (joined before or after the kill: both must finish in time)
	for i := range 4 {
		c := newClient(t, newRedis(t), &Options{Prefix: name, TTL: ttl})
		for range 5 {
			go func() {
				waiting <- struct{}{}
				b, err := c.Fanout(t.Context(), "k", func(context.Context) ([]byte, error) {
					runs.Store(i, true)
					return []byte("taken over"), nil
				}, WithTimeout(20*time.Second))
				outcomes <- outcome{b, err, time.Now()}
			}()
		}
	}
	for range 20 {
		recv(t, waiting, 10*time.Second, "the callers to start")
	}
	killed := time.Now()
	cmd.kill()
	for range 20 {
		o := recv(t, outcomes, 30*time.Second, "the callers' results after the kill")
		if o.err != nil || string(o.b) != "taken over" {
			t.Fatalf("Fanout = %q, %v; want the new leader's result", o.b, o.err)
		}
		if d := o.at.Sub(killed); d > ttl+time.Second {
			t.Errorf("result arrived %v after the kill; want within TTL (%v) + 1s", d, ttl)
		}
	}
	n := 0
	runs.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Fatalf("%d clients ran the job after the takeover; want 1", n)
	}
}

// A job lasting three times the lease delivers its result to every caller:
// the watchdog keeps the live leader's lease. (The Node package loses it.)
func TestFanout_jobLongerThanTTLDelivers(t *testing.T) {
	ttl := 200 * time.Millisecond
	var runs sync.Map
	var wg sync.WaitGroup
	k := key(t, "k")
	for i, c := range tenClients(t, &Options{TTL: ttl}) {
		wg.Go(func() {
			b, err := c.Fanout(t.Context(), k, func(ctx context.Context) ([]byte, error) {
				runs.Store(i, true)
				select {
				case <-time.After(3 * ttl): // the slow job
				case <-ctx.Done():
					return nil, context.Cause(ctx)
				}
				return []byte("slow"), nil
			}, WithTimeout(10*time.Second))
			if err != nil || string(b) != "slow" {
				t.Errorf("Fanout = %q, %v; want slow", b, err)
			}
		})
	}
	waitGroup(t, &wg, 30*time.Second, "the callers of the slow job")
	n := 0
	runs.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Fatalf("job ran in %d clients; want 1", n)
	}
}

// P9: the leader's caller cancels mid-job; the other callers still get the
// result.
func TestFanout_leaderCallerCancelsOthersGetResult(t *testing.T) {
	cs := tenClients(t, nil)
	k := key(t, "k")
	started, finish := make(chan struct{}), make(chan struct{})
	ctx, cancel := context.WithCancel(t.Context())
	leaderErr := make(chan error, 1)
	go func() {
		_, err := cs[0].Fanout(ctx, k, func(jobCtx context.Context) ([]byte, error) {
			close(started)
			recvGo(t, finish, time.Minute, "the test to let the job finish")
			return []byte("done"), jobCtx.Err()
		})
		leaderErr <- err
	}()
	recv(t, started, 10*time.Second, "the leader's job to start")
	var wg sync.WaitGroup
	for _, c := range cs[1:] {
		wg.Go(func() {
			b, err := c.Fanout(t.Context(), k, func(context.Context) ([]byte, error) {
				t.Error("a second run started")
				return nil, nil
			})
			if err != nil || string(b) != "done" {
				t.Errorf("Fanout = %q, %v; want done", b, err)
			}
		})
	}
	cancel()
	if err := recv(t, leaderErr, 10*time.Second, "the cancelled leader caller's Fanout to return"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled leader caller's Fanout = %v; want context.Canceled", err)
	}
	close(finish)
	waitGroup(t, &wg, 30*time.Second, "the other callers' results")
}
