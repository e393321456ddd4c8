package dlockrt

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Port of the Node package's multi test: acquire, extend, release.
func TestMultiLock_acquireExtendRelease(t *testing.T) {
	rdb := newRedis(t)
	c := newClient(t, rdb, nil)
	k1, k2 := key(t, "1"), key(t, "2")
	m, err := c.Multi(t.Context(), k2, k1, k2)
	if err != nil {
		t.Fatalf("Multi = %v", err)
	}
	if got, want := m.Keys(), []string{k1, k2}; !slices.Equal(got, want) {
		t.Fatalf("Keys = %v; want %v", got, want)
	}
	if toks := m.Tokens(); len(toks) != 2 || toks[0] <= 0 || toks[1] <= 0 {
		t.Fatalf("Tokens = %v; want two positive tokens", toks)
	}
	if err := m.Extend(t.Context(), time.Minute); err != nil {
		t.Fatalf("Extend = %v", err)
	}
	for _, k := range []string{k1, k2} {
		if pttl, _ := rdb.PTTL(bg(), lockKey(mustTag(t, c, k))).Result(); pttl <= 10*time.Second {
			t.Fatalf("PTTL(%s) after Extend(1m) = %v; want > 10s", k, pttl)
		}
	}
	if err := m.Release(t.Context()); err != nil {
		t.Fatalf("Release = %v", err)
	}
	assertNoLocks(t, c, k1, k2)
}

func assertNoLocks(t *testing.T, c *Client, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if v, err := c.rdb.Get(bg(), lockKey(mustTag(t, c, k))).Result(); err == nil && heldValue(v) {
			t.Errorf("lock on %s still held", k)
		}
	}
}

// Port: Multi over a held key fails with a MultiLockError and leaves
// nothing held.
func TestMultiLock_heldKeyFailsAndHoldsNothing(t *testing.T) {
	c := newClient(t, newRedis(t), nil)
	k1, k2, k3 := key(t, "1"), key(t, "2"), key(t, "3")
	l, err := c.Once(t.Context(), k2)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Multi(t.Context(), k1, k2, k3)
	var me *MultiLockError
	if !errors.As(err, &me) || !errors.Is(err, ErrNotAcquired) {
		t.Fatalf("Multi over held key = %v; want *MultiLockError matching ErrNotAcquired", err)
	}
	if !slices.Equal(me.Keys, []string{k2}) {
		t.Fatalf("MultiLockError.Keys = %v; want [%s]", me.Keys, k2)
	}
	assertNoLocks(t, c, k1, k3)
	l.Release(t.Context())
}

// Port: ten clients race Multi on the same keys; one wins.
func TestMultiLock_tenClientsOneWinner(t *testing.T) {
	keys := []string{key(t, "5"), key(t, "6"), key(t, "7")}
	var wins, lost atomic.Int32
	var wg sync.WaitGroup
	for range 10 {
		c := newClient(t, newRedis(t), nil)
		wg.Go(func() {
			_, err := c.Multi(t.Context(), keys...)
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, ErrNotAcquired):
				lost.Add(1)
			default:
				t.Errorf("Multi = %v", err)
			}
		})
	}
	waitGroup(t, &wg, 30*time.Second, "the ten Multi calls")
	if wins.Load() != 1 || lost.Load() != 9 {
		t.Fatalf("wins, not acquired = %d, %d; want 1, 9", wins.Load(), lost.Load())
	}
}

// A partial extend failure releases the rest and ends the lock.
func TestMultiLock_Extend_partialFailureReleasesRest(t *testing.T) {
	rdb := newRedis(t)
	c := newClient(t, rdb, nil)
	k1, k2 := key(t, "1"), key(t, "2")
	m, err := c.Multi(t.Context(), k1, k2)
	if err != nil {
		t.Fatal(err)
	}
	rdb.Set(bg(), lockKey(mustTag(t, c, k2)), "someone-else", time.Minute) // k2 changed hands
	if err := m.Extend(t.Context(), time.Minute); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Extend = %v; want ErrNotHeld", err)
	}
	recv(t, m.Done(), 10*time.Second, "the multi-lock to end")
	assertNoLocks(t, c, k1)
	if v, _ := rdb.Get(bg(), lockKey(mustTag(t, c, k2))).Result(); v != "someone-else" {
		t.Fatalf("other holder's k2 = %q; want untouched", v)
	}
}

