package dlockrt

import (
	"context"
	"errors"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// P26: keys no longer used leave nothing lasting in Redis: after 10^4
// cycles on distinct keys, every key left expires within FenceTTL (locks),
// ResultTTL (fanouts) or twice the longest lease (semaphores), and none is
// held.
func TestKeys_distinctKeyCyclesLeaveNothingLasting(t *testing.T) {
	rdb := newRedis(t)
	prefix := "pile-" + runID + strconv.Itoa(int(keySeq.Add(1)))
	c := newClient(t, newRedis(t), &Options{Prefix: prefix})
	n := 10000
	if testing.Short() {
		n = 1000
	}
	for i := range n {
		k := strconv.Itoa(i)
		l, err := c.Once(t.Context(), k)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			if _, err := c.Fanout(t.Context(), k, func(context.Context) ([]byte, error) { return nil, nil }); err != nil {
				t.Fatal(err)
			}
			p, err := c.Semaphore(k, 2).Acquire(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Release(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	it := rdb.Scan(t.Context(), 0, prefix+":*", 1000).Iterator()
	keys := 0
	for it.Next(t.Context()) {
		keys++
		ttl, err := rdb.PTTL(t.Context(), it.Val()).Result()
		// -2: expired since the scan saw it; -1: no expiry at all.
		if err != nil || ttl == -1*time.Nanosecond || ttl > c.opts.FenceTTL {
			t.Fatalf("key %s: PTTL %v, %v; want a lifetime within FenceTTL (%v)", it.Val(), ttl, err, c.opts.FenceTTL)
		}
	}
	if held := scanAll(t, rdb, prefix+":*"); len(held) != 0 {
		t.Fatalf("%d keys still held", len(held))
	}
	t.Logf("%d keys left, each expiring within %v", keys, c.opts.FenceTTL)
}

// Push's onDone runs later and on another goroutine, never inside Push or
// Complete: a caller holding a mutex that onDone takes does not deadlock.
func TestPush_onDoneNeverRunsInsideTheCall(t *testing.T) {
	c := newClient(t, newRedis(t), nil)
	k := key(t, "k")
	var mu sync.Mutex
	done := make(chan error, 2)
	onDone := func(_ []byte, err error) {
		mu.Lock()
		mu.Unlock()
		done <- err
	}
	mu.Lock()
	job, err := c.Push(t.Context(), k, onDone)
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Complete(t.Context(), []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	// A stored result found at the join also comes later.
	if _, err := c.Push(t.Context(), k, onDone); !errors.Is(err, ErrNotAcquired) {
		t.Fatalf("second Push = %v; want ErrNotAcquired", err)
	}
	mu.Unlock()
	for range 2 {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("onDone never ran")
		}
	}
}

// New refuses a nil client in every form; a permission refusal is its own
// error, not "redis unavailable".
func TestNew_typedNilAndPermissionErrors(t *testing.T) {
	for name, rdb := range map[string]redis.UniversalClient{
		"nil":                    nil,
		"(*redis.Client)(nil)":   (*redis.Client)(nil),
		"(*redis.ClusterClient)": (*redis.ClusterClient)(nil),
	} {
		if _, err := New(rdb, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("New(%s) = %v; want ErrInvalid", name, err)
		}
	}
	admin := newRedis(t)
	user := "noperm-" + runID
	if err := admin.Do(t.Context(), "ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "-@all", "+hello", "+auth", "+ping").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Do(bg(), "ACL", "DELUSER", user) })
	rdb := redis.NewClient(&redis.Options{Addr: standaloneAddr(t), Username: user, Password: "pw"})
	t.Cleanup(func() { rdb.Close() })
	c := newClient(t, rdb, nil)
	_, err := c.Once(t.Context(), key(t, "k"))
	if !errors.Is(err, ErrNoPermission) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("Once without permission = %v; want ErrNoPermission, not ErrUnavailable", err)
	}
}

// An option a call does not take is an ErrInvalid error, never silently
// ignored.
func TestOptions_ignoredOnesAreRefused(t *testing.T) {
	c := newClient(t, newRedis(t), nil)
	ctx := t.Context()
	job := func(context.Context) ([]byte, error) { return nil, nil }
	for name, err := range map[string]error{
		"Lock WithTimeout":       second(c.Lock(ctx, key(t, "a"), WithTimeout(time.Second))),
		"Lock WithRetries":       second(c.Lock(ctx, key(t, "b"), WithRetries(1, time.Millisecond))),
		"Once WithTimeout":       second(c.Once(ctx, key(t, "c"), WithTimeout(time.Second))),
		"Acquire WithRetries":    second(c.Semaphore(key(t, "d"), 1).Acquire(ctx, WithRetries(1, time.Millisecond))),
		"TryAcquire WithTimeout": second(c.Semaphore(key(t, "e"), 1).TryAcquire(ctx, WithTimeout(time.Second))),
		"Fanout WithWatchdog":    second(c.Fanout(ctx, key(t, "f"), job, WithWatchdog(false))),
		"Fanout WithRetries":     second(c.Fanout(ctx, key(t, "g"), job, WithRetries(1, time.Millisecond))),
		"MultiWith WithTimeout":  second(c.MultiWith(ctx, []string{key(t, "h")}, WithTimeout(time.Second))),
		"Once with a nil Option": second(c.Once(ctx, key(t, "i"), nil)),
	} {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s = %v; want ErrInvalid", name, err)
		}
	}
	// What each call takes still works.
	l, err := c.Lock(ctx, key(t, "ok"), WithTTL(time.Second), WithWatchdog(false))
	if err != nil {
		t.Fatal(err)
	}
	l.Release(ctx)
}

// Lock.Context, MultiLock.Context and Permit.Context cost no goroutine
// while held, and end with the lease's error.
func TestLeaseContexts_costNoGoroutine(t *testing.T) {
	c := newClient(t, newRedis(t), nil)
	ctx := t.Context()
	before := goruntime.NumGoroutine()
	var locks []*Lock
	var ctxs []context.Context
	for i := range 100 {
		l, err := c.Once(ctx, key(t, strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		lctx, cancel := l.Context(ctx)
		defer cancel()
		locks, ctxs = append(locks, l), append(ctxs, lctx)
	}
	if n := goruntime.NumGoroutine() - before; n > 10 {
		t.Fatalf("100 held locks with contexts cost %d goroutines", n)
	}
	for i, l := range locks {
		l.Release(ctx)
		recv(t, ctxs[i].Done(), 10*time.Second, "the released lock's context to end")
		if cause := context.Cause(ctxs[i]); !errors.Is(cause, ErrNotHeld) {
			t.Fatalf("context cause after Release = %v; want ErrNotHeld", cause)
		}
	}
	m, err := c.Multi(ctx, key(t, "m1"), key(t, "m2"))
	if err != nil {
		t.Fatal(err)
	}
	mctx, cancel := m.Context(ctx)
	defer cancel()
	if tok, ok := TokenFromContext(mctx); !ok || tok != m.Tokens()[0] {
		t.Fatalf("multi-lock context token = %d, %v", tok, ok)
	}
	m.Release(ctx)
	recv(t, mctx.Done(), 10*time.Second, "the released multi-lock's context to end")
}

// A Ring is refused, not half working.
func TestNew_refusesRing(t *testing.T) {
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	defer ring.Close()
	if _, err := New(ring, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("New(Ring) = %v; want ErrInvalid", err)
	}
}

// A fanout job that panics fails its run with an error for every caller
// (it is not re-raised: callers may be in other processes), and the
// process goes on.
func TestFanout_panickingJobIsAnErrorForEveryCaller(t *testing.T) {
	a, b := newClient(t, newRedis(t), nil), newClient(t, newRedis(t), nil)
	k := key(t, "k")
	started, release := make(chan struct{}), make(chan struct{})
	errs := make(chan error, 2)
	go func() {
		_, err := a.Fanout(t.Context(), k, func(context.Context) ([]byte, error) {
			close(started)
			recvGo(t, release, time.Minute, "the test to let the job panic")
			panic("boom")
		})
		errs <- err
	}()
	recv(t, started, 10*time.Second, "the panicking job to start")
	go func() {
		_, err := b.Fanout(t.Context(), k, func(context.Context) ([]byte, error) { return []byte("not me"), nil })
		errs <- err
	}()
	waitFanSubscribers(t, k, 1)
	close(release)
	for range 2 {
		if err := recv(t, errs, 30*time.Second, "the callers of the panicking job"); err == nil || !strings.Contains(err.Error(), "panicked: boom") {
			t.Fatalf("caller of a panicking job = %v; want its panic as an error", err)
		}
	}
}

// P23 for the runtime's keys: distinct user keys never share a lock, even
// when one spells another's escaped form (braces and '%' are escaped in
// the hash tag).
func TestKeys_distinctKeysNeverShareALock(t *testing.T) {
	c := newClient(t, newRedis(t), nil)
	base := key(t, "")
	var held []*Lock
	defer func() {
		for _, l := range held {
			l.Release(bg())
		}
	}()
	for _, k := range []string{"a{", "a%7B", "a}", "a%7D", "a%", "a%25", "{a}", "%7Ba%7D", "a%257B"} {
		l, err := c.Once(t.Context(), base+k)
		if err != nil {
			t.Fatalf("Once(%q) with the other keys held = %v; want its own lock", base+k, err)
		}
		held = append(held, l)
	}
}
