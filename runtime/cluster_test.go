package dlockrt

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/internal/slot"
)

// P12: every Redis key and channel of one user key lives in one slot, as
// the server computes it, whatever the key contains.
func TestCluster_keysOfOneLockShareASlot(t *testing.T) {
	cl := sharedCluster(t)
	cc := cl.Client()
	c := newClient(t, cc, nil)
	for _, k := range []string{"plain", "}starts-with-close", "{braced}", "a{b}c", "{}", "%7B", "100%", "ключ", "a}b{c"} {
		tag := mustTag(t, c, k)
		var slots []int64
		sem := c.Semaphore(k, 1)
		for _, rk := range []string{lockKey(tag), lockChannel(tag), fanKey(tag), fanChannel(tag), sem.rkey, sem.ch} {
			s, err := cc.ClusterKeySlot(t.Context(), rk).Result()
			if err != nil {
				t.Fatal(err)
			}
			if int(s) != slot.Of(rk) {
				t.Errorf("slot.Of(%q) = %d; server says %d", rk, slot.Of(rk), s)
			}
			slots = append(slots, s)
		}
		for _, s := range slots[1:] {
			if s != slots[0] {
				t.Errorf("key %q: slots of its keys and channels = %v; want one slot", k, slots)
				break
			}
		}
	}
	if a, b := mustTag(t, c, "a}b"), mustTag(t, c, "a%7Db"); a == b {
		t.Errorf("keys a}b and a%%7Db share the stem %q", a)
	}
}

// P12: on a Cluster, a waiter is woken by a release published with
// sharded pub/sub, also after the key's slot moved or its primary failed
// over while it waited; classic PUBLISH is never used.
func TestCluster_Lock_wokenAcrossMoveAndFailover(t *testing.T) {
	cl := sharedCluster(t)
	holder := newClient(t, cl.Client(), nil)
	waiter := newClient(t, cl.Client(), nil)
	for _, fault := range []string{"none", "move", "failover"} {
		t.Run(fault, func(t *testing.T) {
			k := key(t, "k")
			l, err := holder.Once(t.Context(), k, WithTTL(time.Minute))
			if err != nil {
				t.Fatalf("Once = %v", err)
			}
			got := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				defer cancel()
				l2, err := waiter.Lock(ctx, k)
				if err == nil {
					l2.Release(bg())
				}
				got <- err
			}()
			s := slot.Of(lockChannel(mustTag(t, waiter, k)))
			redistest.WaitFor(t, 5*time.Second, "the waiter's subscription", func(ctx context.Context) bool {
				return waiter.mux.numChannels() == 1 && waiterConfirmed(waiter)
			})
			clusterFault(cl.For(t), fault, s)
			if err := l.Release(t.Context()); err != nil {
				t.Fatalf("Release after %s = %v", fault, err)
			}
			if err := recv(t, got, time.Minute, "the waiter's Lock after "+fault+" and release"); err != nil {
				t.Fatalf("Lock after %s and release = %v", fault, err)
			}
		})
	}
	assertNoClassicPublish(t, cl)
}

// assertNoClassicPublish checks P12: every node ran only sharded pub/sub.
func assertNoClassicPublish(t *testing.T, cl *redistest.Cluster) {
	t.Helper()
	for _, n := range cl.Nodes {
		stats, err := n.Client().Info(bg(), "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(stats, "cmdstat_publish:") {
			t.Errorf("node %s ran classic PUBLISH: %s", n.Addr(), stats)
		}
	}
}

