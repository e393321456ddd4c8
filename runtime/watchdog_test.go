package dlockrt

import (
	"context"
	"errors"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/dlock-go/dlock/internal/redistest"
)

// P4: the watchdog keeps a live holder's lease through a job lasting 5x the
// TTL while the CPU is busy.
func TestLock_watchdogKeepsLeaseUnderLoad(t *testing.T) {
	rdb := newRedis(t)
	c := newClient(t, rdb, nil)
	stop := make(chan struct{})
	for range runtime.GOMAXPROCS(0) {
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
	}
	defer close(stop)
	ttl := 300 * time.Millisecond
	k := key(t, "k")
	l, err := c.Once(t.Context(), k, WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	job := time.NewTimer(5 * ttl)
	select {
	case <-job.C:
	case <-l.Done():
		t.Fatalf("lease lost during the job: %v", l.Err())
	}
	if v, _ := rdb.Get(bg(), lockKey(mustTag(t, c, k))).Result(); !strings.HasSuffix(v, " "+l.set.owner) {
		t.Fatalf("lock value after 5 TTLs = %q; want the holder's", v)
	}
	if err := l.Release(t.Context()); err != nil {
		t.Fatalf("Release = %v", err)
	}
}

// P4: many lock cycles leave no lock keys and no goroutines behind. (The
// leases are 1s: with 30ms, a stall of the test binary under load ended a
// lease mid-cycle now and then, and its Release was rightly ErrNotHeld.)
func TestLock_cyclesLeaveNothingBehind(t *testing.T) {
	rdb := newRedis(t)
	c, err := New(rdb, &Options{Prefix: "cycles", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	n := 10000
	if testing.Short() {
		n = 1000
	}
	for i := range n {
		l, err := c.Once(t.Context(), "k"+string(rune('a'+i%26)))
		if err != nil {
			t.Fatalf("cycle %d: Once = %v", i, err)
		}
		if err := l.Release(t.Context()); err != nil {
			t.Fatalf("cycle %d: Release = %v", i, err)
		}
	}
	c.Close()
	if keys := scanAll(t, rdb, "cycles:*:lock"); len(keys) != 0 {
		t.Fatalf("lock keys left held: %v", keys)
	}
	goleak.VerifyNone(t, goleak.IgnoreCurrent())
}

// P3: when the network to Redis is cut, the holder is told before its lease
// would have ended.
func TestLock_lossSignalledBeforeLeaseEnds_networkCut(t *testing.T) {
	srv := redistest.StartServer(t)
	p := redistest.StartProxy(t, srv.Addr())
	rdb := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	testLossSignalled(t, rdb, func(*Lock) { p.Cut() })
}

// P3, with the server stopped by SIGSTOP.
func TestLock_lossSignalledBeforeLeaseEnds_serverPaused(t *testing.T) {
	srv := redistest.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	t.Cleanup(srv.Resume)
	testLossSignalled(t, rdb, func(*Lock) { srv.Pause() })
}

// P3 with an Extend in flight when the server stops: the call is bounded
// by the lease's end (not by the client's 10s read timeout), so the
// watchdog, which waits for it, still signals the loss in time; Extend
// returns ErrLost.
func TestLock_lossSignalledBeforeLeaseEnds_extendInFlight(t *testing.T) {
	srv := redistest.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ReadTimeout: 10 * time.Second})
	t.Cleanup(func() { rdb.Close() })
	t.Cleanup(srv.Resume)
	extended := make(chan error, 1)
	var held *Lock
	testLossSignalled(t, rdb, func(l *Lock) {
		held = l
		srv.Pause()
		go func() { extended <- l.Extend(context.Background(), time.Minute) }()
	})
	select {
	case err := <-extended:
		if !errors.Is(err, ErrLost) {
			t.Fatalf("Extend in flight at the loss = %v; want ErrLost", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Extend in flight outlived its lease by seconds")
	}
	srv.Resume() // before the client's Close
	// The Extend (for a minute) reaches Redis once it resumes; what it
	// renewed is given back: the key is not left held by nobody.
	lockKey := "dlock:{" + held.Key() + "}:lock"
	redistest.WaitFor(t, 5*time.Second, "the lost lease given back", func(ctx context.Context) bool {
		v, err := srv.Client().Get(ctx, lockKey).Result()
		return err == redis.Nil || err == nil && strings.Contains(v, " -")
	})
}

// An Extend whose reply is lost after Redis ran it: the lease is lost at
// its end (ErrLost), and what the Extend renewed in Redis (a minute) is
// given back: the key is not left held by nobody.
func TestLock_Extend_unansweredGivesBackWhatItRenewed(t *testing.T) {
	srv := redistest.StartServer(t)
	p := redistest.StartProxy(t, srv.Addr())
	rdb := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1, ReadTimeout: 10 * time.Second})
	t.Cleanup(func() { rdb.Close() })
	loadScripts(t, rdb)
	c := newClient(t, rdb, &Options{Eviction: EvictionIgnore})
	k := key(t, "k")
	l, err := c.Once(t.Context(), k, WithTTL(600*time.Millisecond), WithWatchdog(false))
	if err != nil {
		t.Fatal(err)
	}
	p.CutOneWay(false) // requests reach Redis, replies do not come back
	if err := l.Extend(context.Background(), time.Minute); !errors.Is(err, ErrLost) {
		t.Fatalf("unanswered Extend = %v; want ErrLost", err)
	}
	p.Restore() // within OpTimeout: the give-back gets through
	lockKey := "dlock:{" + k + "}:lock"
	redistest.WaitFor(t, 5*time.Second, "the renewed lease given back", func(ctx context.Context) bool {
		v, err := srv.Client().Get(ctx, lockKey).Result()
		return err == redis.Nil || err == nil && strings.Contains(v, " -")
	})
}

// lossTimes is an Observer that hands on when each loss was signalled
// (Lost is called once Done is closed), so that a test measures the
// library's verdict, not how soon a busy machine ran the test's goroutine.
type lossTimes struct {
	BaseObserver
	ch chan time.Time
}

func (o *lossTimes) Lost(context.Context, LostEvent) { o.ch <- time.Now() }

func testLossSignalled(t *testing.T, rdb *redis.Client, fault func(*Lock)) {
	lost := &lossTimes{ch: make(chan time.Time, 1)}
	c := newClient(t, rdb, &Options{Observer: lost})
	ttl := 600 * time.Millisecond
	sent := time.Now()
	l, err := c.Once(t.Context(), key(t, "k"), WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	fault(l)
	recv(t, l.Done(), 10*time.Second, "the loss to be signalled")
	if lostAt := recv(t, lost.ch, time.Second, "the loss's event").Sub(sent); lostAt >= ttl {
		t.Fatalf("loss signalled %v after the acquire was sent; want < %v", lostAt, ttl)
	}
	if err := l.Err(); !errors.Is(err, ErrLost) {
		t.Fatalf("Err = %v; want ErrLost", err)
	}
}

// P14: Redis down is a fast, distinct error, within the caller's context.
func TestClient_redisDown_isUnavailableWithinContext(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(*redistest.Server)
	}{
		{"killed", (*redistest.Server).Kill},
		{"paused", (*redistest.Server).Pause},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.StartServer(t)
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
			t.Cleanup(func() { rdb.Close() })
			t.Cleanup(srv.Resume)
			c := newClient(t, rdb, nil)
			tc.fault(srv)
			calls := map[string]func(context.Context) error{
				"Once": func(ctx context.Context) error { _, err := c.Once(ctx, "k"); return err },
				"Lock": func(ctx context.Context) error { _, err := c.Lock(ctx, "k"); return err },
				"Multi": func(ctx context.Context) error {
					_, err := c.Multi(ctx, "a", "b")
					return err
				},
				"Fanout": func(ctx context.Context) error {
					_, err := c.Fanout(ctx, "f", func(context.Context) ([]byte, error) { return nil, nil })
					return err
				},
				"Semaphore": func(ctx context.Context) error {
					_, err := c.Semaphore("s", 2).Acquire(ctx)
					return err
				},
				"Push": func(ctx context.Context) error {
					_, err := c.Push(ctx, "p", func([]byte, error) {})
					return err
				},
			}
			for name, call := range calls {
				ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
				var err error
				d := elapsed(func() { err = call(ctx) })
				cancel()
				if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotAcquired) {
					t.Errorf("%s with Redis %s = %v; want ErrUnavailable, not ErrNotAcquired", name, tc.name, err)
				}
				if d > 400*time.Millisecond {
					t.Errorf("%s with Redis %s took %v; want about the 200ms context", name, tc.name, d)
				}
			}
			if tc.name == "killed" {
				// Without a deadline the call ends when go-redis gives up
				// dialing: still ErrUnavailable, never ErrNotAcquired.
				if _, err := c.Once(context.Background(), "k"); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotAcquired) {
					t.Errorf("Once without a deadline, Redis killed = %v; want ErrUnavailable", err)
				}
			}
		})
	}
}

