package dlockrt

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/redistest"
)

func TestLock_Once_tenClientsOneWinner(t *testing.T) {
	k := key(t, "once")
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, lost := 0, 0
	for range 10 {
		c := newClient(t, newRedis(t), nil)
		wg.Go(func() {
			_, err := c.Once(t.Context(), k)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, ErrNotAcquired):
				lost++
			default:
				t.Errorf("Once = %v; want nil or ErrNotAcquired", err)
			}
		})
	}
	waitGroup(t, &wg, 30*time.Second, "the ten Once calls")
	if wins != 1 || lost != 9 {
		t.Fatalf("wins, not acquired = %d, %d; want 1, 9", wins, lost)
	}
}

func TestLock_Release_thenReacquire(t *testing.T) {
	c := newClient(t, newRedis(t), nil)
	k := key(t, "k")
	l, err := c.Once(t.Context(), k)
	if err != nil {
		t.Fatalf("Once = %v", err)
	}
	if l.Key() != k || l.Token() <= 0 {
		t.Fatalf("Key, Token = %q, %d; want %q, > 0", l.Key(), l.Token(), k)
	}
	if err := l.Release(t.Context()); err != nil {
		t.Fatalf("Release = %v", err)
	}
	select {
	case <-l.Done():
	default:
		t.Fatal("Done not closed after Release")
	}
	if err := l.Release(t.Context()); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("second Release = %v; want ErrNotHeld", err)
	}
	l2, err := c.Once(t.Context(), k)
	if err != nil {
		t.Fatalf("Once after release = %v", err)
	}
	if l2.Token() <= l.Token() {
		t.Fatalf("token after release = %d; want > %d", l2.Token(), l.Token())
	}
	l2.Release(t.Context())
}

// P1: a holder whose lease ran out cannot release or extend the next
// holder's lock.
func TestLock_Release_afterExpiryLeavesNewHolderAlone(t *testing.T) {
	rdb := newRedis(t)
	a := newClient(t, rdb, nil)
	b := newClient(t, rdb, nil)
	for i := range 20 {
		k := key(t, strconv.Itoa(i))
		ttl := time.Duration(20+rand.IntN(60)) * time.Millisecond
		la, err := a.Once(t.Context(), k, WithTTL(ttl), WithWatchdog(false))
		if err != nil {
			t.Fatalf("A Once = %v", err)
		}
		recv(t, la.Done(), 10*time.Second, "A's lease to end") // A stalls past its lease: Done closes when it ends
		if !errors.Is(la.Err(), ErrLost) {
			t.Fatalf("A Err after expiry = %v; want ErrLost", la.Err())
		}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		lb, err := b.Lock(ctx, k, WithTTL(10*time.Second)) // wakes when A's lease ends
		cancel()
		if err != nil {
			t.Fatalf("B Lock after A's lease = %v", err)
		}
		lk := lockKey(mustTag(t, b, k))
		before, _ := rdb.Get(bg(), lk).Result()
		// Interleave A's stale calls with B's lease at random.
		if rand.IntN(2) == 0 {
			if err := la.Extend(t.Context(), time.Minute); !errors.Is(err, ErrNotHeld) {
				t.Fatalf("A Extend = %v; want ErrNotHeld", err)
			}
		}
		if err := la.Release(t.Context()); !errors.Is(err, ErrNotHeld) {
			t.Fatalf("A Release = %v; want ErrNotHeld", err)
		}
		after, _ := rdb.Get(bg(), lk).Result()
		pttl, _ := rdb.PTTL(bg(), lk).Result()
		if after != before || pttl <= 0 || pttl > 10*time.Second {
			t.Fatalf("B's key after A's calls = %q (pttl %v); want %q with its lease", after, pttl, before)
		}
		if err := lb.Release(t.Context()); err != nil {
			t.Fatalf("B Release = %v", err)
		}
	}
}

