package dlockrt

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/redistest"
)

// Port of the Node package's semaphore test: limit 1, 50 tasks over 10
// clients, each sees a strictly sequential counter.
func TestSemaphore_limitOneIsSequential(t *testing.T) {
	rdb := newRedis(t)
	k := key(t, "k")
	counter := key(t, "counter")
	var mu sync.Mutex
	var seen []int
	var wg sync.WaitGroup
	for i, c := range tenClients(t, nil) {
		for range 5 {
			wg.Go(func() {
				err := c.Semaphore(k, 1).Do(t.Context(), func(ctx context.Context) error {
					n, err := rdb.Get(ctx, counter).Int()
					if err != nil && err.Error() != "redis: nil" {
						return err
					}
					mu.Lock()
					seen = append(seen, n)
					mu.Unlock()
					return rdb.Set(ctx, counter, n+1, 0).Err()
				})
				if err != nil {
					t.Errorf("client %d: Do = %v", i, err)
				}
			})
		}
	}
	waitGroup(t, &wg, time.Minute, "the 50 tasks")
	for i, n := range seen {
		if n != i {
			t.Fatalf("counters = %v; want 0..49 in order", seen)
		}
	}
	if len(seen) != 50 {
		t.Fatalf("%d tasks ran; want 50", len(seen))
	}
}

// Waiters are served in arrival order.
func TestSemaphore_Acquire_servesInArrivalOrder(t *testing.T) {
	rdb := newRedis(t)
	c := newClient(t, newRedis(t), nil)
	k := key(t, "k")
	s := c.Semaphore(k, 2)
	var held []*Permit
	for range 2 {
		p, err := s.TryAcquire(t.Context())
		if err != nil {
			t.Fatalf("TryAcquire = %v", err)
		}
		held = append(held, p)
	}
	if _, err := s.TryAcquire(t.Context()); !errors.Is(err, ErrNotAcquired) {
		t.Fatalf("TryAcquire when full = %v; want ErrNotAcquired", err)
	}
	granted := make(chan int, 6)
	queued := make(chan struct{})
	testHookSemQueued = func(string) {
		sendGo(t, queued, struct{}{}, 10*time.Second, "the test to see the waiter queued")
	}
	t.Cleanup(func() { testHookSemQueued = nil })
	for i := range 6 {
		wc := newClient(t, newRedis(t), nil) // a waiter per client, as per process
		go func() {
			p, err := wc.Semaphore(k, 2).Acquire(t.Context())
			if err != nil {
				t.Errorf("waiter %d: %v", i, err)
				return
			}
			granted <- i
			<-time.After(time.Millisecond) // hold briefly
			p.Release(bg())
		}()
		recv(t, queued, 10*time.Second, "waiter "+strconv.Itoa(i)+" to queue") // arrival order: the next waiter starts once this one is queued
	}
	if n, _ := semQueued(bg(), rdb, s); n != 6 {
		t.Fatalf("queue length = %d; want 6", n)
	}
	for _, p := range held {
		p.Release(t.Context())
	}
	var order []int
	for range 6 {
		order = append(order, recv(t, granted, 10*time.Second, "the waiters' permits"))
	}
	// With two permits, waiter i+1 may be granted alongside i, never
	// before i-1.
	for pos, i := range order {
		if i < pos-1 || i > pos+1 {
			t.Fatalf("grant order = %v; want arrival order (give or take the concurrent permit)", order)
		}
	}
}

// Release is owner-checked and idempotent.
func TestPermit_Release_twiceAndForeignChangeNothing(t *testing.T) {
	rdb := newRedis(t)
	c := newClient(t, newRedis(t), nil)
	s := c.Semaphore(key(t, "k"), 2)
	a, err := s.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Release(t.Context()); err != nil {
		t.Fatalf("Release = %v", err)
	}
	if err := a.Release(t.Context()); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("second Release = %v; want ErrNotHeld", err)
	}
	if ok, err := s.release(t.Context(), "somebody-else", ""); ok || err != nil {
		t.Fatalf("foreign release = %v, %v; want false, nil", ok, err)
	}
	if n, _ := semHolders(bg(), rdb, s); n != 1 {
		t.Fatalf("holders after double and foreign release = %d; want 1 (b)", n)
	}
	if err := b.Extend(t.Context(), time.Minute); err != nil {
		t.Fatalf("b Extend = %v", err)
	}
	b.Release(t.Context())
}

// A holder that stops renewing loses its permit at its lease end, and the
// waiter gets it then (here: no watchdog, the holder just sits).
func TestSemaphore_expiredHolderFreesPermit(t *testing.T) {
	c := newClient(t, newRedis(t), nil)
	s := c.Semaphore(key(t, "k"), 1)
	p, err := s.Acquire(t.Context(), WithTTL(200*time.Millisecond), WithWatchdog(false))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	start := time.Now()
	p2, err := s.Acquire(ctx)
	if err != nil {
		t.Fatalf("Acquire after the holder's lease = %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("waited %v; want about the 200ms lease", d)
	}
	if err := p.Release(t.Context()); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("expired holder's Release = %v; want ErrNotHeld", err)
	}
	p2.Release(t.Context())
}

// A waiter whose context ends leaves the queue at once: it does not block
// the line behind it.
func TestSemaphore_Acquire_cancelledWaiterLeavesQueue(t *testing.T) {
	rdb := newRedis(t)
	c := newClient(t, newRedis(t), nil)
	s := c.Semaphore(key(t, "k"), 1)
	p, _ := s.Acquire(t.Context())
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := s.Acquire(ctx); !errors.Is(err, ErrNotAcquired) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire past its context = %v; want ErrNotAcquired and DeadlineExceeded", err)
	}
	// It leaves in the background; well before its 3s place would lapse.
	redistest.WaitFor(t, 500*time.Millisecond, "the waiter to leave the queue", func(ctx context.Context) bool {
		n, err := semQueued(ctx, rdb, s)
		return err == nil && n == 0
	})
	p.Release(t.Context())
}

func TestSemaphore_badInput(t *testing.T) {
	c := newClient(t, newRedis(t), nil)
	for name, s := range map[string]*Semaphore{
		"limit 0":   c.Semaphore("k", 0),
		"empty key": c.Semaphore("", 1),
		"nil":       nil,
	} {
		if _, err := s.Acquire(t.Context()); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Acquire = %v; want ErrInvalid", name, err)
		}
	}
	var p *Permit
	if err := p.Release(t.Context()); !errors.Is(err, ErrNotHeld) {
		t.Errorf("nil Permit Release = %v", err)
	}
}

// semQueued counts the semaphore's queued waiters (see sem_acquire.lua).
func semQueued(ctx context.Context, rdb redis.Cmdable, s *Semaphore) (int64, error) {
	return rdb.ZCount(ctx, s.rkey, "1e13", "(2e13").Result()
}

// semHolders counts the semaphore's holders, those whose lease ended but
// that were not purged yet included.
func semHolders(ctx context.Context, rdb redis.Cmdable, s *Semaphore) (int64, error) {
	return rdb.ZCount(ctx, s.rkey, "(0", "(1e13").Result()
}