func TestClient_badInput(t *testing.T) {
	if _, err := New(nil, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("New(nil) = %v; want ErrInvalid", err)
	}
	if _, err := New(newRedis(t), &Options{Prefix: "a{b"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("New with prefix a{b = %v; want ErrInvalid", err)
	}
	if _, err := New(newRedis(t), &Options{TTL: -time.Second}); !errors.Is(err, ErrInvalid) {
		t.Errorf("New with TTL -1s = %v; want ErrInvalid", err)
	}
	c := newClient(t, newRedis(t), nil)
	ctx := t.Context()
	for name, err := range map[string]error{
		"empty key":      second(c.Once(ctx, "")),
		"long key":       second(c.Once(ctx, strings.Repeat("x", MaxKeyLen+1))),
		"zero ttl":       second(c.Once(ctx, "k", WithTTL(0))),
		"negative ttl":   second(c.Lock(ctx, "k", WithTTL(-time.Second))),
		"no keys":        second(c.Multi(ctx)),
		"empty in multi": second(c.Multi(ctx, "a", "")),
		"bad retries":    second(c.Once(ctx, "k", WithRetries(-1, 0))),
	} {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v; want ErrInvalid", name, err)
		}
	}
	var nilLock *Lock
	if err := nilLock.Release(ctx); !errors.Is(err, ErrNotHeld) {
		t.Errorf("nil Lock Release = %v; want ErrNotHeld", err)
	}
	if err := nilLock.Extend(ctx, time.Second); !errors.Is(err, ErrNotHeld) {
		t.Errorf("nil Lock Extend = %v; want ErrNotHeld", err)
	}
	recv(t, nilLock.Done(), 10*time.Second, "a nil Lock's Done to be closed")
	var nilClient *Client
	if _, err := nilClient.Once(ctx, "k"); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil Client Once = %v; want ErrInvalid", err)
	}
	c.Close()
	if _, err := c.Once(ctx, "k"); !errors.Is(err, ErrClosed) {
		t.Errorf("Once after Close = %v; want ErrClosed", err)
	}
}

