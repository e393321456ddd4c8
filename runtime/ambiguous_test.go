package dlockrt

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/redistest"
)

// lossyClient returns a dlock client whose connections lose one chosen
// reply (see redistest.ReplyDropper), with go-redis's retries on or off,
// and its scripts already loaded (so that they run by SHA).
func lossyClient(t *testing.T, retries bool) (*Client, *redistest.ReplyDropper) {
	t.Helper()
	d := redistest.NewReplyDropper()
	o := &redis.Options{Addr: standaloneAddr(t), Dialer: d.Dial, MaxRetries: -1}
	if retries {
		o.MaxRetries = 3
	}
	rdb := redis.NewClient(o)
	t.Cleanup(func() { rdb.Close() })
	c := newClient(t, rdb, &Options{OpTimeout: time.Second})
	loadScripts(t, rdb)
	return c, d
}

// loadScripts loads every script on rdb's server, so that they run by SHA
// (a fault that withholds replies would otherwise withhold NOSCRIPT).
func loadScripts(t *testing.T, rdb *redis.Client) {
	t.Helper()
	for _, s := range []*redis.Script{scriptLockAcquire, scriptLockExtend, scriptLockRelease, scriptFanoutJoin,
		scriptFanoutComplete, scriptSemAcquire, scriptSemExtend, scriptSemRelease} {
		if err := s.Load(t.Context(), rdb).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// dropped waits for the dropper to have lost a reply.
func dropped(t *testing.T, d *redistest.ReplyDropper) {
	t.Helper()
	select {
	case <-d.Dropped():
	case <-time.After(5 * time.Second):
		t.Fatal("no reply was dropped")
	}
}

// P19: the reply to lock_acquire is lost after the server ran it. With
// go-redis's retries the retry returns the same grant (the caller holds the
// lock); without them the caller gets ErrUnavailable and the key is free
// again within OpTimeout. Either way nobody is left holding it for a lease.
func TestLock_lostAcquireReplyLeavesNothingHeldByNobody(t *testing.T) {
	for _, retries := range []bool{true, false} {
		t.Run("retries="+strconv.FormatBool(retries), func(t *testing.T) {
			c, d := lossyClient(t, retries)
			other := newClient(t, newRedis(t), nil)
			for _, keys := range [][]string{{key(t, "one")}, {key(t, "a"), key(t, "b")}} {
				d.Arm(scriptLockAcquire.Hash())
				m, err := c.MultiWith(t.Context(), keys, WithTTL(time.Minute))
				dropped(t, d)
				if retries {
					if err != nil {
						t.Fatalf("Multi%v with its reply lost and retried = %v; want the grant", keys, err)
					}
					if err := m.Release(t.Context()); err != nil {
						t.Fatalf("Release after a retried grant = %v", err)
					}
				} else if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("Multi%v with its reply lost = %v; want ErrUnavailable", keys, err)
				}
				// The keys are free well within OpTimeout, not after the
				// minute-long lease.
				waitFree(t, other, keys, 2*time.Second)
			}
		})
	}
}

// P19: a retried lock_release (its first reply lost) reports success.
func TestLock_retriedReleaseReportsSuccess(t *testing.T) {
	c, d := lossyClient(t, true)
	l, err := c.Once(t.Context(), key(t, "k"))
	if err != nil {
		t.Fatal(err)
	}
	d.Arm(scriptLockRelease.Hash())
	if err := l.Release(t.Context()); err != nil {
		t.Fatalf("Release with its first reply lost = %v; want nil", err)
	}
	dropped(t, d)
}

// P19 for semaphores: a lost reply to sem_acquire leaves no permit held by
// nobody, and a retried sem_release reports success.
func TestSemaphore_lostRepliesLeaveNothingHeldByNobody(t *testing.T) {
	for _, retries := range []bool{true, false} {
		t.Run("retries="+strconv.FormatBool(retries), func(t *testing.T) {
			c, d := lossyClient(t, retries)
			other := newClient(t, newRedis(t), nil)
			k := key(t, "s")
			d.Arm(scriptSemAcquire.Hash())
			// Bounded well within the permit's minute: a retry that did not
			// find its own grant would wait for it to lapse.
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			p, err := c.Semaphore(k, 1).Acquire(ctx, WithTTL(time.Minute))
			dropped(t, d)
			if retries {
				if err != nil {
					t.Fatalf("Acquire with its reply lost and retried = %v; want the permit", err)
				}
				d.Arm(scriptSemRelease.Hash())
				if err := p.Release(t.Context()); err != nil {
					t.Fatalf("Release with its first reply lost = %v; want nil", err)
				}
				dropped(t, d)
			} else if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Acquire with its reply lost = %v; want ErrUnavailable", err)
			}
			redistest.WaitFor(t, 2*time.Second, "the permit to be free", func(ctx context.Context) bool {
				p, err := other.Semaphore(k, 1).TryAcquire(ctx)
				if err != nil {
					return false
				}
				p.Release(ctx)
				return true
			})
		})
	}
}

