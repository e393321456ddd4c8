package dlockrt

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
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

// queuedHook makes testHookSemQueued tell the test, on queued, each time a
// waiter of key k queues; it is unset when the test ends.
func queuedHook(t *testing.T, k string) <-chan struct{} {
	queued := make(chan struct{}, 16)
	testHookSemQueued = func(key string) {
		if key == k {
			sendGo(t, queued, struct{}{}, 10*time.Second, "the test to see a waiter queue")
		}
	}
	t.Cleanup(func() { testHookSemQueued = nil })
	return queued
}

// queuedEvents is an Observer that hands on every Queued event: a waiter
// found no permit. A waiter's second one comes after it subscribed and
// looked again, just before it sleeps.
type queuedEvents struct {
	BaseObserver
	ch chan struct{}
}

func newQueuedEvents() *queuedEvents { return &queuedEvents{ch: make(chan struct{}, 64)} }

func (q *queuedEvents) Queued(context.Context, QueueEvent) {
	select {
	case q.ch <- struct{}{}:
	default:
	}
}

// asleep waits until the waiter observed by q sleeps in the queue.
func (q *queuedEvents) asleep(t *testing.T) {
	t.Helper()
	for range 2 {
		recv(t, q.ch, 10*time.Second, "the waiter to queue, subscribe and look again")
	}
}

// P10: a waiter that died in the queue (its process cut off: it no longer
// renews its place) does not block the line: the waiter behind it gets the
// permit once the dead one's place lapses, the offer's grace after the
// release.
func TestSemaphore_deadWaiterLeavesTheQueue(t *testing.T) {
	p := redistest.StartProxy(t, standaloneAddr(t))
	dead := newClient(t, redisAt(t, p.Addr()), nil)
	h, w := newClient(t, newRedis(t), nil), newClient(t, newRedis(t), nil)
	k := key(t, "k")
	held, err := h.Semaphore(k, 1).Acquire(t.Context(), WithTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	queued := queuedHook(t, k)
	dctx, dcancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer dcancel()
	go dead.Semaphore(k, 1).Acquire(dctx)
	recv(t, queued, 10*time.Second, "the doomed waiter to queue")
	p.Cut() // it dies at the head of the line
	defer p.Restore()
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		defer cancel()
		pw, err := w.Semaphore(k, 1).Acquire(ctx)
		if err == nil {
			pw.Release(bg())
		}
		got <- err
	}()
	recv(t, queued, 10*time.Second, "the live waiter to queue")
	held.Release(t.Context())
	var werr error
	d := elapsed(func() { werr = recv(t, got, 20*time.Second, "the live waiter") })
	if werr != nil || d > semOfferGrace+750*time.Millisecond {
		t.Fatalf("live waiter behind a dead one = %v after %v; want the permit about the offer's grace (%v) after the release", werr, d, semOfferGrace)
	}
}

// P10: TryAcquire never overtakes a queued waiter: a permit freed while
// somebody waits is theirs.
func TestSemaphore_TryAcquire_neverOvertakesAQueuedWaiter(t *testing.T) {
	events := newQueuedEvents()
	h, w, x := newClient(t, newRedis(t), nil), newClient(t, newRedis(t), &Options{Observer: events}), newClient(t, newRedis(t), nil)
	k := key(t, "k")
	held, err := h.Semaphore(k, 1).Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	woken, proceed := make(chan struct{}, 1), make(chan struct{})
	var releasedOnce atomic.Bool
	testHookSemWoken = func(key string, _ bool) {
		if key == k && releasedOnce.Load() && sendGo(t, woken, struct{}{}, 10*time.Second, "the test to see the waiter woken") {
			recvGo(t, proceed, 10*time.Second, "the test's TryAcquire")
		}
	}
	t.Cleanup(func() { testHookSemWoken = nil })
	got := make(chan error, 1)
	go func() {
		p, err := w.Semaphore(k, 1).Acquire(t.Context())
		if err == nil {
			p.Release(bg())
		}
		got <- err
	}()
	events.asleep(t)
	releasedOnce.Store(true)
	held.Release(t.Context())
	recv(t, woken, 10*time.Second, "the waiter to be woken by the release")
	if p, err := x.Semaphore(k, 1).TryAcquire(t.Context()); !errors.Is(err, ErrNotAcquired) {
		if p != nil {
			p.Release(bg())
		}
		t.Fatalf("TryAcquire with a waiter queued for the free permit = %v; want ErrNotAcquired", err)
	}
	close(proceed)
	if err := recv(t, got, 10*time.Second, "the waiter"); err != nil {
		t.Fatalf("the queued waiter = %v; want the permit", err)
	}
}