func second[T any](_ T, err error) error { return err }

// One clock wakes every lease: leases taken later with shorter TTLs, or
// extended, are lost in the order of their deadlines, each no later than
// its deadline; released ones never.
func TestLock_leasesWithoutWatchdogEndInDeadlineOrder(t *testing.T) {
	c := newClient(t, newRedis(t), nil)
	// Leases of 1s and more: their loss margin is the full 50ms, well above
	// a loaded machine's timer jitter (a 150ms lease's is 7.5ms).
	ttls := []time.Duration{1800 * time.Millisecond, 1200 * time.Millisecond, 1500 * time.Millisecond, time.Second}
	type held struct {
		l        *Lock
		deadline time.Time
	}
	var ls []held
	for i, ttl := range ttls {
		sent := time.Now()
		l, err := c.Once(t.Context(), key(t, strconv.Itoa(i)), WithWatchdog(false), WithTTL(ttl))
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, held{l, sent.Add(ttl)})
	}
	// The 1s one is extended to end last; a released one never ends by loss.
	sent := time.Now()
	if err := ls[3].l.Extend(t.Context(), 2400*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	ls[3].deadline = sent.Add(2400 * time.Millisecond)
	extra, err := c.Once(t.Context(), key(t, "released"), WithWatchdog(false), WithTTL(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	extra.Release(t.Context())

	var order []int
	bound := time.NewTimer(10 * time.Second) // the last deadline is 2.4s away
	defer bound.Stop()
	for range ls {
		cases := make([]reflect.SelectCase, len(ls), len(ls)+1)
		for i, h := range ls {
			ch := h.l.Done()
			if slices.Contains(order, i) {
				ch = nil
			}
			cases[i] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)}
		}
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(bound.C)})
		i, _, _ := reflect.Select(cases)
		if i == len(ls) {
			t.Fatalf("timed out after 10s waiting for the leases to end; ended so far: %v", order)
		}
		if now := time.Now(); now.After(ls[i].deadline) {
			t.Errorf("lease %d (ttl %v) reported lost %v after its deadline", i, ttls[i], now.Sub(ls[i].deadline))
		}
		if !errors.Is(ls[i].l.Err(), ErrLost) {
			t.Errorf("lease %d ended with %v; want ErrLost", i, ls[i].l.Err())
		}
		order = append(order, i)
	}
	if want := []int{1, 2, 0, 3}; !slices.Equal(order, want) {
		t.Errorf("leases ended in order %v; want %v (by deadline)", order, want)
	}
	if err := extra.Err(); !errors.Is(err, ErrNotHeld) || errors.Is(err, ErrLost) {
		t.Errorf("released lease ended with %v; want its release, not a loss", extra.Err())
	}
}