// P11: contenders on random overlapping key sets always make progress and
// never leave a partial hold at rest.
func TestMultiLock_overlappingContendersProgress(t *testing.T) {
	testMultiContention(t, newRedis(t), 8, 2*time.Second)
}

// testMultiContention runs workers that take random 2-4 key subsets of 6
// keys with Multi for dur; every second must see successes, and afterwards
// no lock key may remain.
func testMultiContention(t *testing.T, rdb redis.UniversalClient, workers int, dur time.Duration) {
	prefix := "p11-" + strconv.Itoa(rand.IntN(1e9))
	pool := []string{"a", "b", "c", "d", "e", "f"}
	var mu sync.Mutex
	var wins []time.Time
	inUse := map[string]*atomic.Bool{}
	for _, k := range pool {
		inUse[k] = new(atomic.Bool)
	}
	stop := time.Now().Add(dur)
	var wg sync.WaitGroup
	for range workers {
		c := newClient(t, rdb, &Options{Prefix: prefix, TTL: 5 * time.Second})
		wg.Go(func() {
			for time.Now().Before(stop) {
				ks := slices.Clone(pool)
				rand.Shuffle(len(ks), func(i, j int) { ks[i], ks[j] = ks[j], ks[i] })
				m, err := c.MultiWith(t.Context(), ks[:2+rand.IntN(3)], WithRetries(3, 2*time.Millisecond))
				if errors.Is(err, ErrNotAcquired) {
					continue
				}
				if err != nil {
					t.Errorf("Multi = %v", err)
					return
				}
				for _, k := range m.Keys() {
					if inUse[k].Swap(true) {
						t.Errorf("key %s held by two multi-locks at once", k)
					}
				}
				mu.Lock()
				wins = append(wins, time.Now())
				mu.Unlock()
				time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond) // the critical section
				for _, k := range m.Keys() {
					inUse[k].Store(false)
				}
				if err := m.Release(t.Context()); err != nil {
					t.Errorf("Release = %v", err)
				}
			}
		})
	}
	waitGroup(t, &wg, dur+time.Minute, "the contenders to stop")
	if len(wins) == 0 {
		t.Fatal("no Multi ever succeeded")
	}
	start := stop.Add(-dur)
	for sec := start; sec.Before(stop.Add(-time.Second)); sec = sec.Add(time.Second) {
		n := 0
		for _, w := range wins {
			if !w.Before(sec) && w.Before(sec.Add(time.Second)) {
				n++
			}
		}
		if n == 0 {
			t.Errorf("no Multi succeeded in the second starting %v after the start", sec.Sub(start))
		}
	}
	var left []string
	iter := scanAll(t, rdb, prefix+":*")
	left = append(left, iter...)
	if len(left) != 0 {
		t.Fatalf("keys held at rest: %v", left)
	}
	t.Logf("%d multi-locks in %v", len(wins), dur)
}

// scanAll returns the lock keys matching pattern on every primary.
// scanAll returns the lock keys matching pattern that are held (a
// released key that keeps its last token for FenceTTL is not).
func scanAll(t *testing.T, rdb redis.UniversalClient, pattern string) []string {
	t.Helper()
	var out []string
	collect := func(ctx context.Context, c *redis.Client) error {
		it := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for it.Next(ctx) {
			if k := it.Val(); strings.HasSuffix(k, ":lock") {
				if v, err := c.Get(ctx, k).Result(); err == nil && heldValue(v) {
					out = append(out, k)
				}
			}
		}
		return it.Err()
	}
	var err error
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		var mu sync.Mutex
		err = c.ForEachMaster(bg(), func(ctx context.Context, n *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return collect(ctx, n)
		})
	case *redis.Client:
		err = collect(bg(), c)
	}
	if err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	return out
}

// heldValue reports whether a lock key's value means held: "<token>
// <owner>", or a foreign value; not "<token> -<owner>", a released key
// that keeps its last token.
func heldValue(v string) bool {
	_, who, ok := strings.Cut(v, " ")
	return !ok || !strings.HasPrefix(who, "-")
}
