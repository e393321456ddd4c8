package dlockrt

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/redistest"
)

// checkIdentity fails unless id is this process's with the given name.
func checkIdentity(t *testing.T, what string, id Identity, name string, asked time.Time) {
	t.Helper()
	host, _ := os.Hostname()
	if id.Name != name || id.PID != os.Getpid() || id.Host != idPart(host, maxHostLen) {
		t.Errorf("%s: identity %+v; want %s, pid %d on %s", what, id, name, os.Getpid(), host)
	}
	if d := id.Asked.Sub(asked); d < -time.Second || d > 5*time.Second {
		t.Errorf("%s: asked at %v; want about %v", what, id.Asked, asked)
	}
}

// P29, P30: every grant names its holder (name, host, pid, when it asked),
// and Inspect from another client reads them as the holders believe:
// a lock's holder, token and lease; after the release, the kept token.
func TestInspect_lockNamesItsHolder(t *testing.T) {
	rdb := newRedis(t)
	holder := newClient(t, rdb, &Options{Name: "billing-worker"})
	oncall := newClient(t, rdb, &Options{Name: "oncall"})
	k := key(t, "l")
	asked := time.Now()
	l, err := holder.Lock(bg(), k, WithTTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	st, err := oncall.Inspect(bg(), k)
	if err != nil {
		t.Fatal(err)
	}
	if st.Lock == nil || !st.Lock.Held || st.Lock.Token != l.Token() || st.Semaphore != nil || st.Fanout != nil {
		t.Fatalf("Inspect of a held lock = %+v (lock %+v); want it held with token %d", st, st.Lock, l.Token())
	}
	checkIdentity(t, "lock holder", st.Lock.Holder, "billing-worker", asked)
	if st.Lock.TTL <= 4*time.Second || st.Lock.TTL > 5*time.Second {
		t.Errorf("lease left %v; want just under 5s", st.Lock.TTL)
	}
	if d := st.Lock.Since.Sub(st.ServerTime); d > 0 || d < -2*time.Second {
		t.Errorf("granted at %v, server time %v; want just before", st.Lock.Since, st.ServerTime)
	}
	if err := l.Release(bg()); err != nil {
		t.Fatal(err)
	}
	st, _ = oncall.Inspect(bg(), k)
	if st.Lock == nil || st.Lock.Held || st.Lock.Token != l.Token() || st.Lock.Holder.Name != "billing-worker" {
		t.Fatalf("Inspect after the release = %+v; want released, keeping token %d and its last holder", st.Lock, l.Token())
	}
	if st, err = oncall.Inspect(bg(), key(t, "never used")); err != nil || st.Lock != nil || st.Semaphore != nil || st.Fanout != nil {
		t.Fatalf("Inspect of an unused key = %+v, %v; want nothing", st, err)
	}
	if _, err := oncall.Inspect(bg(), ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Inspect(\"\") = %v; want ErrInvalid", err)
	}
}

// A semaphore's holders (with their limits) and its queue, in order.
func TestInspect_semaphoreHoldersAndQueue(t *testing.T) {
	rdb := newRedis(t)
	a := newClient(t, rdb, &Options{Name: "exporter-a"})
	b := newClient(t, rdb, &Options{Name: "exporter-b"})
	k := key(t, "s")
	asked := time.Now()
	p1, err := a.Semaphore(k, 2).Acquire(bg(), WithTTL(4*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	p2, err := b.Semaphore(k, 2).Acquire(bg(), WithTTL(4*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg())
	defer cancel()
	got := make(chan error, 2)
	for _, c := range []*Client{a, b} { // two waiters, a first
		go func() {
			p, err := c.Semaphore(k, 2).Acquire(ctx, WithTTL(4*time.Second))
			if err == nil {
				p.Release(bg())
			}
			got <- err
		}()
		redistest.WaitFor(t, 5*time.Second, "the waiter queued", func(ctx context.Context) bool {
			st, err := b.Inspect(ctx, k)
			return err == nil && st.Semaphore != nil && len(st.Semaphore.Waiters) == map[*Client]int{a: 1, b: 2}[c]
		})
	}
	st, err := a.Inspect(bg(), k)
	if err != nil {
		t.Fatal(err)
	}
	s := st.Semaphore
	if s == nil || s.Limit != 2 || len(s.Holders) != 2 || len(s.Waiters) != 2 || s.Truncated {
		t.Fatalf("Inspect = %+v; want 2 holders of limit 2 and 2 waiters", s)
	}
	names := map[string]bool{}
	for _, h := range s.Holders {
		names[h.Holder.Name] = true
		checkIdentity(t, "permit holder", h.Holder, h.Holder.Name, asked)
		if h.Limit != 2 || h.TTL <= 3*time.Second || h.TTL > 4*time.Second {
			t.Errorf("holder %+v; want limit 2 and just under 4s left", h)
		}
	}
	if !names["exporter-a"] || !names["exporter-b"] {
		t.Errorf("holders %v; want exporter-a and exporter-b", names)
	}
	if s.Waiters[0].Holder.Name != "exporter-a" || s.Waiters[1].Holder.Name != "exporter-b" || s.Waiters[0].Ticket >= s.Waiters[1].Ticket {
		t.Errorf("queue %+v; want exporter-a then exporter-b", s.Waiters)
	}
	for _, w := range s.Waiters {
		if w.TTL <= 0 || w.TTL > waiterLease {
			t.Errorf("waiter %+v: its place lasts %v; want within %v", w.Holder, w.TTL, waiterLease)
		}
	}
	p1.Release(bg())
	p2.Release(bg())
	for range 2 {
		if err := recv(t, got, 5*time.Second, "a waiter's grant"); err != nil {
			t.Fatal(err)
		}
	}
}

// A fanout's leader while its job runs, then the result kept for late
// callers.
func TestInspect_fanoutLeaderThenOutcome(t *testing.T) {
	rdb := newRedis(t)
	leader := newClient(t, rdb, &Options{Name: "cache-filler", ResultTTL: 5 * time.Second})
	oncall := newClient(t, rdb, nil)
	k := key(t, "f")
	running, finish := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	asked := time.Now()
	go func() {
		_, err := leader.Fanout(bg(), k, func(context.Context) ([]byte, error) {
			close(running)
			<-finish
			return []byte("the result"), nil
		})
		done <- err
	}()
	recv(t, running, 5*time.Second, "the job to start")
	st, err := oncall.Inspect(bg(), k)
	if err != nil {
		t.Fatal(err)
	}
	if st.Fanout == nil || !st.Fanout.Leading || st.Fanout.Outcome != "" || st.Fanout.TTL <= 0 {
		t.Fatalf("Inspect while the job runs = %+v; want a leader", st.Fanout)
	}
	checkIdentity(t, "fanout leader", st.Fanout.Leader, "cache-filler", asked)
	close(finish)
	if err := recv(t, done, 5*time.Second, "the fanout's outcome"); err != nil {
		t.Fatal(err)
	}
	st, _ = oncall.Inspect(bg(), k)
	if st.Fanout == nil || st.Fanout.Leading || st.Fanout.Outcome != "result" || st.Fanout.OutcomeSize < len("the result") || st.Fanout.TTL <= 0 {
		t.Fatalf("Inspect after the run = %+v; want the result kept", st.Fanout)
	}
}

// P30: inspection never writes: INFO commandstats counts no write while a
// hundred inspections of held keys run.
func TestInspect_writesNothing(t *testing.T) {
	rdb := newRedis(t)
	c := newClient(t, rdb, nil)
	k := key(t, "ro")
	l, err := c.Lock(bg(), k)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(bg())
	p, err := c.Semaphore(k, 3).Acquire(bg())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(bg())
	// Nothing else writes meanwhile: tests run one at a time, and the
	// watchdogs renew after a third of the 10s leases.
	before := writeCalls(t, rdb)
	for range 100 {
		if _, err := c.Inspect(bg(), k); err != nil {
			t.Fatal(err)
		}
	}
	if after := writeCalls(t, rdb); after != before {
		t.Fatalf("write commands went from %d to %d during inspections", before, after)
	}
}

// writeCalls sums the calls of the write commands dlock's scripts use.
func writeCalls(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	info, err := rdb.Info(bg(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		switch strings.TrimPrefix(name, "cmdstat_") {
		case "set", "pexpire", "zadd", "zrem", "zremrangebyscore", "del", "spublish", "expire", "pexpireat":
		default:
			continue
		}
		if !ok {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		v, _ := strconv.ParseInt(calls, 10, 64)
		n += v
	}
	return n
}

// Keys lists a space's keys of every kind, from every primary of a
// Cluster, with braces and '%' given back as the caller named them.
func TestKeys_listsASpaceOnEveryTopology(t *testing.T) {
	for _, topo := range []string{"standalone", "cluster"} {
		t.Run(topo, func(t *testing.T) {
			var rdb redis.UniversalClient = newRedis(t)
			if topo == "cluster" {
				rdb = sharedCluster(t).Client()
			}
			c := newClient(t, rdb, &Options{ResultTTL: time.Minute}) // the outcomes outlast a slow run
			space := key(t, "space") + ":"
			var want []string
			for i := range 12 { // spread over the Cluster's slots
				k := space + strconv.Itoa(i) + "{x}%"
				want = append(want, k)
				switch i % 3 {
				case 0:
					l, err := c.Lock(bg(), k)
					if err != nil {
						t.Fatal(err)
					}
					defer l.Release(bg())
				case 1:
					p, err := c.Semaphore(k, 2).Acquire(bg())
					if err != nil {
						t.Fatal(err)
					}
					defer p.Release(bg())
				default:
					if _, err := c.Fanout(bg(), k, func(context.Context) ([]byte, error) { return []byte("x"), nil }, WithTTL(time.Second)); err != nil {
						t.Fatal(err)
					}
				}
			}
			l, err := c.Lock(bg(), key(t, "elsewhere"))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Release(bg())
			slices.Sort(want)
			got, err := c.Keys(bg(), space, 0)
			if err != nil || !slices.Equal(got, want) {
				t.Fatalf("Keys(%q) = %q, %v; want %q", space, got, err, want)
			}
			if got, err := c.Keys(bg(), space, 5); err != nil || len(got) != 5 {
				t.Fatalf("Keys(%q, 5) = %q, %v; want 5 of them", space, got, err)
			}
		})
	}
}

// ForceRelease frees a dead (here: silent) holder's lock and permit: the
// holder learns it lost the lease at its next renewal, the next grant's
// token is larger, and a release by an owner that no longer holds is
// ErrNotHeld.
func TestForceRelease_freesALockAndAPermit(t *testing.T) {
	rdb := newRedis(t)
	holder := newClient(t, rdb, &Options{Name: "stuck"})
	op := newClient(t, rdb, &Options{Name: "oncall"})
	k := key(t, "k")
	l, err := holder.Lock(bg(), k, WithTTL(900*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	p, err := holder.Semaphore(k, 1).Acquire(bg(), WithTTL(900*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	st, err := op.Inspect(bg(), k)
	if err != nil || st.Lock == nil || st.Semaphore == nil || len(st.Semaphore.Holders) != 1 {
		t.Fatalf("Inspect = %+v, %v", st, err)
	}
	if err := op.ForceRelease(bg(), k, st.Lock.Owner); err != nil {
		t.Fatalf("ForceRelease of the lock: %v", err)
	}
	if err := op.ForceRelease(bg(), k, st.Semaphore.Holders[0].Permit); err != nil {
		t.Fatalf("ForceRelease of the permit: %v", err)
	}
	for what, done := range map[string]<-chan struct{}{"lock": l.Done(), "permit": p.Done()} {
		recv(t, done, 2*time.Second, "the "+what+" holder told of its loss")
	}
	if !errors.Is(l.Err(), ErrLost) || !errors.Is(p.Err(), ErrLost) {
		t.Fatalf("holder's errors %v, %v; want ErrLost", l.Err(), p.Err())
	}
	next, err := op.Lock(bg(), k)
	if err != nil || next.Token() <= l.Token() {
		t.Fatalf("next grant %v (token %d); want a token above %d", err, next.Token(), l.Token())
	}
	defer next.Release(bg())
	if err := op.ForceRelease(bg(), k, st.Lock.Owner); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("ForceRelease by the old owner = %v; want ErrNotHeld", err)
	}
}

// Across a deploy: a holder before 0.4 (an owner id without identity)
// shares the key with 0.4 processes, which inspect it as an unknown holder
// and wait for it like any other; a 0.4 holder's id is opaque to the
// older scripts, which only compare ids whole (unchanged in 0.4).
func TestInspect_holderBeforeIdentity(t *testing.T) {
	rdb := newRedis(t)
	c := newClient(t, rdb, nil)
	k := key(t, "old")
	tag, _ := c.tag(k)
	old := randomID() // what a 0.3 process sends as its owner
	acquire03 := oldLockAcquire(t)
	if v, err := acquire03.Run(bg(), rdb, []string{lockKey(tag)}, old, 5000).Result(); err != nil || v.([]any)[0].(int64) != 1 {
		t.Fatalf("a 0.3 acquire: %v %v", v, err)
	}
	st, err := c.Inspect(bg(), k)
	if err != nil || st.Lock == nil || !st.Lock.Held || st.Lock.Owner != old || st.Lock.Holder != (Identity{}) ||
		!strings.Contains(st.Lock.Holder.String(), "unknown") {
		t.Fatalf("Inspect of a 0.3 holder = %+v, %v; want held by an unknown holder", st.Lock, err)
	}
	if _, err := c.Once(bg(), k); !errors.Is(err, ErrNotAcquired) {
		t.Fatalf("Once while a 0.3 process holds = %v; want ErrNotAcquired", err)
	}
	if v, err := scriptLockRelease.Run(bg(), rdb, []string{lockKey(tag)}, old, 1000, lockChannel(tag)).Result(); err != nil || v.(int64) != 1 {
		t.Fatalf("a 0.3 release: %v %v", v, err)
	}
	l, err := c.Once(bg(), k)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(bg())
	if v, err := acquire03.Run(bg(), rdb, []string{lockKey(tag)}, randomID(), 5000).Result(); err != nil || v.([]any)[0].(int64) != 0 {
		t.Fatalf("a 0.3 acquire while a 0.4 process holds: %v %v; want refused", v, err)
	}
}
