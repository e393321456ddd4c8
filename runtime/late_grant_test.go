package dlockrt

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/redistest"
)

// Found by the soak's checker: a grant whose reply arrives after its lease
// ended in Redis (the process was paused, the network held the reply) was
// returned as a held lock — whose Done closed at once, while another
// client may already hold the key. Now such a grant is asked for again by
// the same owner: the caller gets a live lease, or ErrNotAcquired when
// another took the key meanwhile, or (every reply late) an ErrUnavailable
// error; never a lease that has ended.
func TestLock_grantArrivingAfterItsLeaseIsNotReturned(t *testing.T) {
	srv, proxy, c := lateClient(t)
	admin := srv.Client()
	other := newClient(t, admin, nil)
	ttl := WithTTL(200 * time.Millisecond)
	for _, takenMeanwhile := range []bool{false, true} {
		k := key(t, "late")
		lockKey := c.opts.Prefix + ":{" + k + "}:lock"
		var l *Lock
		err := heldReply(t, proxy, func(ctx context.Context) (err error) {
			l, err = c.Once(ctx, k, ttl)
			return err
		}, func(ctx context.Context) bool { return admin.Exists(ctx, lockKey).Val() == 1 },
			func(ctx context.Context) bool {
				if admin.Exists(ctx, lockKey).Val() != 0 {
					return false
				}
				if takenMeanwhile {
					if _, err := other.Once(ctx, k); err != nil {
						t.Fatal(err)
					}
				}
				return true
			})
		if takenMeanwhile {
			if !errors.Is(err, ErrNotAcquired) || l != nil {
				t.Fatalf("Once whose late grant was taken meanwhile = %v, %v; want ErrNotAcquired", l, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Once with its first reply held past the lease = %v; want the lock, asked for again", err)
		}
		select {
		case <-l.Done():
			t.Fatalf("Once returned a lock whose lease had ended: %v", l.Err())
		default:
		}
		if pttl := admin.PTTL(t.Context(), lockKey).Val(); pttl <= 0 {
			t.Fatalf("the returned lock's key has PTTL %v; want it held", pttl)
		}
		l.Release(t.Context())
	}

	// Every reply late: given back, ErrUnavailable.
	proxy.Delay(150 * time.Millisecond) // each way: every round trip outlasts the lease
	l, err := c.Once(t.Context(), key(t, "always-late"), ttl)
	proxy.Restore()
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "past its 200ms lease") || l != nil {
		t.Fatalf("Once with every reply past the lease = %v, %v; want an ErrUnavailable error", l, err)
	}
	if l, err := other.Once(t.Context(), key(t, "always-late")); err != nil {
		t.Fatalf("Once by another client after the grant was given back = %v; want the key free", err)
	} else {
		l.Release(t.Context())
	}
}

// The same for a semaphore permit.
func TestSemaphore_grantArrivingAfterItsLeaseIsNotReturned(t *testing.T) {
	srv, proxy, c := lateClient(t)
	admin := srv.Client()
	other := newClient(t, admin, nil)
	for _, takenMeanwhile := range []bool{false, true} {
		k := key(t, "late")
		semKey := c.opts.Prefix + ":{" + k + "}:sem"
		deadline := int64(0)
		var p *Permit
		err := heldReply(t, proxy, func(ctx context.Context) (err error) {
			p, err = c.Semaphore(k, 1).TryAcquire(ctx, WithTTL(200*time.Millisecond))
			return err
		}, func(ctx context.Context) bool {
			// The holder's entry: its score is the lease's end on the server's clock.
			zs, _ := admin.ZRangeByScoreWithScores(ctx, semKey, &redis.ZRangeBy{Min: "0", Max: "(10000000000000"}).Result()
			for _, z := range zs {
				if strings.HasPrefix(z.Member.(string), "h") {
					deadline = int64(z.Score)
					return true
				}
			}
			return false
		}, func(ctx context.Context) bool {
			now, err := admin.Time(ctx).Result()
			if err != nil || now.UnixMilli() <= deadline {
				return false
			}
			if takenMeanwhile {
				if _, err := other.Semaphore(k, 1).TryAcquire(ctx); err != nil {
					t.Fatal(err)
				}
			}
			return true
		})
		if takenMeanwhile {
			if !errors.Is(err, ErrNotAcquired) || p != nil {
				t.Fatalf("TryAcquire whose late grant was taken meanwhile = %v, %v; want ErrNotAcquired", p, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("TryAcquire with its first reply held past the lease = %v; want the permit, asked for again", err)
		}
		now, _ := admin.Time(t.Context()).Result()
		if score, err := admin.ZScore(t.Context(), semKey, "h"+p.id).Result(); err != nil || int64(score) <= now.UnixMilli() {
			t.Fatalf("the returned permit's entry: %v, %v (server time %d); want a live lease", score, err, now.UnixMilli())
		}
		p.Release(t.Context())
	}
}

// lateClient is a client that reaches a server of its own through a proxy,
// its scripts loaded and its connection open.
func lateClient(t *testing.T) (*redistest.Server, *redistest.Proxy, *Client) {
	srv := redistest.StartServer(t)
	proxy := redistest.StartProxy(t, srv.Addr())
	rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr(), MaxRetries: -1, PoolSize: 1, ReadTimeout: 10 * time.Second})
	t.Cleanup(func() { rdb.Close() })
	loadScripts(t, rdb)
	return srv, proxy, newClient(t, rdb, &Options{Eviction: EvictionIgnore})
}

// heldReply runs call with the proxy holding the server's replies until
// granted (the grant is in Redis) and then ended (its lease is over there
// too) hold, and returns call's error.
func heldReply(t *testing.T, proxy *redistest.Proxy, call func(context.Context) error, granted, ended func(context.Context) bool) error {
	t.Helper()
	proxy.CutOneWay(false)
	done := make(chan error, 1)
	go func() { done <- call(t.Context()) }()
	redistest.WaitFor(t, 5*time.Second, "the grant in Redis", granted)
	redistest.WaitFor(t, 5*time.Second, "the lease's end in Redis", ended)
	proxy.Restore()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the call never returned")
		return nil
	}
}