// renewals is an Observer that hands on every lease renewal.
type renewals struct {
	BaseObserver
	ch chan string // the key renewed; a full buffer drops the event
}

func newRenewals() *renewals { return &renewals{ch: make(chan string, 64)} }

func (r *renewals) Extended(_ context.Context, e ExtendEvent) {
	select {
	case r.ch <- e.Key:
	default:
	}
}

// P4: a lease the watchdog renewed still ends on the server within one TTL
// of its last renewal once its holder goes silent (cut off): another
// client takes the key then, not a renewal's worth of seconds later.
func TestLock_holderCutOffFreesTheKeyWithinItsLease(t *testing.T) {
	p := redistest.StartProxy(t, standaloneAddr(t))
	seen := newRenewals()
	a := newClient(t, redisAt(t, p.Addr()), &Options{Observer: seen})
	b := newClient(t, newRedis(t), nil)
	k := key(t, "k")
	ttl := 300 * time.Millisecond
	if _, err := a.Once(t.Context(), k, WithTTL(ttl)); err != nil {
		t.Fatal(err)
	}
	recv(t, seen.ch, 5*time.Second, "a renewal by the watchdog")
	p.Cut()
	defer p.Restore()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	var err error
	d := elapsed(func() {
		var l *Lock
		if l, err = b.Lock(ctx, k); err == nil {
			l.Release(bg())
		}
	})
	if err != nil || d > ttl+700*time.Millisecond {
		t.Fatalf("Lock after the holder was cut off = %v after %v; want the key within its %v lease", err, d, ttl)
	}
}

// P3 on a slow link: with round trips (600ms) far slower than the loss
// margin, the holder is still told its lease ended before the server frees
// the key, because the lease's deadline counts from when the acquire or
// renewal was sent, not from its reply. Another client, on a fast link,
// takes the key the moment the server frees it and finds the first
// holder's Done closed.
func TestLock_slowLinkHolderToldBeforeTheServerFreesIt(t *testing.T) {
	for _, renewed := range []bool{false, true} {
		t.Run(map[bool]string{false: "grant", true: "renewal"}[renewed], func(t *testing.T) {
			p := redistest.StartProxy(t, standaloneAddr(t))
			seen := newRenewals()
			a := newClient(t, redisAt(t, p.Addr()), &Options{Observer: seen})
			b := newClient(t, newRedis(t), nil)
			k := key(t, "k")
			if _, err := a.Fanout(t.Context(), key(t, "warm"), func(context.Context) ([]byte, error) { return nil, nil }); err != nil {
				t.Fatal(err) // the scripts are loaded before the link is slowed
			}
			p.Delay(300 * time.Millisecond) // each way
			ttl := 3 * time.Second
			la, err := a.Once(t.Context(), k, WithTTL(ttl), WithWatchdog(renewed))
			if err != nil {
				t.Fatal(err)
			}
			if renewed {
				recv(t, seen.ch, 10*time.Second, "a renewal over the slow link")
			}
			p.Cut() // no request in flight: the last reply just came
			defer p.Restore()
			ctx, cancel := context.WithTimeout(t.Context(), 3*ttl)
			defer cancel()
			lb, err := b.Lock(ctx, k)
			if err != nil {
				t.Fatalf("Lock on the fast link = %v", err)
			}
			defer lb.Release(bg())
			select {
			case <-la.Done():
			default:
				t.Fatalf("the server freed the key (another holds it now) while its first holder still believes it holds it")
			}
			if err := la.Err(); !errors.Is(err, ErrLost) {
				t.Fatalf("first holder's Err = %v; want ErrLost", err)
			}
		})
	}
}