func mustTag(t testing.TB, c *Client, k string) string {
	t.Helper()
	tag, err := c.tag(k)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

func TestLock_Token_neverGoesBackAfterCounterExpiry(t *testing.T) {
	rdb := newRedis(t)
	c := newClient(t, rdb, nil)
	k := key(t, "k")
	last := int64(0)
	for i := range 5 {
		now, err := rdb.Time(t.Context()).Result()
		if err != nil {
			t.Fatal(err)
		}
		l, err := c.Once(t.Context(), k)
		if err != nil {
			t.Fatalf("Once = %v", err)
		}
		if l.Token() <= last {
			t.Fatalf("round %d: Token = %d; want > %d", i, l.Token(), last)
		}
		// A token is at least the server's clock in microseconds at its
		// grant: so it outgrows every token of a key that expired.
		if l.Token() < now.UnixMicro() {
			t.Fatalf("round %d: Token = %d; want at least the server's clock in µs before the grant, %d", i, l.Token(), now.UnixMicro())
		}
		last = l.Token()
		l.Release(t.Context())
		if i%2 == 1 { // the key with the last token expired (or was evicted)
			rdb.Del(bg(), lockKey(mustTag(t, c, k)))
		}
	}
	ttl, _ := rdb.PTTL(bg(), lockKey(mustTag(t, c, k))).Result()
	if ttl <= 0 || ttl > c.opts.FenceTTL {
		t.Fatalf("released key's PTTL = %v; want a lifetime of at most FenceTTL (%v)", ttl, c.opts.FenceTTL)
	}
}

// Lock is woken by the release, not by the holder's lease (10 s) running
// out: the waiter is asleep (subscribed, and it tried again) when the
// holder releases.
func TestLock_wokenByRelease(t *testing.T) {
	c1 := newClient(t, newRedis(t), nil)
	c2 := newClient(t, newRedis(t), nil)
	k := key(t, "k")
	l1, err := c1.Once(t.Context(), k, WithTTL(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	asleep := make(chan struct{}, 1)
	testHookLockSleep = func(key string) {
		if key == k {
			select {
			case asleep <- struct{}{}:
			default:
			}
		}
	}
	t.Cleanup(func() { testHookLockSleep = nil })
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		l2, err := c2.Lock(ctx, k)
		if err == nil {
			l2.Release(bg())
		}
		got <- err
	}()
	recv(t, asleep, 10*time.Second, "the waiter to sleep")
	l1.Release(t.Context())
	if err := recv(t, got, 10*time.Second, "the waiter"); err != nil {
		t.Fatalf("Lock after release = %v; want nil well before the 10s lease", err)
	}
}

// P1: an Extend by a holder whose key was lost and taken by another (its
// own lease still running locally) is refused and leaves the new holder's
// lease as it was.
func TestLock_Extend_afterTakeoverIsNotHeld(t *testing.T) {
	rdb := newRedis(t)
	a, b := newClient(t, newRedis(t), nil), newClient(t, newRedis(t), nil)
	k := key(t, "k")
	la, err := a.Once(t.Context(), k, WithTTL(time.Minute), WithWatchdog(false))
	if err != nil {
		t.Fatal(err)
	}
	lk := lockKey(mustTag(t, a, k))
	rdb.Del(bg(), lk) // lost, as in a failover that lost the write
	lb, err := b.Once(t.Context(), k, WithTTL(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Release(bg())
	if err := la.Extend(t.Context(), time.Hour); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Extend of a taken lock = %v; want ErrNotHeld", err)
	}
	if pttl, _ := rdb.PTTL(bg(), lk).Result(); pttl <= 0 || pttl > 2*time.Second {
		t.Fatalf("the new holder's lease after the old one's Extend = %v; want its own 2s", pttl)
	}
}

// P5: a release that lands between the waiter's failed try and its
// subscription is not missed.
func TestLock_releaseBetweenTryAndSubscribe(t *testing.T) {
	c1 := newClient(t, newRedis(t), nil)
	c2 := newClient(t, newRedis(t), nil)
	k := key(t, "k")
	l1, err := c1.Once(t.Context(), k, WithTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	testHookLockWait = func(string) { l1.Release(bg()) }
	t.Cleanup(func() { testHookLockWait = nil })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	l2, err := c2.Lock(ctx, k)
	if err != nil {
		t.Fatalf("Lock = %v; want the lock released in the gap", err)
	}
	l2.Release(bg())
}

// P5: the subscription connection is killed while a waiter waits; the
// release still reaches it (after resubscribe and re-check), long before
// the holder's lease would end.
func TestLock_pubsubConnectionKilled(t *testing.T) {
	rdb := newRedis(t)
	c1 := newClient(t, rdb, nil)
	c2 := newClient(t, newRedis(t), nil)
	k := key(t, "k")
	l1, err := c1.Once(t.Context(), k, WithTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	got := lockAndRelease(t, c2, k, 10*time.Second)
	ch := lockChannel(mustTag(t, c1, k))
	redistest.WaitFor(t, 5*time.Second, "the waiter's subscription", func(ctx context.Context) bool {
		n, err := rdb.PubSubShardNumSub(ctx, ch).Result()
		return err == nil && n[ch] == 1
	})
	if err := rdb.Do(bg(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatalf("CLIENT KILL = %v", err)
	}
	l1.Release(t.Context())
	if err := recv(t, got, 20*time.Second, "the waiter's Lock after the pubsub kill and release"); err != nil {
		t.Fatalf("Lock after pubsub kill and release = %v", err)
	}
}

// P5: a waiter whose subscription connection breaks is told at once and
// looks again (a release published while the connection was down would be
// found then), goes back to sleep while the lock is still held, and is
// woken by the release that comes while its client reconnects, long
// before the holder's lease ends.
func TestLock_releaseWhileTheSubscriptionReconnects(t *testing.T) {
	k := key(t, "k")
	asleep := signalSleeps(t, k)
	broken, reconnect := make(chan struct{}, 4), make(chan struct{})
	setHook(t, &testHookMuxBroken, func() {
		if sendGo(t, broken, struct{}{}, 10*time.Second, "the test to see the connection broken") {
			recvGo(t, reconnect, 10*time.Second, "the test to let the reader reconnect")
		}
	})
	rdb := newRedis(t)
	c1 := newClient(t, rdb, nil)
	c2 := newClient(t, newRedis(t), nil)
	l1, err := c1.Once(t.Context(), k, WithTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	got := lockAndRelease(t, c2, k, 10*time.Second)
	recv(t, asleep, 10*time.Second, "the waiter to sleep")
	if err := rdb.Do(bg(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatalf("CLIENT KILL = %v", err)
	}
	recv(t, broken, 10*time.Second, "the waiter's client to see its subscription connection broken")
	recv(t, asleep, 10*time.Second, "the waiter, told of the break, to look again and sleep")
	l1.Release(t.Context())
	close(reconnect)
	if err := recv(t, got, 20*time.Second, "the waiter's Lock"); err != nil {
		t.Fatalf("Lock after a release while its subscription reconnected = %v", err)
	}
}

// P5: a release published while the waiter's channel is not subscribed
// anywhere (its subscription connection broke, and the new one's
// SSUBSCRIBE has not reached the server) wakes the waiter once the channel
// is subscribed again: the mux tells the channel's subscribers then, and
// the waiter looks again, long before the holder's lease would have ended.
func TestLock_wokenWhenItsChannelIsSubscribedAgain(t *testing.T) {
	k := key(t, "k")
	asleep := signalSleeps(t, k)
	rdb := newRedis(t)
	proxy := redistest.StartProxy(t, standaloneAddr(t))
	ps := redis.NewClient(&redis.Options{Addr: proxy.Addr(), ReadTimeout: 300 * time.Millisecond, DialTimeout: 300 * time.Millisecond})
	t.Cleanup(func() { ps.Close() })
	c1 := newClient(t, rdb, nil)
	c2 := newClient(t, newRedis(t), &Options{PubSub: ps})
	l1, err := c1.Once(t.Context(), k, WithTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	got := lockAndRelease(t, c2, k, 20*time.Second)
	recv(t, asleep, 10*time.Second, "the waiter to sleep")
	// The subscription connection breaks, and what goes to the server on
	// the next one is held back: the channel is subscribed nowhere.
	proxy.CutOneWay(true)
	proxy.DropAll()
	recv(t, asleep, 10*time.Second, "the waiter, told of the break, to look again and sleep")
	ch := lockChannel(mustTag(t, c1, k))
	if n, err := rdb.PubSubShardNumSub(bg(), ch).Result(); err != nil || n[ch] != 0 {
		t.Fatalf("subscribers of the waiter's channel while cut: %v, %v; want none", n, err)
	}
	l1.Release(t.Context()) // published to nobody
	proxy.Restore()
	if err := recv(t, got, 30*time.Second, "the waiter's Lock"); err != nil {
		t.Fatalf("Lock after a release while its channel was subscribed nowhere = %v; want the lock, once subscribed again", err)
	}
}

// signalSleeps signals, for the rest of the test, each time a waiter for
// key k goes to sleep. Call it before making the clients.
func signalSleeps(t *testing.T, k string) <-chan struct{} {
	asleep := make(chan struct{}, 4)
	setHook(t, &testHookLockSleep, func(key string) {
		if key == k {
			sendGo(t, asleep, struct{}{}, 10*time.Second, "the test to see the waiter asleep")
		}
	})
	return asleep
}

// lockAndRelease waits for k's lock with c, for at most d, in the
// background, releases it, and delivers Lock's error.
func lockAndRelease(t *testing.T, c *Client, k string, d time.Duration) <-chan error {
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), d)
		defer cancel()
		l, err := c.Lock(ctx, k)
		if err == nil {
			l.Release(bg())
		}
		got <- err
	}()
	return got
}

// A foreign value in a lock's key (one dlock did not write) counts as held
// by somebody else: Once does not take or overwrite it.
func TestLock_Once_foreignValueIsHeld(t *testing.T) {
	rdb := newRedis(t)
	c := newClient(t, newRedis(t), nil)
	for _, v := range []string{"foreign", "12 someone else", ""} {
		k := key(t, "k"+v)
		lk := lockKey(mustTag(t, c, k))
		if err := rdb.Set(bg(), lk, v, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		if l, err := c.Once(t.Context(), k); !errors.Is(err, ErrNotAcquired) {
			t.Errorf("Once(%q) over the foreign value %q = %v, %v; want ErrNotAcquired", k, v, l, err)
		}
		if got, _ := rdb.Get(bg(), lk).Result(); got != v {
			t.Errorf("foreign value %q became %q", v, got)
		}
	}
}

// P2: tokens grow even while the server's clock is behind the key's last
// token (the clock was set back after a grant): the next token is the last
// one plus one, never the same.
func TestLock_Token_growsWhileTheServerClockIsBehind(t *testing.T) {
	srv := redistest.StartFakeClockServer(t)
	c := newClient(t, srv.Client(), nil)
	k := key(t, "k")
	l1, err := c.Once(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	if err := l1.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv.JumpClock(-10 * time.Second) // the released key keeps its token for FenceTTL
	l2, err := c.Once(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Release(bg())
	if l2.Token() <= l1.Token() {
		t.Fatalf("token after the clock went back = %d; want more than the last one, %d", l2.Token(), l1.Token())
	}
}
