package dlockrt

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/redistest"
)

// Patient scripts (the watchdog's renewals) wait to share a round trip
// even when a slot is free: the first script that is not patient takes
// them along, each with its own reply, and nothing is sent before.
func TestPipeline_patientScriptsGoWithTheNextScript(t *testing.T) {
	c, count := patientClient(t)
	keys := make([]string, 8)
	for i := range keys {
		keys[i] = key(t, fmt.Sprint(i))
		if _, err := c.Once(t.Context(), keys[i], WithWatchdog(false)); err != nil {
			t.Fatal(err)
		}
	}
	rt := count()
	states := make(chan *KeyState, len(keys))
	for _, k := range keys {
		go func() {
			st, err := c.Inspect(patient(t.Context()), k)
			if err != nil {
				t.Errorf("patient Inspect of %s: %v", k, err)
			}
			states <- st
		}()
	}
	redistest.WaitFor(t, 5*time.Second, "the patient scripts to queue", func(context.Context) bool {
		_, queued := pipelineState(&c.pipe)
		return queued == len(keys)
	})
	if n := rt.trips.Load(); n != 0 {
		t.Fatalf("%d round trips while only patient scripts queued with slots free; want them to wait", n)
	}
	if _, err := c.Inspect(t.Context(), key(t, "impatient")); err != nil {
		t.Fatal(err)
	}
	for range keys {
		if st := <-states; st == nil || st.Lock == nil || !st.Lock.Held {
			t.Fatalf("a patient Inspect of a held lock = %+v; want it held", st)
		}
	}
	if trips, cmds := rt.trips.Load(), rt.cmds.Load(); trips != 1 || cmds != int64(len(keys))+1 {
		t.Fatalf("%d round trips of %d scripts; want the impatient one to take the %d patient ones along in 1", trips, cmds, len(keys))
	}
	if busy, queued := pipelineState(&c.pipe); busy != 0 || queued != 0 {
		t.Fatalf("after the round trip: %d slots in use, %d queued; want none", busy, queued)
	}
}

// Patient scripts with nobody else to go with go once the first of them
// waited maxQueueWait, all in one round trip.
func TestPipeline_patientScriptsAloneGoAfterTheQueueWait(t *testing.T) {
	c, count := patientClient(t)
	rt := count()
	const n = 5
	done := make(chan error, n)
	for i := range n {
		go func() {
			_, err := c.Inspect(patient(t.Context()), key(t, fmt.Sprint(i)))
			done <- err
		}()
	}
	redistest.WaitFor(t, 5*time.Second, "the patient scripts to queue", func(context.Context) bool {
		_, queued := pipelineState(&c.pipe)
		return queued == n
	})
	maxQueueWait = 0 // the first has now waited long enough: the timer's call
	c.pipe.overdue()
	for range n {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if trips, cmds := rt.trips.Load(), rt.cmds.Load(); trips != 1 || cmds != n {
		t.Fatalf("%d round trips of %d scripts; want the %d patient scripts in 1", trips, cmds, n)
	}
}

// countExtends counts the client's renewals.
type countExtends struct {
	BaseObserver
	n atomic.Int64
}

func (o *countExtends) Extended(context.Context, ExtendEvent) { o.n.Add(1) }

// Renewals that fall due close together share round trips, and stay in
// step: 60 leases of 3 s are taken one every 10 ms, so each falls due 10
// ms after the one before. Renewed each when due, they would take a round
// trip each (a wake-up 40 ms late, under load, would share four); renewed
// a little early (renewEarly: 250 ms here) together with the lease that
// woke the clock, they take about three round trips per round of
// renewals. None is lost.
func TestWatchdog_renewalsDueTogetherShareRoundTrips(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: standaloneAddr(t)})
	t.Cleanup(func() { rdb.Close() })
	obs := &countExtends{}
	c := newClient(t, rdb, &Options{Observer: obs})
	const n = 60
	locks := make([]*Lock, n)
	pace := time.NewTicker(10 * time.Millisecond) // the leases' due times, 10 ms apart
	defer pace.Stop()
	for i := range locks {
		<-pace.C
		l, err := c.Once(t.Context(), key(t, fmt.Sprint(i)), WithTTL(3*time.Second))
		if err != nil {
			t.Fatalf("Once: %v", err)
		}
		locks[i] = l
	}
	rt := &roundTrips{}
	rdb.AddHook(rt)
	redistest.WaitFor(t, 20*time.Second, "two renewals of every lease", func(context.Context) bool { return obs.n.Load() >= 2*n })
	trips, renewals := rt.trips.Load(), obs.n.Load()
	for i, l := range locks {
		select {
		case <-l.Done():
			t.Fatalf("lease %d lost: %v", i, l.Err())
		default:
		}
		l.Release(bg())
	}
	t.Logf("%d renewals in %d round trips", renewals, trips)
	if trips*4 > renewals {
		t.Fatalf("%d renewals took %d round trips; want them to share round trips (at most a quarter as many)", renewals, trips)
	}
}

// A multi-lock on a Cluster is renewed group by group (a group per key),
// one script after another: only the first waits to share a round trip,
// so the renewal waits for the queue's timer once, not once per key (a
// 100-key multi-lock would need 100 ms more for each renewal, and lose a
// short lease).
func TestMultiLock_clusterRenewalWaitsOnce(t *testing.T) {
	cl := sharedCluster(t)
	c := newClient(t, cl.Client(), nil)
	keys := make([]string, 20)
	for i := range keys {
		keys[i] = key(t, fmt.Sprint("m", i))
	}
	m, err := c.MultiWith(t.Context(), keys, WithTTL(time.Minute), WithWatchdog(false))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Release(bg())
	if len(m.set.groups) < 2 {
		t.Fatalf("a multi-lock of %d keys on a Cluster has %d groups; want one per key", len(keys), len(m.set.groups))
	}
	late := func() (n int64) {
		c.pipesMu.Lock()
		defer c.pipesMu.Unlock()
		for _, p := range c.pipes {
			n += p.late.Load()
		}
		return n + c.pipe.late.Load()
	}
	before := late()
	if ok, err := m.lease.extend(patient(t.Context()), time.Minute); !ok || err != nil {
		t.Fatalf("the watchdog's renewal of the multi-lock = %v, %v", ok, err)
	}
	if n := late() - before; n > 1 {
		t.Fatalf("a renewal of %d groups waited for the queue's timer %d times; want once at most", len(m.set.groups), n)
	}
}

// patientClient returns a client of a server of its own, with queued
// scripts held (holdQueues), and count, which starts counting the
// client's round trips once the inspect script is loaded and a connection
// for pipelines dialled, so that they count the test's scripts only.
func patientClient(t *testing.T) (c *Client, count func() *roundTrips) {
	holdQueues(t)
	srv := redistest.StartServer(t)
	rdb := srv.Client()
	t.Cleanup(func() { rdb.Close() })
	return newClient(t, rdb, nil), func() *roundTrips {
		if err := scriptInspect.Load(t.Context(), rdb).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := rdb.Pipelined(t.Context(), func(p redis.Pipeliner) error { p.Ping(t.Context()); return nil }); err != nil {
			t.Fatal(err)
		}
		rt := &roundTrips{}
		rdb.AddHook(rt)
		return rt
	}
}