// P12 for fanout: a waiter gets the result published with SPUBLISH, also
// after the key's slot moved or its primary failed over while it waited.
func TestCluster_Fanout_acrossMoveAndFailover(t *testing.T) {
	cl := sharedCluster(t)
	leader := newClient(t, cl.Client(), nil)
	waiter := newClient(t, cl.Client(), nil)
	for _, fault := range []string{"none", "move", "failover"} {
		t.Run(fault, func(t *testing.T) {
			k := key(t, "k")
			started, finish := make(chan struct{}), make(chan struct{})
			leaderGot := make(chan error, 1)
			go func() {
				b, err := leader.Fanout(t.Context(), k, func(context.Context) ([]byte, error) {
					close(started)
					recvGo(t, finish, 2*time.Minute, "the test to let the job finish")
					return []byte("v"), nil
				}, WithTimeout(time.Minute))
				if err == nil && string(b) != "v" {
					err = fmt.Errorf("leader got %q", b)
				}
				leaderGot <- err
			}()
			recv(t, started, 10*time.Second, "the leader's job to start")
			got := make(chan error, 1)
			go func() {
				b, err := waiter.Fanout(t.Context(), k, func(context.Context) ([]byte, error) {
					return nil, fmt.Errorf("waiter ran the job")
				}, WithTimeout(time.Minute))
				if err == nil && string(b) != "v" {
					err = fmt.Errorf("waiter got %q", b)
				}
				got <- err
			}()
			redistest.WaitFor(t, 5*time.Second, "the waiter's subscription", func(ctx context.Context) bool {
				return waiter.mux.numChannels() == 1 && waiterConfirmed(waiter)
			})
			s := slot.Of(fanChannel(mustTag(t, waiter, k)))
			clusterFault(cl.For(t), fault, s)
			close(finish)
			if err := recv(t, leaderGot, 90*time.Second, "the leader's Fanout after "+fault); err != nil {
				t.Fatalf("leader after %s: %v", fault, err)
			}
			if err := recv(t, got, 90*time.Second, "the waiter's Fanout after "+fault); err != nil {
				t.Fatalf("waiter after %s: %v", fault, err)
			}
		})
	}
	assertNoClassicPublish(t, cl)
}

// clusterFault moves slot s to another primary ("move"), fails its primary
// over to the replica ("failover"), or does nothing ("none").
func clusterFault(cl *redistest.Cluster, fault string, s int) {
	switch fault {
	case "move":
		cl.MoveSlot(s, otherPrimary(cl, s))
	case "failover":
		cl.FailoverSlot(s)
	}
}

// otherPrimary is a primary serving slots other than the one that owns s.
func otherPrimary(cl *redistest.Cluster, s int) *redistest.Server {
	from := cl.Owner(s)
	for _, n := range cl.Nodes {
		if n != from && cl.IsPrimary(n) && cl.OwnsSlots(n) {
			return n
		}
	}
	panic("no other primary")
}

func waiterConfirmed(c *Client) bool {
	c.mux.mu.Lock()
	defer c.mux.mu.Unlock()
	for _, ch := range c.mux.chans {
		if !ch.confirmed {
			return false
		}
	}
	return true
}

// P11 on a Cluster: keys spread over slots are taken in slot order.
func TestCluster_Multi_overlappingContendersProgress(t *testing.T) {
	testMultiContention(t, sharedCluster(t).Client(), 6, 2*time.Second)
}

// Semaphores on a Cluster: FIFO waiters woken across clients, limit kept.
func TestCluster_Semaphore_limitAndWake(t *testing.T) {
	cl := sharedCluster(t)
	a := newClient(t, cl.Client(), nil)
	b := newClient(t, cl.Client(), nil)
	k := key(t, "k")
	p1, err := a.Semaphore(k, 2).Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	p2, err := a.Semaphore(k, 2).Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Semaphore(k, 2).TryAcquire(t.Context()); err == nil {
		t.Fatal("third permit granted with limit 2")
	}
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		p, err := b.Semaphore(k, 2).Acquire(ctx, WithTTL(time.Minute))
		if err == nil {
			p.Release(bg())
		}
		got <- err
	}()
	redistest.WaitFor(t, 5*time.Second, "the waiter's subscription", func(ctx context.Context) bool {
		return b.mux.numChannels() == 1 && waiterConfirmed(b)
	})
	p1.Release(t.Context())
	if err := recv(t, got, 30*time.Second, "the waiter's Acquire after a release"); err != nil {
		t.Fatalf("Acquire after a release = %v", err)
	}
	p2.Release(t.Context())
	assertNoClassicPublish(t, cl)
}

