package dlockrt

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
)

// P20: locks taken while Close runs are never left held: when Close
// returns, every lock any caller got has its Done closed, and no key is
// held in Redis; callers that lost the race get ErrClosed.
func TestClose_isFinal(t *testing.T) {
	rdb := newRedis(t)
	prefix := "final-" + runID + strconv.Itoa(int(keySeq.Add(1)))
	c, err := New(newRedis(t), &Options{Prefix: prefix, TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []*Lock
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				l, err := c.Once(context.Background(), "k"+strconv.Itoa(g)+"."+strconv.Itoa(i))
				switch {
				case errors.Is(err, ErrClosed):
					return
				case err != nil:
					t.Errorf("Once = %v", err)
					return
				}
				mu.Lock()
				got = append(got, l)
				mu.Unlock()
			}
		})
	}
	time.Sleep(100 * time.Millisecond) // let the loops acquire a few hundred locks
	c.Close()
	mu.Lock()
	locks := got
	mu.Unlock()
	for _, l := range locks {
		select {
		case <-l.Done():
			// ErrClosed; or ErrLost for a lease that a loaded machine
			// could not renew before Close.
			if err := l.Err(); !errors.Is(err, ErrClosed) && !errors.Is(err, ErrLost) {
				t.Fatalf("lock %s: Err after Close = %v; want ErrClosed", l.Key(), err)
			}
		default:
			t.Fatalf("lock %s still believed held after Close returned", l.Key())
		}
	}
	close(stop)
	waitGroup(t, &wg, 30*time.Second, "the lockers to stop")
	if held := scanAll(t, rdb, prefix+":*"); len(held) != 0 {
		t.Fatalf("after Close: %d of %d locks still held in Redis: %v", len(held), len(locks), held[:min(5, len(held))])
	}
	if len(locks) == 0 {
		t.Fatal("no lock was taken before Close")
	}
}

// P20: Close returns within OpTimeout (plus a little) when Redis does not
// answer, even with locks, permits and fanouts held.
func TestClose_boundedWithRedisUnreachable(t *testing.T) {
	srv := redistest.StartServer(t)
	c := newClient(t, srv.Client(), &Options{OpTimeout: 300 * time.Millisecond})
	l, err := c.Once(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Semaphore("s", 2).Acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	go c.Fanout(context.Background(), "f", func(ctx context.Context) ([]byte, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	recv(t, started, 10*time.Second, "the job to start")
	srv.Pause()
	defer srv.Resume()
	if d := elapsed(func() { c.Close() }); d > 300*time.Millisecond+200*time.Millisecond {
		t.Fatalf("Close with Redis paused took %v; want <= OpTimeout (300ms) + 200ms", d)
	}
	if !errors.Is(l.Err(), ErrClosed) {
		t.Fatalf("lock Err after Close = %v; want ErrClosed", l.Err())
	}
}

// Item 6 of issue 10: when the watchdog finds one key of a multi-lock lost,
// the multi-lock ends and its other keys are released (not kept extended).
// Done closes first (another may hold the lost key), then the renewal gives
// back the rest; Close waits for it.
func TestMultiLock_partialLossReleasesTheRest(t *testing.T) {
	rdb := newRedis(t)
	c := newClient(t, newRedis(t), nil)
	k1, k2 := key(t, "1"), key(t, "2")
	m, err := c.MultiWith(t.Context(), []string{k1, k2}, WithTTL(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	rdb.Del(bg(), lockKey(mustTag(t, c, k1)))
	select {
	case <-m.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("multi-lock not ended after one of its keys was lost")
	}
	if !errors.Is(m.Err(), ErrLost) {
		t.Fatalf("Err = %v; want ErrLost", m.Err())
	}
	c.Close() // the lost lease is no longer the client's to release: this waits for the renewal's give-back
	if v, err := rdb.Get(bg(), lockKey(mustTag(t, c, k2))).Result(); err == nil && heldValue(v) {
		t.Fatalf("the other key is still held (%q) after the loss", v)
	}
}

// A running job's context, at Close, says ErrClosed (not ErrTimeout), and
// its callers get ErrClosed.
func TestClose_jobContextCauseIsErrClosed(t *testing.T) {
	c, err := New(newRedis(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	started, cause := make(chan struct{}), make(chan error, 1)
	got := make(chan error, 1)
	go func() {
		_, err := c.Fanout(context.Background(), key(t, "k"), func(ctx context.Context) ([]byte, error) {
			close(started)
			<-ctx.Done()
			cause <- context.Cause(ctx)
			return nil, ctx.Err()
		})
		got <- err
	}()
	recv(t, started, 10*time.Second, "the job to start")
	c.Close()
	if err := recv(t, cause, 10*time.Second, "the job's context to end at Close"); !errors.Is(err, ErrClosed) {
		t.Fatalf("job's context cause at Close = %v; want ErrClosed", err)
	}
	if err := recv(t, got, 10*time.Second, "the caller's Fanout to return at Close"); !errors.Is(err, ErrClosed) {
		t.Fatalf("caller at Close = %v; want ErrClosed", err)
	}
}

// P20 with a waiter subscribed: Close stays bounded when Redis hangs while
// the subscription's health check pings it (go-redis does not bound that
// ping by its context). The waiter waits through the outage (it would be
// told of it after OpTimeout otherwise), so it is still waiting at Close.
func TestClose_boundedWithASubscriberAndRedisHung(t *testing.T) {
	srv := redistest.StartServer(t)
	leader := newClient(t, srv.Client(), nil)
	c := newClient(t, srv.Client(), &Options{OpTimeout: 300 * time.Millisecond})
	started := make(chan struct{})
	go leader.Fanout(context.Background(), "k", func(ctx context.Context) ([]byte, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	recv(t, started, 10*time.Second, "the leader's job to start")
	waiting := make(chan error, 1)
	go func() {
		_, err := c.Fanout(context.Background(), "k", func(context.Context) ([]byte, error) { return nil, nil }, WithTimeout(time.Minute), WaitThroughOutages())
		waiting <- err
	}()
	redistest.WaitFor(t, 5*time.Second, "the waiter's subscription", func(context.Context) bool { return c.mux.numChannels() == 1 && waiterConfirmed(c) })
	srv.Pause()
	defer srv.Resume()
	time.Sleep(healthInterval + 500*time.Millisecond) // the health check's pings are in flight
	if d := elapsed(func() { c.Close() }); d > 300*time.Millisecond+300*time.Millisecond {
		t.Fatalf("Close with a subscriber and Redis paused took %v; want <= OpTimeout (300ms) + 300ms", d)
	}
	if err := recv(t, waiting, 10*time.Second, "the waiter's Fanout to return at Close"); !errors.Is(err, ErrClosed) {
		t.Fatalf("waiter at Close = %v; want ErrClosed", err)
	}
}