// The same for a fanout leader: a join whose reply made it lead after its
// lease had ended in Redis runs no job; the flight joins again, leads
// afresh and runs the job once.
func TestFanout_leadArrivingAfterItsLeaseRunsNoJob(t *testing.T) {
	srv, proxy, c := lateClient(t)
	admin := srv.Client()
	k := key(t, "late")
	fan := fanKey(c.opts.Prefix + ":{" + k + "}")
	var runs atomic.Int32
	var b []byte
	err := heldReply(t, proxy, func(ctx context.Context) (err error) {
		b, err = c.Fanout(ctx, k, func(context.Context) ([]byte, error) {
			runs.Add(1)
			return []byte("v"), nil
		}, WithTTL(200*time.Millisecond), WithTimeout(5*time.Second))
		return err
	}, func(ctx context.Context) bool { return admin.Exists(ctx, fan).Val() == 1 },
		func(ctx context.Context) bool { return admin.Exists(ctx, fan).Val() == 0 })
	if err != nil || string(b) != "v" {
		t.Fatalf("Fanout whose first lead came late = %q, %v; want the job's result", b, err)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("the job ran %d times; want once (not on the late lead)", n)
	}
}

// And for Push: the caller whose first lead came late still gets the Job
// (its flight asked again), and Complete delivers.
func TestPush_leadArrivingAfterItsLeaseIsAskedForAgain(t *testing.T) {
	srv, proxy, c := lateClient(t)
	admin := srv.Client()
	k := key(t, "late")
	fan := fanKey(c.opts.Prefix + ":{" + k + "}")
	outcome := make(chan string, 1)
	var job *Job
	err := heldReply(t, proxy, func(ctx context.Context) (err error) {
		job, err = c.Push(ctx, k, func(b []byte, err error) { outcome <- fmt.Sprint(string(b), err) },
			WithTTL(200*time.Millisecond), WithTimeout(5*time.Second))
		return err
	}, func(ctx context.Context) bool { return admin.Exists(ctx, fan).Val() == 1 },
		func(ctx context.Context) bool { return admin.Exists(ctx, fan).Val() == 0 })
	if err != nil || job == nil {
		t.Fatalf("Push whose first lead came late = %v, %v; want the Job", job, err)
	}
	if err := job.Complete(t.Context(), []byte("v"), nil); err != nil {
		t.Fatalf("Complete = %v", err)
	}
	if got := recv(t, outcome, 10*time.Second, "onDone after Complete"); got != "v<nil>" {
		t.Fatalf("onDone got %q; want v", got)
	}
}
