package dlockrt

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func init() {
	helpers["semholders"] = helperSemHolders
	helpers["semhog"] = helperSemHog
	helpers["semwaiter"] = helperSemWaiter
}

// occupancy is an oracle for semaphores: enter adds the holder with a
// deadline a little before its permit's (so a killed holder leaves the
// oracle no later than it leaves the semaphore) and counts the entries
// that found more than ARGV[3] live holders.
var occEnter = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local n = redis.call('ZCARD', KEYS[1])
if n > tonumber(ARGV[3]) then redis.call('HINCRBY', KEYS[2], 'over', 1) end
if n > tonumber(redis.call('HGET', KEYS[2], 'max') or '0') then redis.call('HSET', KEYS[2], 'max', n) end
redis.call('HINCRBY', KEYS[2], 'grants', 1)
return n`)

const (
	semLimit = 5
	semTTL   = time.Second
)

// helperSemHolders: GOROUTINES goroutines take permits of one semaphore
// (limit 5, lease 1s) and hold them 0-20ms, until killed or MILLIS pass.
// Env: ADDR, NAME, GOROUTINES, MILLIS.
func helperSemHolders() int {
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("ADDR")})
	name := os.Getenv("NAME")
	c, err := New(rdb, &Options{Prefix: name, TTL: semTTL})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	g, _ := strconv.Atoi(os.Getenv("GOROUTINES"))
	millis, _ := strconv.Atoi(os.Getenv("MILLIS"))
	stop := time.Now().Add(time.Duration(millis) * time.Millisecond)
	s := c.Semaphore("sem", semLimit)
	occ := []string{name + ":occ", name + ":stats"}
	var wg sync.WaitGroup
	for range g {
		wg.Go(func() {
			for time.Now().Before(stop) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := s.Do(ctx, func(ctx context.Context) error {
					id := randomID()
					if err := occEnter.Run(ctx, rdb, occ, id, (semTTL - 200*time.Millisecond).Milliseconds(), semLimit).Err(); err != nil {
						return err
					}
					time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)   // the work
					return rdb.ZRem(context.WithoutCancel(ctx), occ[0], id).Err() // recorded even if the lease ended meanwhile
				})
				cancel()
				if err != nil {
					fmt.Fprintln(os.Stderr, "semholders:", err)
				}
			}
		})
	}
	wg.Wait()
	return 0
}

// helperSemHog takes every permit, says "holding", and waits to be killed
// (or helperLife to pass).
func helperSemHog() int {
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("ADDR")})
	c, _ := New(rdb, &Options{Prefix: os.Getenv("NAME"), TTL: semTTL})
	s := c.Semaphore("sem", semLimit)
	for range semLimit {
		if _, err := s.Acquire(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	fmt.Println("holding")
	return awaitKill("semhog")
}

// P10: three processes with 40 goroutines each share five permits while
// processes are killed with SIGKILL now and then: the occupancy oracle never
// sees more than five live holders.
func TestSemaphore_neverOverLimitWithKills(t *testing.T) {
	name := "p10-" + strconv.Itoa(rand.IntN(1e9))
	env := []string{"ADDR=" + standaloneAddr(t), "NAME=" + name, "GOROUTINES=40"}
	var mu sync.Mutex
	var running []*child
	start := func(millis int) {
		cmd := startHelper(t, "semholders", append(env, "MILLIS="+strconv.Itoa(millis))...)
		mu.Lock()
		running = append(running, cmd)
		mu.Unlock()
	}
	for range 3 {
		start(3000)
	}
	for range 2 { // kill one now and then, start another
		time.Sleep(700 * time.Millisecond) // the load runs meanwhile
		mu.Lock()
		victim := running[0]
		running = running[1:]
		mu.Unlock()
		victim.kill()
		victim.wait(t, 10*time.Second)
		start(1500)
	}
	for _, cmd := range running {
		if err := cmd.wait(t, time.Minute); err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	stats, err := newRedis(t).HGetAll(bg(), name+":stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	grants, _ := strconv.Atoi(stats["grants"])
	if stats["over"] != "" || grants < 100 {
		t.Fatalf("oracle: %v; want no entry over the limit of %d, and >= 100 grants", stats, semLimit)
	}
	t.Logf("oracle: %v", stats)
}

// P10: a process holding every permit is killed; the waiters get permits
// once the leases end, within a lease and a margin of the kill.
func TestSemaphore_crashedHolderPermitsReturn(t *testing.T) {
	name := "p10h-" + strconv.Itoa(rand.IntN(1e9))
	cmd := startHelperSaying(t, "semhog", "holding", "ADDR="+standaloneAddr(t), "NAME="+name)
	c := newClient(t, newRedis(t), &Options{Prefix: name})
	s := c.Semaphore("sem", semLimit)
	if _, err := s.TryAcquire(t.Context()); err == nil {
		t.Fatal("TryAcquire succeeded while the hog held every permit")
	}
	killed := time.Now()
	cmd.kill()
	var wg sync.WaitGroup
	for range semLimit {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			p, err := s.Acquire(ctx)
			if err != nil {
				t.Errorf("Acquire after the kill = %v", err)
				return
			}
			if d := time.Since(killed); d > semTTL+time.Second {
				t.Errorf("permit after %v; want within the %v lease + 1s", d, semTTL)
			}
			_ = p // held until the test ends: all five must be had at once
		})
	}
	waitGroup(t, &wg, 30*time.Second, "the waiters' permits")
}

// helperSemWaiter queues for the key "sem" (limit 1) and says "queued" once
// its waiter is asleep in the queue, then waits to be killed.
func helperSemWaiter() int {
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("ADDR")})
	asleep := make(chan struct{}, 8)
	c, _ := New(rdb, &Options{Prefix: os.Getenv("NAME"), Observer: queuedSignal{ch: asleep}})
	go c.Semaphore("sem", 1).Acquire(context.Background())
	<-asleep // queued,
	<-asleep // then subscribed and looked again
	fmt.Println("queued")
	return awaitKill("semwaiter")
}

// queuedSignal signals every Queued event.
type queuedSignal struct {
	BaseObserver
	ch chan struct{}
}

func (q queuedSignal) Queued(context.Context, QueueEvent) {
	select {
	case q.ch <- struct{}{}:
	default:
	}
}

// A waiter killed at the head of the queue (kill -9: it never leaves)
// holds up the live waiter behind it for about the offer's grace, a few
// hundred milliseconds, not its whole waiterLease.
func TestSemaphore_killedHeadWaiterCostsAFewHundredMilliseconds(t *testing.T) {
	t.Run("default grace", func(t *testing.T) { testDeadHead(t, 750*time.Millisecond) })
	// The live waiter, told that the permit is offered to the one ahead,
	// looks again 1.2 graces later and finds the dead head's place lapsed.
	// Had the offer not cut that place short, it would cut it then and
	// wait another grace (2.2 in all). A grace of 500ms tells the two apart
	// on a loaded machine (and stays under the waiter's own renewal tick).
	defer func(g time.Duration) { semOfferGrace = g }(semOfferGrace)
	semOfferGrace = 500 * time.Millisecond
	t.Run("500ms grace", func(t *testing.T) { testDeadHead(t, semOfferGrace*7/10) })
}

// testDeadHead kills the head of a semaphore's queue, releases the permit,
// and fails unless the live waiter behind gets it within the grace and
// slack.
func testDeadHead(t *testing.T, slack time.Duration) {
	name := "deadhead-" + strconv.Itoa(rand.IntN(1e9))
	c := newClient(t, newRedis(t), &Options{Prefix: name})
	s := c.Semaphore("sem", 1)
	held, err := s.Acquire(t.Context(), WithTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	head := startHelperSaying(t, "semwaiter", "queued", "ADDR="+standaloneAddr(t), "NAME="+name)
	asleep := make(chan struct{}, 8)
	live := newClient(t, newRedis(t), &Options{Prefix: name, Observer: queuedSignal{ch: asleep}})
	got := make(chan error, 1)
	go func() {
		p, err := live.Semaphore("sem", 1).Acquire(t.Context())
		if err == nil {
			p.Release(bg())
		}
		got <- err
	}()
	recv(t, asleep, 10*time.Second, "the live waiter to queue")
	recv(t, asleep, 10*time.Second, "the live waiter to sleep")
	head.kill()
	head.wait(t, 10*time.Second)
	released := time.Now()
	held.Release(t.Context())
	if err := recv(t, got, 10*time.Second, "the live waiter"); err != nil {
		t.Fatalf("live waiter = %v", err)
	}
	d := time.Since(released)
	t.Logf("a dead head of the queue cost the waiter behind it %v", d)
	if d > semOfferGrace+slack {
		t.Fatalf("the waiter behind a dead head got the permit %v after the release; want about the %v grace", d, semOfferGrace)
	}
}

// P31: processes that disagree on a semaphore's limit (3 and 5, as two
// builds during a deploy) never hold more permits at once than the
// smallest limit of the current holders and the requester; the
// disagreement is reported to the Observer and logged.
func TestSemaphore_limitsAgreeAcrossBuilds(t *testing.T) {
	name := "limits-" + strconv.Itoa(rand.IntN(1e9))
	mismatches := make(chan LimitEvent, 64)
	logs := make(chan slog.Record, 64)
	obs := limitSignal{ch: mismatches}
	three := newClient(t, newRedis(t), &Options{Prefix: name, Observer: obs, Logger: slog.New(chanHandler{logs})})
	five := newClient(t, newRedis(t), &Options{Prefix: name, Observer: obs, Logger: slog.New(chanHandler{logs})})
	var mu sync.Mutex
	holding := map[int]int{} // holder -> its limit
	over := ""
	var wg sync.WaitGroup
	for i := range 16 {
		c, limit := three, 3
		if i%2 == 1 {
			c, limit = five, 5
		}
		wg.Go(func() {
			for range 20 {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				p, err := c.Semaphore("sem", limit).Acquire(ctx)
				cancel()
				if err != nil {
					t.Errorf("Acquire(limit %d) = %v", limit, err)
					return
				}
				mu.Lock()
				holding[i] = limit
				smallest := limit
				for _, l := range holding {
					smallest = min(smallest, l)
				}
				if len(holding) > smallest && over == "" {
					over = fmt.Sprintf("%d holders with limits %v", len(holding), holding)
				}
				mu.Unlock()
				time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
				mu.Lock()
				delete(holding, i) // the holder stops believing before it releases
				mu.Unlock()
				p.Release(bg())
			}
		})
	}
	waitGroup(t, &wg, 2*time.Minute, "the holders")
	if over != "" {
		t.Fatalf("over the smallest limit: %s", over)
	}
	e := recv(t, mismatches, 5*time.Second, "the disagreement reported to the Observer")
	if e.Key != "sem" || (e.Limit != 3 && e.Limit != 5) || e.Other+e.Limit != 8 {
		t.Fatalf("LimitMismatch = %+v; want the key and limits 3 and 5", e)
	}
	r := recv(t, logs, 5*time.Second, "a warning")
	if r.Level != slog.LevelWarn || !strings.Contains(r.Message, "different limits") {
		t.Fatalf("logged %v %q; want a warning about the limits", r.Level, r.Message)
	}
}

// limitSignal hands on every LimitMismatch event.
type limitSignal struct {
	BaseObserver
	ch chan LimitEvent
}

func (l limitSignal) LimitMismatch(_ context.Context, e LimitEvent) {
	select {
	case l.ch <- e:
	default:
	}
}
