package redistest

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

// clockSkew is the server's wall clock (TIME) minus ours.
func clockSkew(t *testing.T, c *redis.Client) time.Duration {
	t.Helper()
	before := time.Now()
	now, err := c.Time(t.Context()).Result()
	if err != nil {
		t.Fatalf("TIME: %v", err)
	}
	return now.Sub(before)
}

func TestServer_JumpClock(t *testing.T) {
	s := StartFakeClockServer(t)
	c := s.Client()
	ctx := t.Context()
	near := func(step string, want time.Duration) {
		t.Helper()
		if got := clockSkew(t, c); got < want-time.Second || got > want+time.Second {
			t.Fatalf("%s: server clock is %v off; want %v ± 1s", step, got, want)
		}
	}
	near("start", 0)
	s.JumpClock(5 * time.Second)
	near("after +5s", 5*time.Second)
	s.JumpClock(-5 * time.Second)
	near("after -5s", 0)
	s.JumpClock(-5 * time.Second)
	near("after another -5s", -5*time.Second)
	s.Restart()
	near("after restart", -5*time.Second)
	s.JumpClock(5 * time.Second)

	// A key set to live 3s is gone at once when the clock jumps 5s.
	if err := c.Set(ctx, "k", "v", 3*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if ttl, err := c.PTTL(ctx, "k").Result(); err != nil || ttl <= 2*time.Second {
		t.Fatalf("PTTL before the jump = %v, %v; want about 3s", ttl, err)
	}
	s.JumpClock(5 * time.Second)
	if ttl, err := c.PTTL(ctx, "k").Result(); err != nil || ttl != -2 {
		t.Fatalf("PTTL after a 5s jump = %v, %v; want -2 (no key)", ttl, err)
	}
	if n, err := c.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS after a 5s jump = %d, %v; want 0", n, err)
	}
}

func TestSentinel_SplitBrain(t *testing.T) {
	g := StartSentinel(t)
	ctx := t.Context()
	old, promoted := g.SplitBrain()
	if old == promoted {
		t.Fatalf("SplitBrain: primary still %s", old)
	}
	if p, err := g.PrimaryAddr(ctx); err != nil || p != promoted {
		t.Fatalf("sentinels' primary = %s, %v; want %s", p, err, promoted)
	}
	oc := redis.NewClient(&redis.Options{Addr: old})
	defer oc.Close()
	nc := redis.NewClient(&redis.Options{Addr: promoted})
	defer nc.Close()
	// Two primaries: each takes its own write.
	if err := oc.Set(ctx, "k", "old", 0).Err(); err != nil {
		t.Fatalf("SET on the old primary: %v", err)
	}
	if err := nc.Set(ctx, "k", "new", 0).Err(); err != nil {
		t.Fatalf("SET on the new primary: %v", err)
	}
	if v, err := oc.Get(ctx, "k").Result(); err != nil || v != "old" {
		t.Fatalf("GET on the old primary = %q, %v; want old", v, err)
	}
	if v, err := nc.Get(ctx, "k").Result(); err != nil || v != "new" {
		t.Fatalf("GET on the new primary = %q, %v; want new", v, err)
	}

	g.Heal()
	r, err := oc.Do(ctx, "ROLE").Slice()
	if err != nil || len(r) < 3 || r[0] != "slave" || fmt.Sprint(r[1], ":", r[2]) != promoted {
		t.Fatalf("ROLE of the old primary = %v, %v; want a replica of %s", r, err, promoted)
	}
	// The write the old primary acknowledged during the split is lost.
	if v, err := oc.Get(ctx, "k").Result(); err != nil || v != "new" {
		t.Fatalf("GET on the old primary after Heal = %q, %v; want new", v, err)
	}
}

// A Link's delay is a latency (a reply that comes in many chunks arrives
// one delay after it was sent, not one delay per chunk); a cut holds the
// bytes until restored or the client's deadline; a restored link works at
// once.
func TestLink_latencyAndCut(t *testing.T) {
	s := StartServer(t)
	l := NewLink(nil)
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), Dialer: l.Dial, MaxRetries: -1, ReadTimeout: 500 * time.Millisecond, PoolSize: 1})
	t.Cleanup(func() { c.Close() })
	ctx := t.Context()
	big := strings.Repeat("x", 1<<20)
	if err := c.Set(ctx, "big", big, 0).Err(); err != nil {
		t.Fatal(err)
	}
	l.Set(LinkState{DelayReplies: 200 * time.Millisecond})
	for range 2 { // the first may dial anew: a handshake takes a few round trips
		start := time.Now()
		v, err := c.Get(ctx, "big").Result()
		if d := time.Since(start); err != nil || v != big || d < 200*time.Millisecond || d > 350*time.Millisecond {
			t.Logf("GET of 1 MiB over a 200ms link = %d bytes, %v after %v", len(v), err, d)
			continue
		}
		l.Set(LinkState{CutRequests: true, CutReplies: true})
		if err := c.Ping(ctx).Err(); err == nil {
			t.Fatal("Ping over a cut link succeeded")
		}
		l.Set(LinkState{})
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatalf("Ping after the link was restored = %v", err)
		}
		return
	}
	t.Fatal("a 1 MiB reply over a 200ms link did not take about 200ms; want one latency, not one per chunk")
}
