package dlockrt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/internal/slot"
)

// roundTrips counts what a go-redis client sends: round trips, and the
// commands in them.
type roundTrips struct {
	trips, cmds, piped atomic.Int64 // piped: round trips that carried more than one command
}

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.trips.Add(1)
		r.cmds.Add(1)
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.trips.Add(1)
		r.cmds.Add(int64(len(cmds)))
		if len(cmds) > 1 {
			r.piped.Add(1)
		}
		return next(ctx, cmds)
	}
}

// pipelineState reads p's slots in use and queued scripts.
func pipelineState(p *pipeline) (busy, queued int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.busy, len(p.queue)
}

// stallPipeline pauses srv and starts pipelineSlots Inspects of c that
// take every slot of p, and then n Once calls of keys[i] that queue; it
// returns when they are all in place, with the Once calls' errors to come
// on errs (in no order). The caller resumes srv.
func stallPipeline(t *testing.T, srv *redistest.Server, c *Client, p *pipeline, keys []string) (errs <-chan error) {
	t.Helper()
	srv.Pause()
	t.Cleanup(srv.Resume)
	for i := range pipelineSlots {
		go c.Inspect(context.Background(), fmt.Sprintf("blocker%d", i))
	}
	redistest.WaitFor(t, 5*time.Second, "every slot to be in use", func(context.Context) bool {
		busy, _ := pipelineState(p)
		return busy == pipelineSlots
	})
	ch := make(chan error, len(keys))
	for _, k := range keys {
		go func() {
			l, err := c.Once(context.Background(), k)
			if err == nil {
				err = l.Release(context.Background())
			}
			ch <- err
		}()
	}
	redistest.WaitFor(t, 5*time.Second, "the scripts to queue", func(context.Context) bool {
		_, queued := pipelineState(p)
		return queued == len(keys)
	})
	return ch
}

// Scripts that find every slot in use go in one round trip when one
// frees, each with its own reply; scripts Redis no longer has (SCRIPT
// FLUSH) go again by EVAL, in the pipeline too.
func TestPipeline_queuedScriptsShareARoundTrip(t *testing.T) {
	srv := redistest.StartServer(t)
	rdb := srv.Client()
	t.Cleanup(func() { rdb.Close() })
	rt := &roundTrips{}
	rdb.AddHook(rt)
	c := newClient(t, rdb, nil)
	if err := rdb.ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 20)
	for i := range keys {
		keys[i] = key(t, fmt.Sprint(i))
	}
	errs := stallPipeline(t, srv, c, &c.pipe, keys)
	before := rt.piped.Load()
	srv.Resume()
	for range keys {
		if err := recv(t, errs, 10*time.Second, "the queued Once calls"); err != nil {
			t.Fatalf("a queued Once and Release: %v", err)
		}
	}
	if rt.piped.Load() == before {
		t.Fatalf("no pipeline was sent; want the queued scripts in one")
	}
	for _, k := range keys {
		if st, err := c.Inspect(t.Context(), k); err != nil || st.Lock == nil || st.Lock.Held {
			t.Fatalf("Inspect(%s) = %+v, %v; want released", k, st.Lock, err)
		}
	}
}

// P19 with pipelines: when the reply of a pipeline is lost, every script
// in it fails with an ambiguous error (ErrUnavailable), and each caller
// undoes what its script may have taken: no key stays held by nobody.
func TestPipeline_lostReplyIsAmbiguousForEveryScript(t *testing.T) {
	srv := redistest.StartServer(t)
	dropper := redistest.NewReplyDropper()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Dialer: dropper.Dial, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	c := newClient(t, rdb, nil)
	keys := make([]string, 12)
	for i := range keys {
		keys[i] = key(t, fmt.Sprint(i))
	}
	errs := stallPipeline(t, srv, c, &c.pipe, keys)
	dropper.Arm(keys[3]) // the pipeline that carries it loses its reply
	srv.Resume()
	recv(t, dropper.Dropped(), 10*time.Second, "the pipeline's reply to be lost")
	failed := 0
	for range keys {
		err := recv(t, errs, 10*time.Second, "the queued Once calls")
		switch {
		case errors.Is(err, ErrUnavailable):
			failed++
		case err != nil:
			t.Errorf("a queued Once: %v; want success or ErrUnavailable", err)
		}
	}
	if failed < 2 {
		t.Fatalf("%d queued calls failed; want every one of the lost pipeline (at least 2)", failed)
	}
	for _, k := range keys {
		redistest.WaitFor(t, 5*time.Second, "the undo of "+k, func(ctx context.Context) bool {
			st, err := c.Inspect(ctx, k)
			return err == nil && (st.Lock == nil || !st.Lock.Held)
		})
	}
}

// On a Cluster each primary has its own pipeline: scripts queued for a
// paused node do not hold up a script for another.
func TestPipeline_perNodeOnACluster(t *testing.T) {
	cl := sharedCluster(t).For(t)
	rdb := cl.Client()
	t.Cleanup(func() { rdb.Close() })
	c := newClient(t, rdb, nil)
	stalled := key(t, "stalled")
	node := cl.Owner(slot.Of(mustTag(t, c, stalled)))
	other := ""
	for i := 0; other == ""; i++ {
		k := key(t, fmt.Sprint("other", i))
		if cl.Owner(slot.Of(mustTag(t, c, k))) != node {
			other = k
		}
	}
	mine := c.pipelineFor(t.Context(), mustTag(t, c, stalled)+":lock")
	if mine == &c.pipe {
		t.Fatal("a Cluster key got the client's default pipeline")
	}
	node.Pause()
	t.Cleanup(node.Resume)
	var wg sync.WaitGroup
	for range pipelineSlots + 3 {
		wg.Go(func() { c.Inspect(context.Background(), stalled) })
	}
	redistest.WaitFor(t, 5*time.Second, "the stalled node's scripts to queue", func(context.Context) bool {
		busy, queued := pipelineState(mine)
		return busy == pipelineSlots && queued == 3
	})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := c.Inspect(ctx, other); err != nil {
		t.Fatalf("Inspect of a key on another node while one is paused: %v", err)
	}
	node.Resume()
	waitGroup(t, &wg, 30*time.Second, "the stalled node's scripts")
}

// countExtends counts the client's renewals.
type countExtends struct {
	BaseObserver
	n atomic.Int64
}

func (o *countExtends) Extended(context.Context, ExtendEvent) { o.n.Add(1) }

// Renewals that fall due together share round trips: 300 leases taken at
// about the same time are renewed by the watchdog in far fewer round trips
// than renewals, and none is lost.
func TestWatchdog_renewalsDueTogetherShareRoundTrips(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: standaloneAddr(t)})
	t.Cleanup(func() { rdb.Close() })
	obs := &countExtends{}
	c := newClient(t, rdb, &Options{Observer: obs})
	const n = 300
	locks := make([]*Lock, n)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				l, err := c.Once(t.Context(), key(t, fmt.Sprint(i)), WithTTL(1500*time.Millisecond))
				if err != nil {
					t.Errorf("Once: %v", err)
					return
				}
				locks[i] = l
			}
		})
	}
	waitGroup(t, &wg, 30*time.Second, "the Once calls")
	if t.Failed() {
		return
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
