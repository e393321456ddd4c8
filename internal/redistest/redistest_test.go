package redistest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/slot"
)

func TestServer_Restart_emptiesData(t *testing.T) {
	s := StartServer(t)
	c := s.Client()
	ctx := t.Context()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	if _, err := c.Get(ctx, "k").Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("Get after restart: err = %v; want redis.Nil", err)
	}
}

func TestServer_Pause_blocksUntilResume(t *testing.T) {
	s := StartServer(t)
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), ReadTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	s.Pause()
	if err := c.Ping(t.Context()).Err(); err == nil {
		t.Fatal("Ping on a paused server succeeded")
	}
	s.Resume()
	if err := c.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("Ping after resume: %v", err)
	}
}

func TestProxy_CutAndRestore(t *testing.T) {
	s := StartServer(t)
	p := StartProxy(t, s.Addr())
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), ReadTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	ctx := t.Context()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("Ping through proxy: %v", err)
	}
	p.Cut()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("Ping through a cut proxy succeeded")
	}
	p.Restore()
	p.DropAll() // the timed-out connection was discarded by the client; start clean
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("Ping after restore: %v", err)
	}
}

func TestSentinel_Failover(t *testing.T) {
	g := StartSentinel(t)
	c := g.Client()
	ctx := t.Context()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	old, _ := g.PrimaryAddr(ctx)
	now := g.Failover()
	if now == old {
		t.Fatalf("Failover: primary still %s", old)
	}
	WaitFor(t, 10*time.Second, "client to follow the new primary", func(ctx context.Context) bool {
		return c.Set(ctx, "k2", "v", 0).Err() == nil
	})
}

func TestCluster_MoveSlotAndFailover(t *testing.T) {
	cl := StartCluster(t, true)
	c := cl.Client()
	ctx := t.Context()
	key := "{moved}:k"
	if err := c.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s := slot.Of(key)
	if got, err := c.ClusterKeySlot(ctx, key).Result(); err != nil || int(got) != s {
		t.Fatalf("CLUSTER KEYSLOT %q = %d, %v; want %d", key, got, err, s)
	}
	from := cl.Owner(s)
	var to *Server
	for _, n := range cl.Nodes[:3] {
		if n != from {
			to = n
			break
		}
	}
	cl.MoveSlot(s, to)
	if got := cl.Owner(s); got != to {
		t.Fatalf("Owner(%d) = %s; want %s", s, got.Addr(), to.Addr())
	}
	if v, err := c.Get(ctx, key).Result(); err != nil || v != "v" {
		t.Fatalf("Get after move = %q, %v; want v", v, err)
	}
	promoted := cl.FailoverSlot(s)
	if promoted == to {
		t.Fatal("FailoverSlot returned the old primary")
	}
	WaitFor(t, 10*time.Second, "read after failover", func(ctx context.Context) bool {
		v, err := c.Get(ctx, key).Result()
		return err == nil && v == "v"
	})
	// Straight back: the replica asked to take over is the primary demoted
	// a moment ago (a primary ignores a failover request from a node it
	// does not yet know as its replica: this once timed out).
	if back := cl.FailoverSlot(s); back != to {
		t.Fatalf("failover back returned %s; want %s", back.Addr(), to.Addr())
	}
}