// The reply to our own SUNSUBSCRIBE that arrives after the channel was
// subscribed again is not the server dropping it (which happens when its
// slot moves, and costs a reroute that holds up the node's messages):
// churn on one channel leaves it subscribed in place, and it hears
// messages.
func TestCluster_mux_resubscribeIsNotMistakenForADrop(t *testing.T) {
	cl := sharedCluster(t)
	cc := cl.Client()
	c := newClient(t, cc, nil)
	name := lockChannel(mustTag(t, c, key(t, "churn")))
	for range 200 {
		s, err := c.mux.subscribe(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		s.close()
	}
	s, err := c.mux.subscribe(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if err := cc.SPublish(t.Context(), name, "hello").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-s.C:
		if n.payload != "hello" {
			t.Errorf("heard %+v; want hello", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10s")
	}
	if n := c.mux.drops.Load(); n != 0 {
		t.Errorf("%d replies to our own unsubscribes taken for the server dropping the channel", n)
	}
}

// P12 for semaphores: a queued waiter is woken by the permit's release
// (a message, not its periodic re-check), also after the key's slot moved
// or its primary failed over while it waited.
func TestCluster_Semaphore_wokenAcrossMoveAndFailover(t *testing.T) {
	cl := sharedCluster(t)
	holder := newClient(t, cl.Client(), nil)
	waiter := newClient(t, cl.Client(), nil)
	var mu sync.Mutex
	var wakes []bool
	testHookSemWoken = func(_ string, byMessage bool) {
		mu.Lock()
		wakes = append(wakes, byMessage)
		mu.Unlock()
	}
	t.Cleanup(func() { testHookSemWoken = nil })
	for _, fault := range []string{"none", "move", "failover"} {
		t.Run(fault, func(t *testing.T) {
			k := key(t, "k")
			p, err := holder.Semaphore(k, 1).Acquire(t.Context(), WithTTL(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			got := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				defer cancel()
				p2, err := waiter.Semaphore(k, 1).Acquire(ctx)
				if err == nil {
					p2.Release(bg())
				}
				got <- err
			}()
			redistest.WaitFor(t, 5*time.Second, "the waiter's subscription", func(ctx context.Context) bool {
				return waiter.mux.numChannels() == 1 && waiterConfirmed(waiter)
			})
			clusterFault(cl.For(t), fault, slot.Of(waiter.Semaphore(k, 1).ch))
			// Resubscribed where the slot lives now before the release.
			redistest.WaitFor(t, 10*time.Second, "the waiter's subscription after the fault", func(ctx context.Context) bool {
				return waiter.mux.numChannels() == 1 && waiterConfirmed(waiter)
			})
			mu.Lock()
			wakes = nil
			mu.Unlock()
			if err := p.Release(t.Context()); err != nil {
				t.Fatalf("Release after %s = %v", fault, err)
			}
			if err := recv(t, got, time.Minute, "the waiter's Acquire after "+fault+" and release"); err != nil {
				t.Fatalf("Acquire after %s and release = %v", fault, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(wakes) == 0 || !wakes[len(wakes)-1] {
				t.Errorf("after %s the waiter woke %v (true: by a message); want its last wake by the release's message", fault, wakes)
			}
		})
	}
	assertNoClassicPublish(t, cl)
}

// P11 on a Cluster, where each key of a multi-lock is taken by a script of
// its own: when a later key is held by another, the keys taken before it
// are given back at once, not left held until their lease ends.
func TestCluster_Multi_heldKeyFailsAndHoldsNothing(t *testing.T) {
	cl := sharedCluster(t)
	a, b := newClient(t, cl.Client(), nil), newClient(t, cl.Client(), nil)
	// Two keys of different slots, first and second in the canonical order.
	first, second := key(t, "x0"), ""
	for i := 1; second == "" || slot.Of(mustTag(t, a, second)) <= slot.Of(mustTag(t, a, first)); i++ {
		second = key(t, "x"+strconv.Itoa(i))
	}
	hold, err := b.Once(t.Context(), second, WithTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Release(bg())
	var me *MultiLockError
	if _, err := a.MultiWith(t.Context(), []string{first, second}, WithTTL(time.Minute)); !errors.As(err, &me) || len(me.Keys) != 1 || me.Keys[0] != second {
		t.Fatalf("Multi with its second key held = %v; want a MultiLockError naming %q", err, second)
	}
	if l, err := b.Once(t.Context(), first); err != nil {
		t.Fatalf("the first key after the failed Multi = %v; want it free (given back)", err)
	} else {
		l.Release(bg())
	}
}
