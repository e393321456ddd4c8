package dlockrt

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/internal/slot"
)

// P12: one node's channels of many slots, subscribed at once (so the
// writer has them all in one batch), are all confirmed and heard; and
// after that node's subscription connection is killed they are all heard
// again. A Cluster refuses an SSUBSCRIBE of channels of several slots
// (CROSSSLOT), so each slot's channels go in their own command, and a
// broken connection is replaced rather than resubscribed by go-redis in
// one command.
func TestCluster_mux_channelsOfManySlotsOnOneNode(t *testing.T) {
	cl := sharedCluster(t)
	cc := cl.Client()
	first := make(chan struct{})
	held := make(chan struct{})
	var firstName string
	var once sync.Once
	setHook(t, &testHookMuxWrote, func(sub, _ []string) {
		for _, n := range sub {
			if n == firstName {
				once.Do(func() {
					close(first)
					recvGo(t, held, 10*time.Second, "the test to let the writer go on")
				})
			}
		}
	})
	c := newClient(t, cc, nil)
	names := sameNodeChannels(t, c, 8)
	firstName = names[0]
	type subscribed struct {
		name string
		s    *subscription
		err  error
	}
	subs := make(chan subscribed, len(names))
	subscribe := func(name string) {
		s, err := c.mux.subscribe(t.Context(), name)
		subs <- subscribed{name, s, err}
	}
	go subscribe(names[0])
	recv(t, first, 10*time.Second, "the first SSUBSCRIBE")
	for _, n := range names[1:] {
		go subscribe(n)
	}
	redistest.WaitFor(t, 10*time.Second, "every channel to be wanted", func(context.Context) bool {
		return c.mux.numChannels() == len(names)
	})
	close(held)
	byName := map[string]*subscription{}
	for range names {
		r := recv(t, subs, 15*time.Second, "a subscription to be confirmed")
		if r.err != nil {
			t.Errorf("subscribe %s: %v", r.name, r.err)
			continue
		}
		defer r.s.close()
		byName[r.name] = r.s
	}
	if t.Failed() {
		t.FailNow()
	}
	heardOnEach(t, cc, byName, "before")

	owner := cl.Owner(slot.Of(names[0]))
	if err := owner.Client().Do(bg(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatalf("CLIENT KILL = %v", err)
	}
	heardOnEach(t, cc, byName, "after")
}

// sameNodeChannels returns n lock channels of distinct slots that one
// node serves.
func sameNodeChannels(t *testing.T, c *Client, n int) []string {
	t.Helper()
	var names []string
	var node string
	slots := map[int]bool{}
	for i := 0; len(names) < n && i < 10000; i++ {
		name := lockChannel(mustTag(t, c, key(t, fmt.Sprint("ch", i))))
		_, addr, err := c.mux.route(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		if node == "" {
			node = addr
		}
		if addr == node && !slots[slot.Of(name)] {
			slots[slot.Of(name)] = true
			names = append(names, name)
		}
	}
	if len(names) < n {
		t.Fatalf("found %d channels of distinct slots on %s; want %d", len(names), node, n)
	}
	return names
}

// heardOnEach publishes payload on each subscription's channel until the
// subscription hears it (after a broken connection, the resubscription
// takes a moment), for at most 15s in all.
func heardOnEach(t *testing.T, pub *redis.ClusterClient, subs map[string]*subscription, payload string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for name, s := range subs {
		for heard := false; !heard; {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not hear %q within 15s", name, payload)
			}
			if err := pub.SPublish(bg(), name, payload).Err(); err != nil {
				t.Logf("SPUBLISH %s: %v", name, err)
			}
			wait := time.NewTimer(100 * time.Millisecond)
		drain:
			for {
				select {
				case n := <-s.C:
					if n.payload == payload {
						heard = true
						break drain
					}
				case <-wait.C:
					break drain
				}
			}
			wait.Stop()
		}
	}
}

// P12: an unsubscribe sent on a connection that is then replaced is never
// answered; the replacement forgets it, so when the server later drops the
// channel (its slot moved) the drop is not taken for that answer, and the
// channel follows its slot and is heard there.
func TestCluster_mux_unansweredUnsubscribeDoesNotHideADrop(t *testing.T) {
	cl := sharedCluster(t)
	cc := cl.Client()
	k := key(t, "k")
	var name string
	var s1 *subscription
	unsubbing, sendIt, replaced := make(chan struct{}), make(chan struct{}), make(chan struct{}, 1)
	var unsubOnce, resetOnce sync.Once
	setHook(t, &testHookMuxWrote, func(_, unsub []string) {
		if slices.Contains(unsub, name) {
			unsubOnce.Do(func() {
				close(unsubbing)
				recvGo(t, sendIt, 10*time.Second, "the test to let the unsubscribe go out")
			})
		}
	})
	// The subscriber leaves while the broken connection is being replaced:
	// after the subscribers were told, before the new connection is in
	// place. The unsubscribe then goes out on the old connection.
	setHook(t, &testHookMuxResetting, func() {
		resetOnce.Do(func() {
			s1.close()
			recvGo(t, unsubbing, 10*time.Second, "the writer to unsubscribe")
		})
	})
	setHook(t, &testHookMuxBroken, func() {
		select {
		case replaced <- struct{}{}:
		default:
		}
	})
	c := newClient(t, cc, nil)
	name = lockChannel(mustTag(t, c, k))
	var err error
	if s1, err = c.mux.subscribe(t.Context(), name); err != nil {
		t.Fatal(err)
	}
	owner := cl.Owner(slot.Of(name))
	if err := owner.Client().Do(bg(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatalf("CLIENT KILL = %v", err)
	}
	recv(t, replaced, 10*time.Second, "the broken connection to be replaced")
	close(sendIt) // on the old, closed connection: no answer ever comes
	s2, err := c.mux.subscribe(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.close()
	heardOnEach(t, cc, map[string]*subscription{name: s2}, "before the move")
	s := slot.Of(name)
	cl.MoveSlot(s, otherPrimary(cl, s))
	heardOnEach(t, cc, map[string]*subscription{name: s2}, "after the move")
}
