package dlockrt

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/redistest"
)

// Found by the soak's checker: a grant whose reply arrives after its lease
// ended in Redis (the process was paused, the network held the reply) was
// returned as a held lock — whose Done closed at once, while another
// client may already hold the key. Such a grant is given back: the caller
// gets an ErrUnavailable error, never a lock or permit, and nothing stays
// held by nobody.
func TestLock_grantArrivingAfterItsLeaseIsGivenBack(t *testing.T) {
	srv, proxy, c := lateClient(t)
	admin := srv.Client()
	k := key(t, "late")
	lockKey := c.opts.Prefix + ":{" + k + "}:lock"
	err := heldReply(t, proxy, func(ctx context.Context) error {
		l, err := c.Once(ctx, k, WithTTL(200*time.Millisecond))
		if l != nil {
			return errors.New("Once returned a lock whose lease had ended")
		}
		return err
	}, func(ctx context.Context) bool { return admin.Exists(ctx, lockKey).Val() == 1 },
		func(ctx context.Context) bool { return admin.Exists(ctx, lockKey).Val() == 0 })
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "past its 200ms lease") {
		t.Fatalf("Once with its reply held past the lease = %v; want an ErrUnavailable error", err)
	}
	other := newClient(t, admin, nil)
	l, err := other.Once(t.Context(), k)
	if err != nil {
		t.Fatalf("Once by another client afterwards = %v; want the key free", err)
	}
	l.Release(t.Context())
}

// The same for a semaphore permit.
func TestSemaphore_grantArrivingAfterItsLeaseIsGivenBack(t *testing.T) {
	srv, proxy, c := lateClient(t)
	admin := srv.Client()
	k := key(t, "late")
	semKey := c.opts.Prefix + ":{" + k + "}:sem"
	deadline := int64(0)
	err := heldReply(t, proxy, func(ctx context.Context) error {
		p, err := c.Semaphore(k, 1).TryAcquire(ctx, WithTTL(200*time.Millisecond))
		if p != nil {
			return errors.New("TryAcquire returned a permit whose lease had ended")
		}
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
		return err == nil && now.UnixMilli() > deadline
	})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "past its 200ms lease") {
		t.Fatalf("TryAcquire with its reply held past the lease = %v; want an ErrUnavailable error", err)
	}
	p, err := newClient(t, admin, nil).Semaphore(k, 1).TryAcquire(t.Context())
	if err != nil {
		t.Fatalf("TryAcquire by another client afterwards = %v; want the permit free", err)
	}
	p.Release(t.Context())
}

// lateClient is a client that reaches a server of its own through a proxy,
// its scripts loaded and its connection open.
func lateClient(t *testing.T) (*redistest.Server, *redistest.Proxy, *Client) {
	srv := redistest.StartServer(t)
	proxy := redistest.StartProxy(t, srv.Addr())
	rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr(), MaxRetries: -1, PoolSize: 1, ReadTimeout: 10 * time.Second})
	t.Cleanup(func() { rdb.Close() })
	for _, s := range []*redis.Script{scriptLockAcquire, scriptLockRelease, scriptSemAcquire, scriptSemRelease} {
		if err := s.Load(t.Context(), rdb).Err(); err != nil {
			t.Fatal(err)
		}
	}
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