// The scripts, not only the local lease, refuse a permit whose lease ended
// on the server (before anything purged it): sem_extend does not revive
// it, and sem_release does not report it released.
func TestSemaphore_scriptsRefuseAPermitWhoseLeaseEnded(t *testing.T) {
	rdb := newRedis(t)
	c := newClient(t, newRedis(t), nil)
	s := c.Semaphore(key(t, "k"), 1)
	p, err := s.Acquire(t.Context(), WithTTL(200*time.Millisecond), WithWatchdog(false))
	if err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 5*time.Second, "the permit's lease to end on the server", func(ctx context.Context) bool {
		deadline, err := rdb.ZScore(ctx, s.rkey, "h"+p.id).Result()
		now, terr := rdb.Time(ctx).Result()
		return err == nil && terr == nil && float64(now.UnixMilli()) > deadline
	})
	if ok, err := p.extend(t.Context(), time.Minute); ok || err != nil {
		t.Fatalf("sem_extend of a permit whose lease ended = %v, %v; want false", ok, err)
	}
	if ok, err := s.release(t.Context(), p.id, ""); ok || err != nil {
		t.Fatalf("sem_release of a permit whose lease ended = %v, %v; want false", ok, err)
	}
}

// P4 for permits: the watchdog keeps a permit held for as long as its
// holder wants, its renewals keeping the semaphore's key alive too (here
// the key's own TTL was about to end).
func TestPermit_watchdogKeepsALongHold(t *testing.T) {
	rdb := newRedis(t)
	c := newClient(t, newRedis(t), nil)
	s := c.Semaphore(key(t, "k"), 1)
	ttl := 300 * time.Millisecond
	p, err := s.Acquire(t.Context(), WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	rdb.PExpire(bg(), s.rkey, 2*ttl+100*time.Millisecond) // as if the key had idled
	hold := time.NewTimer(5 * ttl)
	defer hold.Stop()
	select {
	case <-hold.C:
	case <-p.Done():
		t.Fatalf("permit lost while held with the watchdog: %v", p.Err())
	}
	if err := p.Release(t.Context()); err != nil {
		t.Fatalf("Release after a long hold = %v", err)
	}
}

// P5 for semaphores: a queued waiter is woken by the release's message, not
// by its own timer.
func TestSemaphore_wokenByRelease(t *testing.T) {
	events := newQueuedEvents()
	h, w := newClient(t, newRedis(t), nil), newClient(t, newRedis(t), &Options{Observer: events})
	k := key(t, "k")
	held, err := h.Semaphore(k, 1).Acquire(t.Context(), WithTTL(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var released atomic.Bool
	wakes := make(chan bool, 16)
	testHookSemWoken = func(key string, byMessage bool) {
		if key == k && released.Load() {
			select {
			case wakes <- byMessage:
			default:
			}
		}
	}
	t.Cleanup(func() { testHookSemWoken = nil })
	got := make(chan error, 1)
	go func() {
		p, err := w.Semaphore(k, 1).Acquire(t.Context())
		if err == nil {
			p.Release(bg())
		}
		got <- err
	}()
	events.asleep(t)
	released.Store(true)
	held.Release(t.Context())
	if byMessage := recv(t, wakes, 10*time.Second, "the waiter to wake"); !byMessage {
		t.Fatal("the waiter woke by its timer; want the release's message")
	}
	if err := recv(t, got, 10*time.Second, "the waiter"); err != nil {
		t.Fatal(err)
	}
}

// P10, arrival order: a newcomer that finds a permit free while somebody
// queued before it is woken for that permit queues behind them; it does
// not take the permit first.
func TestSemaphore_Acquire_newcomerQueuesBehindAWaiter(t *testing.T) {
	events, newcomer := newQueuedEvents(), newQueuedEvents()
	h, w, n := newClient(t, newRedis(t), nil), newClient(t, newRedis(t), &Options{Observer: events}), newClient(t, newRedis(t), &Options{Observer: newcomer})
	k := key(t, "k")
	held, err := h.Semaphore(k, 1).Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	woken, proceed := make(chan struct{}, 1), make(chan struct{})
	var released atomic.Bool
	testHookSemWoken = func(key string, _ bool) {
		if key == k && released.Load() && sendGo(t, woken, struct{}{}, 10*time.Second, "the test to see the waiter woken") {
			recvGo(t, proceed, 10*time.Second, "the newcomer to queue")
		}
	}
	t.Cleanup(func() { testHookSemWoken = nil })
	order := make(chan string, 2)
	acquire := func(c *Client, who string) {
		p, err := c.Semaphore(k, 1).Acquire(t.Context())
		if err != nil {
			t.Errorf("%s: Acquire = %v", who, err)
			order <- who + " failed"
			return
		}
		order <- who
		p.Release(bg())
	}
	go acquire(w, "the waiter")
	events.asleep(t)
	released.Store(true)
	held.Release(t.Context())
	recv(t, woken, 10*time.Second, "the waiter to be woken by the release")
	go acquire(n, "the newcomer")
	select {
	case <-newcomer.ch: // it queued
	case who := <-order:
		t.Fatalf("%s took the permit freed for the waiter queued before it", who)
	case <-time.After(10 * time.Second):
		t.Fatal("timed out after 10s waiting for the newcomer to queue")
	}
	close(proceed)
	if first, second := recv(t, order, 10*time.Second, "the first grant"), recv(t, order, 10*time.Second, "the second grant"); first != "the waiter" || second != "the newcomer" {
		t.Fatalf("grants in the order %q, %q; want the waiter, then the newcomer", first, second)
	}
}
