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

// holdQueues makes queued scripts wait for a round trip to end, however
// long, for the rest of the test: tests that stall the slots can fill the
// queue. Call it before making the test's clients.
func holdQueues(t *testing.T) {
	old := maxQueueWait
	maxQueueWait = time.Hour
	t.Cleanup(func() { maxQueueWait = old })
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
	holdQueues(t)
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
	holdQueues(t)
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
	holdQueues(t)
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
	// go-redis loads what it knows of the commands from one node, once, on
	// a client's first script: not from the node about to be paused.
	for _, k := range []string{stalled, other} {
		if _, err := c.Inspect(t.Context(), k); err != nil {
			t.Fatal(err)
		}
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

// fakeBusy marks every slot of p in use, as if pipelineSlots round trips
// hung. end(n) ends n of them (n < 0: all that remain), as a round trip
// ending does: a slot freed goes to the queue first.
func fakeBusy(p *pipeline) (end func(n int)) {
	p.mu.Lock()
	p.busy += pipelineSlots
	p.mu.Unlock()
	left := pipelineSlots
	return func(n int) {
		if n < 0 || n > left {
			n = left
		}
		left -= n
		for range n {
			p.roundTripDone()
		}
	}
}

// Scripts queued behind round trips that hang go on their own once they
// waited maxQueueWait: a stalled connection holds nobody up.
func TestPipeline_stalledSlotsHoldNobodyUp(t *testing.T) {
	c := newClient(t, newRedis(t), nil)
	defer fakeBusy(&c.pipe)(-1)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	l, err := c.Once(ctx, key(t, "k"))
	if err != nil {
		t.Fatalf("Once behind stalled slots: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release behind stalled slots: %v", err)
	}
}

// cmdsHook is a go-redis hook that runs f on what goes out: a command
// alone, or a pipeline's commands. An error from f refuses them unsent.
type cmdsHook func(cmds []redis.Cmder) error

func (h cmdsHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h cmdsHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if err := h([]redis.Cmder{cmd}); err != nil {
			return err
		}
		return next(ctx, cmd)
	}
}

func (h cmdsHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if err := h(cmds); err != nil {
			return err
		}
		return next(ctx, cmds)
	}
}

var errRefused = errors.New("refused by a hook")

// A pipeline a hook refused fails each of its scripts with that error, as
// it fails a script alone: a queued Release is ErrUnavailable, never a
// reply read as "not held".
func TestPipeline_refusedPipelineFailsEachScript(t *testing.T) {
	holdQueues(t)
	rdb := newRedis(t)
	var refusing atomic.Bool // while set, every command and pipeline is refused (as by a circuit breaker)
	rdb.AddHook(cmdsHook(func([]redis.Cmder) error {
		if refusing.Load() {
			return errRefused
		}
		return nil
	}))
	c := newClient(t, rdb, nil)
	var locks []*Lock
	for i := range 3 {
		l, err := c.Once(t.Context(), key(t, fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		locks = append(locks, l)
	}
	end := fakeBusy(&c.pipe)
	errs := make(chan error, len(locks))
	for _, l := range locks {
		go func() { errs <- l.Release(context.Background()) }()
	}
	redistest.WaitFor(t, 5*time.Second, "the releases to queue", func(context.Context) bool {
		_, queued := pipelineState(&c.pipe)
		return queued == len(locks)
	})
	refusing.Store(true)
	end(1) // one stalled round trip ends: the queue goes
	for range locks {
		if err := recv(t, errs, 5*time.Second, "the queued releases"); !errors.Is(err, ErrUnavailable) || !errors.Is(err, errRefused) {
			t.Errorf("a Release whose pipeline a hook refused = %v; want ErrUnavailable with the hook's error", err)
		}
	}
	refusing.Store(false)
	end(-1)
}

// A panic while sending (in a hook) frees the slots it held and fails the
// other scripts of its pipeline: later scripts still go.
func TestPipeline_panicFreesItsSlot(t *testing.T) {
	holdQueues(t)
	rdb := newRedis(t)
	var panics atomic.Int32
	rdb.AddHook(panicker{&panics})
	c := newClient(t, rdb, nil)
	call := func(k string) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panicked: %v", r)
			}
		}()
		_, err = c.Inspect(context.Background(), key(t, k))
		return err
	}
	panics.Store(pipelineSlots + 1)
	for range pipelineSlots + 1 { // alone: each frees its slot
		if err := call("k"); err == nil {
			t.Fatal("a panicking hook did not panic")
		}
	}
	panics.Store(1)
	end := fakeBusy(&c.pipe)
	errs := make(chan error, 3)
	for i := range 3 {
		go func() { errs <- call(fmt.Sprint(i)) }() // keys of their own: one pipeline
	}
	redistest.WaitFor(t, 5*time.Second, "the scripts to queue", func(context.Context) bool {
		_, queued := pipelineState(&c.pipe)
		return queued == 3
	})
	end(1)
	for range 3 {
		if err := recv(t, errs, 5*time.Second, "every script of the panicked pipeline"); err == nil {
			t.Error("a script of a panicked pipeline succeeded")
		}
	}
	end(-1)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := c.Inspect(ctx, key(t, "k")); err != nil {
		t.Fatalf("Inspect after the panics: %v; want the slots free", err)
	}
}

// panicker is a hook that panics, while n > 0, once per command or pipeline.
type panicker struct{ n *atomic.Int32 }

func (p panicker) DialHook(next redis.DialHook) redis.DialHook { return next }

func (p panicker) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if p.n.Add(-1) >= 0 {
			panic("hook")
		}
		return next(ctx, cmd)
	}
}

func (p panicker) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if p.n.Add(-1) >= 0 {
			panic("hook")
		}
		return next(ctx, cmds)
	}
}

// go-redis sends a pipeline again when its reply is lost; a batch never
// carries two scripts of one key, so a Release queued with another
// caller's Once of its key still finds the key as it left it, and
// reports success.
func TestPipeline_resentBatchHoldsOneScriptPerKey(t *testing.T) {
	holdQueues(t)
	dropper := redistest.NewReplyDropper()
	rdb := redis.NewClient(&redis.Options{Addr: standaloneAddr(t), Dialer: dropper.Dial}) // go-redis retries
	t.Cleanup(func() { rdb.Close() })
	c := newClient(t, rdb, nil)
	k := key(t, "k")
	l, err := c.Once(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	end := fakeBusy(&c.pipe)
	released, taken := make(chan error, 1), make(chan error, 1)
	go func() { released <- l.Release(context.Background()) }()
	redistest.WaitFor(t, 5*time.Second, "the release to queue", func(context.Context) bool {
		_, queued := pipelineState(&c.pipe)
		return queued == 1
	})
	go func() {
		l2, err := c.Once(context.Background(), k)
		if err == nil {
			l2.Release(bg())
		}
		taken <- err
	}()
	redistest.WaitFor(t, 5*time.Second, "the Once to queue", func(context.Context) bool {
		_, queued := pipelineState(&c.pipe)
		return queued == 2
	})
	dropper.Arm(k)
	end(1) // one slot frees: the release goes, alone in its batch; the Once waits for the next
	recv(t, dropper.Dropped(), 5*time.Second, "a reply to be lost")
	if err := recv(t, released, 10*time.Second, "the Release"); err != nil {
		t.Errorf("Release whose pipeline was sent again = %v; want success", err)
	}
	if err := recv(t, taken, 10*time.Second, "the Once"); err != nil {
		t.Errorf("Once after the release = %v; want the lock", err)
	}
	end(-1)
}
