package dlockrt

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dlock-go/dlock/internal/redistest"
)

// P15 for lock waiters: every contended key costs a subscription only while
// somebody waits on it; afterwards the client holds no channel, the server
// lists none, and no goroutine is left.
func TestLock_subscriptionsReturnToZero(t *testing.T) {
	rdb := newRedis(t)
	prefix := "p15-" + strconv.Itoa(int(time.Now().UnixNano()%1e9))
	holder, err := New(rdb, &Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	waiter, err := New(rdb, &Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	n := 2000
	if testing.Short() {
		n = 200
	}
	var waiting sync.Map // key -> chan struct{} closed when its waiter waits
	testHookLockWait = func(k string) {
		if ch, ok := waiting.Load(k); ok {
			close(ch.(chan struct{}))
		}
	}
	t.Cleanup(func() { testHookLockWait = nil })
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		send(t, sem, struct{}{}, time.Minute, "one of 64 lock-and-wait rounds to finish")
		wg.Go(func() {
			defer func() { <-sem }()
			k := "k" + strconv.Itoa(i)
			l, err := holder.Once(t.Context(), k)
			if err != nil {
				t.Errorf("Once(%s) = %v", k, err)
				return
			}
			got := make(chan error, 1)
			waits := make(chan struct{})
			waiting.Store(k, waits)
			go func() {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				l2, err := waiter.Lock(ctx, k)
				if err == nil {
					err = l2.Release(ctx)
				}
				got <- err
			}()
			if _, ok := recvGo(t, waits, 10*time.Second, "the waiter of "+k+" to wait"); !ok {
				return
			}
			l.Release(t.Context())
			if err, ok := recvGo(t, got, 20*time.Second, "Lock("+k+") to return"); ok && err != nil {
				t.Errorf("Lock(%s) = %v", k, err)
			}
		})
	}
	waitGroup(t, &wg, time.Minute, "the last lock-and-wait rounds")
	redistest.WaitFor(t, 5*time.Second, "the waiter's channels to be unsubscribed", func(ctx context.Context) bool {
		chans, err := rdb.PubSubShardChannels(ctx, prefix+":*").Result()
		return err == nil && len(chans) == 0 && waiter.mux.numChannels() == 0
	})
	holder.Close()
	waiter.Close()
	goleak.VerifyNone(t, goleak.IgnoreCurrent())
}

// P15 over many operations: locks, contended locks, fanouts and semaphore
// permits on ever new keys leave nothing behind in the client, so its heap
// is flat from the first phase to the last. make test runs 25,000
// operations on as many keys; make soak (DLOCK_SOAK) runs 10⁶ over 10⁵.
func TestSoak_heapFlat(t *testing.T) {
	ops, keys := 25_000, 25_000
	if os.Getenv("DLOCK_SOAK") != "" {
		ops, keys = 1_000_000, 100_000
	}
	const phases = 5
	rdb := newRedis(t)
	prefix := "heap-" + runID
	c := newClient(t, rdb, &Options{Prefix: prefix})
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	op := func(ctx context.Context, i int) error {
		k := "k" + strconv.Itoa(i%keys)
		switch i % 4 {
		case 0:
			l, err := c.Once(ctx, k)
			if err != nil {
				return err
			}
			return l.Release(ctx)
		case 1:
			_, err := c.Fanout(ctx, k, func(context.Context) ([]byte, error) { return []byte("v"), nil })
			return err
		case 2:
			return c.Semaphore(k, 2).Do(ctx, func(context.Context) error { return nil })
		default: // two callers of one key: one of them may wait, subscribed
			errs := make(chan error, 2)
			for range 2 {
				go func() {
					l, err := c.Lock(ctx, k)
					if err == nil {
						err = l.Release(ctx)
					}
					errs <- err
				}()
			}
			// Each Lock and Release returns by ctx's deadline.
			var err error
			for range 2 {
				e, ok := recvGo(t, errs, 20*time.Second, "a contended Lock and Release of "+k)
				if !ok {
					return nil // reported by recvGo, or the test is over
				}
				err = errors.Join(err, e)
			}
			return err
		}
	}
	var first uint64
	per := ops / phases
	for p := range phases {
		var wg sync.WaitGroup
		var failed atomic.Int64
		sem := make(chan struct{}, 32)
		for i := p * per; i < (p+1)*per; i++ {
			send(t, sem, struct{}{}, time.Minute, "one of 32 operations to finish")
			wg.Go(func() {
				defer func() { <-sem }()
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				if err := op(ctx, i); err != nil && failed.Add(1) == 1 {
					t.Errorf("operation %d: %v", i, err)
				}
			})
		}
		waitGroup(t, &wg, time.Minute, "the phase's last operations")
		if t.Failed() {
			t.FailNow()
		}
		h := heap()
		t.Logf("after %d operations: heap %d KiB, %d channels", (p+1)*per, h>>10, c.mux.numChannels())
		if p == 0 {
			first = h
			continue
		}
		if limit := first + max(first/10, 512<<10); h > limit {
			t.Errorf("heap after %d operations = %d KiB; after the first %d it was %d KiB (limit %d KiB)",
				(p+1)*per, h>>10, per, first>>10, limit>>10)
		}
	}
	redistest.WaitFor(t, 5*time.Second, "the client's channels to be unsubscribed", func(ctx context.Context) bool {
		chans, err := rdb.PubSubShardChannels(ctx, prefix+":*").Result()
		return err == nil && len(chans) == 0 && c.mux.numChannels() == 0
	})
	c.Close()
	goleak.VerifyNone(t, goleak.IgnoreCurrent())
}

// Close in the middle of traffic — locks, waits, fanouts and semaphore
// waiters — ends every call (ErrClosed for the calls that begin after it),
// releases what was held, and leaves no goroutine behind.
func TestClose_duringTraffic(t *testing.T) {
	rdb := newRedis(t)
	c, err := New(rdb, &Options{Prefix: "close-" + runID})
	if err != nil {
		t.Fatal(err)
	}
	var ops atomic.Int64
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			k := "k" + strconv.Itoa(i%2)
			for t.Context().Err() == nil { // until ErrClosed, or the test failed before Close
				var err error
				switch i % 4 {
				case 0:
					var l *Lock
					if l, err = c.Lock(t.Context(), k); err == nil {
						err = l.Release(t.Context())
					}
				case 1:
					_, err = c.Fanout(t.Context(), k, func(context.Context) ([]byte, error) {
						time.Sleep(time.Millisecond)
						return []byte("v"), nil
					})
				default:
					err = c.Semaphore(k, 1).Do(t.Context(), func(context.Context) error {
						time.Sleep(time.Millisecond)
						return nil
					})
				}
				ops.Add(1)
				if errors.Is(err, ErrClosed) {
					return
				}
			}
		})
	}
	// And waiters blocked on keys another client holds.
	other := newClient(t, rdb, &Options{Prefix: "close-" + runID})
	if _, err := other.Once(t.Context(), "held"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Semaphore("held", 1).Acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	blocked := make(chan error, 2)
	go func() {
		_, err := c.Lock(ctx, "held")
		blocked <- err
	}()
	go func() {
		_, err := c.Semaphore("held", 1).Acquire(ctx)
		blocked <- err
	}()
	redistest.WaitFor(t, 10*time.Second, "some traffic and the blocked waiters", func(context.Context) bool {
		return ops.Load() > 200 && c.mux.numChannels() >= 2
	})
	c.Close()
	for range 2 { // at once, not when their wait would have ended anyway
		if err := recv(t, blocked, 2*time.Second, "the blocked waiters to return"); !errors.Is(err, ErrClosed) {
			t.Errorf("a waiter blocked at Close got %v; want ErrClosed", err)
		}
	}
	waitGroup(t, &wg, 30*time.Second, "the traffic to end with ErrClosed")
	if n, err := semQueued(t.Context(), rdb, other.Semaphore("held", 1)); err != nil || n != 0 {
		t.Errorf("semaphore queue after Close: %d waiters, %v; want none (the closed client's waiter left)", n, err)
	}
	other.Close()
	redistest.WaitFor(t, 5*time.Second, "nothing left held", func(ctx context.Context) bool {
		return len(scanAll(t, rdb, "close-"+runID+":*:lock")) == 0
	})
	goleak.VerifyNone(t, goleak.IgnoreCurrent())
}
