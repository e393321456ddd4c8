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
	if err := <-got; err != nil {
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
				<-finish
				return []byte("v"), nil
			})
			if err != nil || string(b) != "v" {
				t.Errorf("Fanout = %q, %v", b, err)
			}
		})
		if i == 0 {
			<-started
		}
	}
	close(finish)
	wg.Wait()
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