// waitFree waits until c can take every key at once (nobody holds any).
func waitFree(t *testing.T, c *Client, keys []string, within time.Duration) {
	t.Helper()
	redistest.WaitFor(t, within, "the keys to be free", func(ctx context.Context) bool {
		m, err := c.MultiWith(ctx, keys, WithRetries(0, 0))
		if err != nil {
			return false
		}
		m.Release(ctx)
		return true
	})
}

// P19 under one-way partitions (issue 13). With replies cut, Once's script
// runs but its caller never hears of it; with requests cut, the request is
// held in the network. Either way the caller gets ErrUnavailable within its
// context, and once the partition heals the key is free at once (the late
// reply is undone), not after its minute-long lease. (While replies are
// cut the client cannot even open a connection: the key stays held until
// then.)
func TestLock_oneWayPartitions(t *testing.T) {
	for _, toServer := range []bool{false, true} {
		t.Run("cut to server="+strconv.FormatBool(toServer), func(t *testing.T) {
			p := redistest.StartProxy(t, standaloneAddr(t))
			rdb := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1})
			t.Cleanup(func() { rdb.Close() })
			c := newClient(t, rdb, &Options{OpTimeout: 500 * time.Millisecond})
			direct := newClient(t, newRedis(t), nil)
			k := key(t, "k")
			if l, err := c.Once(t.Context(), key(t, "warm"), WithTTL(time.Minute)); err == nil {
				l.Release(t.Context())
			}
			p.CutOneWay(toServer)
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			_, err := c.Once(ctx, k, WithTTL(time.Minute))
			cancel()
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Once across a one-way partition = %v; want ErrUnavailable", err)
			}
			if toServer { // nothing reached the server
				waitFree(t, direct, []string{k}, time.Second)
			}
			p.Restore()
			waitFree(t, direct, []string{k}, 2*time.Second)
		})
	}
}

// P19 for fanout: a join whose reply is lost after the server ran it is
// retried by go-redis and finds its own generation leading: it leads at
// once, rather than waiting out its own lease (10s) as if another led.
func TestFanout_lostJoinReplyStillLeads(t *testing.T) {
	c, d := lossyClient(t, true)
	d.Arm(scriptFanoutJoin.Hash())
	var v []byte
	var err error
	took := elapsed(func() {
		v, err = c.Fanout(t.Context(), key(t, "k"), func(context.Context) ([]byte, error) { return []byte("v"), nil })
	})
	dropped(t, d)
	if err != nil || string(v) != "v" || took > 2*time.Second {
		t.Fatalf("Fanout with its join's reply lost = %q, %v after %v; want \"v\" at once", v, err, took)
	}
}

// P19 with a slow client timeout: a caller that leaves (its context ends)
// before the reply to its acquire, whose connection then says nothing more
// (the reply was lost, the connection never closed), leaves the key free
// within OpTimeout, not when the Redis client's 10s read timeout passes.
func TestLock_callerLeavingBeforeALostReplyLeavesNothingHeld(t *testing.T) {
	d := redistest.NewReplyDropper()
	rdb := redis.NewClient(&redis.Options{Addr: standaloneAddr(t), Dialer: d.Dial, MaxRetries: -1, ReadTimeout: 10 * time.Second})
	t.Cleanup(func() { rdb.Close() })
	c := newClient(t, rdb, &Options{OpTimeout: 500 * time.Millisecond})
	loadScripts(t, rdb)
	other := newClient(t, newRedis(t), nil)
	k := key(t, "k")
	d.ArmSilent(scriptLockAcquire.Hash())
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.Once(ctx, k, WithTTL(time.Minute)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Once whose reply was lost = %v; want ErrUnavailable at its deadline", err)
	}
	dropped(t, d)
	waitFree(t, other, []string{k}, 1500*time.Millisecond)
}

// P19 for Complete: a retried fanout_complete (its first reply lost) finds
// its own outcome stored and reports success.
func TestPush_retriedCompleteReportsSuccess(t *testing.T) {
	c, d := lossyClient(t, true)
	got := make(chan pushOutcome, 1)
	job, err := c.Push(t.Context(), key(t, "k"), func(v []byte, err error) { got <- pushOutcome{v, err} })
	if err != nil {
		t.Fatal(err)
	}
	d.Arm(scriptFanoutComplete.Hash())
	if err := job.Complete(t.Context(), []byte("v"), nil); err != nil {
		t.Fatalf("Complete with its first reply lost = %v; want nil", err)
	}
	dropped(t, d)
	if o := recv(t, got, 10*time.Second, "the leader's onDone"); o.err != nil || string(o.b) != "v" {
		t.Fatalf("onDone = %q, %v; want \"v\"", o.b, o.err)
	}
}
