package dlockrt

import (
	"context"
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
	helpers["semholders"] = helperSemHolders
	helpers["semhog"] = helperSemHog
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
					id := newOwnerID()
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
