package dlocktest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	dlockrt "github.com/dlock-go/dlock/runtime"
)

func TestServer_runsEveryPrimitive(t *testing.T) {
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var cs []*dlockrt.Client
	for range 3 {
		rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
		defer rdb.Close()
		c, err := dlockrt.New(rdb, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs = append(cs, c)
	}
	ctx := t.Context()

	l, err := cs[0].Once(ctx, "k", dlockrt.WithTTL(time.Minute))
	if err != nil {
		t.Fatalf("Once = %v", err)
	}
	if _, err := cs[1].Once(ctx, "k"); !errors.Is(err, dlockrt.ErrNotAcquired) {
		t.Fatalf("second Once = %v; want ErrNotAcquired", err)
	}
	got := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		l2, err := cs[1].Lock(wctx, "k")
		if err == nil {
			l2.Release(ctx)
		}
		got <- err
	}()
	// Release once the waiter listens, so the release must wake it.
	for deadline := time.Now().Add(5 * time.Second); s.PubSubNumSub("dlock:{k}:lock:ch")["dlock:{k}:lock:ch"] == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the waiter never subscribed")
		}
		time.Sleep(time.Millisecond)
	}
	l.Release(ctx)
	if err := recv(t, got, 10*time.Second, "the waiter's Lock after the release"); err != nil {
		t.Fatalf("Lock after release = %v", err)
	}

	var runs atomic.Int32
	var wg sync.WaitGroup
	started, finish := make(chan struct{}), make(chan struct{})
	for i, c := range cs {
		wg.Go(func() {
			b, err := c.Fanout(ctx, "f", func(context.Context) ([]byte, error) {
				runs.Add(1)
				close(started)
				recvGo(t, finish, time.Minute, "the test to let the job finish")
				return []byte("v"), nil
			})
			if err != nil || string(b) != "v" {
				t.Errorf("Fanout = %q, %v", b, err)
			}
		})
		if i == 0 {
			recv(t, started, 10*time.Second, "the leader's job to start")
		}
	}
	close(finish)
	waitGroup(t, &wg, 30*time.Second, "the Fanout callers")
	if runs.Load() != 1 {
		t.Fatalf("fanout runs = %d; want 1", runs.Load())
	}

	sem := cs[2].Semaphore("s", 1)
	p, err := sem.Acquire(ctx)
	if err != nil {
		t.Fatalf("Acquire = %v", err)
	}
	if _, err := sem.TryAcquire(ctx); !errors.Is(err, dlockrt.ErrNotAcquired) {
		t.Fatalf("TryAcquire when full = %v", err)
	}
	p.Release(ctx)
}

// The test's waits are bounded: a receive or a WaitGroup that takes
// longer than its bound (several times what it normally takes) fails the
// test, naming what it awaited.

// recv returns what ch delivers within d. When d passes first, it fails
// the test, naming what it awaited. Only the test's goroutine may call it.
func recv[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
	}
	t.Fatalf("timed out after %v waiting for %s", d, what)
	var zero T
	return zero
}

// recvGo is recv for the goroutines a test starts, which must not call
// t.Fatalf: when d passes first, it reports the timeout with t.Errorf;
// when the test ends first (its Context is done), it reports nothing.
// Either way it returns ok false.
func recvGo[T any](t testing.TB, ch <-chan T, d time.Duration, what string) (v T, ok bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v = <-ch:
		return v, true
	case <-t.Context().Done():
	case <-timer.C:
		t.Errorf("timed out after %v waiting for %s", d, what)
	}
	return v, false
}

// waitGroup waits for wg within d. When d passes first, it fails the test,
// naming what it awaited, and leaves the goroutines running. Only the
// test's goroutine may call it.
func waitGroup(t testing.TB, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	recv(t, done, d, what)
}
