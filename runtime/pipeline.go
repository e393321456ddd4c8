package dlockrt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Auto-pipelining. A script goes to Redis alone while fewer than
// pipelineSlots round trips of the client to its node are in flight, so
// one caller waits for nothing but its own reply. Scripts that find every
// slot taken queue, and so do the watchdog's renewals (patient); when a
// round trip ends, when a script that is not patient finds a slot free,
// or when the first of them has waited maxQueueWait (a slow link, a
// stalled connection, renewals alone), the first script queued sends the
// queue (up to maxBatch) in one write, as a go-redis pipeline. On a Cluster each primary (as the client sees the
// slots) has its own queue and slots, so a slow node holds up no script
// bound for another. Under load, Redis then reads and answers many scripts
// per system call instead of one, which is what a busy single-threaded
// server spends most of its time on.
//
// What a reply means stays per script (P19): each script of a pipeline
// gets its own reply or error; a pipeline that fails (a network error, a
// hook that refused it) fails each script not yet answered with that
// error, an ambiguous reply for each, undone by its caller as when it
// went alone. go-redis may send a whole pipeline again after a network
// error; a batch never carries two scripts of one key, so each script
// then finds the key as its own first run left it (every script is
// idempotent per id), as when one script is sent again.
type pipeline struct {
	rdb   redis.UniversalClient
	mu    sync.Mutex
	busy  int          // round trips in flight
	queue []*piped     // scripts waiting for a round trip, in arrival order
	timer *time.Timer  // armed while scripts queue: sends them when they waited too long
	late  atomic.Int64 // batches the timer sent (read by tests)
}

// pipelineSlots is how many round trips (of one node) go out alone before
// scripts queue: a few callers at once keep going in parallel, as without
// pipelining, and only beyond that do scripts wait to share one. (Measured
// at 4, 8 and 32 workers: 4 is no slower than no pipelining at 4 and 8,
// and 2 halved the throughput of 2 to 4 workers.)
const pipelineSlots = 4

// maxQueueWait bounds how long a queued script waits for a round trip to
// end before it goes anyway, in a round trip of its own beyond the slots:
// on a link slower than that, or with the slots' connections stalled,
// queueing costs at most this much. (A variable for tests that stall the
// slots to fill the queue.)
var maxQueueWait = time.Millisecond

// maxBatch bounds one pipeline's scripts; the rest wait for the next slot.
const maxBatch = 256

// piped is one queued script and, once its round trip ended, its reply.
type piped struct {
	ctx    context.Context
	s      *redis.Script
	keys   []string
	args   []any
	queued time.Time
	v      any
	err    error
	wake   chan bool // true: send batch (this script leads it); false: the reply is in
	batch  []*piped
}

// exec runs script s and returns its reply: alone when a slot is free,
// else in the next pipeline. ctx must not be cancellable (run bounds the
// caller's wait by its context). A patient script (see patient) queues
// even when a slot is free; the next script that is not patient takes the
// queue along in its round trip, or the queue goes once its first script
// waited maxQueueWait.
func (c *Client) exec(ctx context.Context, s *redis.Script, keys []string, args []any) (any, error) {
	p := c.pipelineFor(ctx, keys[0])
	wait := mayWait(ctx)
	p.mu.Lock()
	free := !wait && p.busy < pipelineSlots
	if free && len(p.queue) == 0 {
		p.busy++
		p.mu.Unlock()
		defer p.roundTripDone()
		return s.Run(ctx, p.rdb, keys, args...).Result()
	}
	call := &piped{ctx: ctx, s: s, keys: keys, args: args, queued: time.Now(), wake: make(chan bool, 1)}
	p.queue = append(p.queue, call)
	switch {
	case free: // patient scripts queue with a slot free: they go now, with this one
		p.busy++
		p.sendLocked()
	case len(p.queue) == 1:
		p.armLocked(maxQueueWait)
		p.mu.Unlock()
	default:
		p.mu.Unlock()
	}
	if <-call.wake {
		defer p.roundTripDone()
		p.send(call.batch)
	}
	return call.v, call.err
}

// patientKey marks the context of a patient script (its *patience).
type patientKey struct{}

// patience is one renewal's: its first script may wait, the rest may not.
type patience struct{ spent atomic.Bool }

// patient marks ctx's first script patient: it may wait up to
// maxQueueWait to share a round trip even when a slot is free. The
// watchdog's renewals are: they come a third of a lease before it would
// end and lose nothing by waiting a millisecond, and the renewals the
// lease clock wakes together then go in one round trip instead of taking
// free slots one by one. Only the first script waits, so that a renewal
// of several scripts (a multi-lock on a Cluster renews its groups one
// after another) waits once, not once per script.
func patient(ctx context.Context) context.Context {
	return context.WithValue(ctx, patientKey{}, &patience{})
}

// mayWait reports whether a script run with ctx may wait (see patient).
func mayWait(ctx context.Context) bool {
	p, _ := ctx.Value(patientKey{}).(*patience)
	return p != nil && !p.spent.Swap(true)
}

// pipelineFor returns the pipeline of the node that serves key: the
// client's one, but on a Cluster, its primary's (by the client's view of
// the slots, best effort: a script that reaches the wrong node is
// redirected by go-redis as when it goes alone, and when the view cannot
// be had, the client's one serves).
func (c *Client) pipelineFor(ctx context.Context, key string) *pipeline {
	cc, ok := c.rdb.(*redis.ClusterClient)
	if !ok {
		return &c.pipe
	}
	node, err := cc.MasterForKey(ctx, key)
	if err != nil {
		return &c.pipe
	}
	addr := node.Options().Addr
	c.pipesMu.Lock()
	defer c.pipesMu.Unlock()
	p := c.pipes[addr]
	if p == nil {
		p = &pipeline{rdb: c.rdb}
		if c.pipes == nil {
			c.pipes = map[string]*pipeline{}
		}
		c.pipes[addr] = p
	}
	return p
}

// roundTripDone hands the ended round trip's slot to the queued scripts:
// the first of them sends a batch of them; with none, the slot is free.
func (p *pipeline) roundTripDone() {
	p.mu.Lock()
	if len(p.queue) == 0 {
		p.busy--
		p.mu.Unlock()
		return
	}
	p.sendLocked()
}

// overdue runs when the first queued script may have waited maxQueueWait:
// if so, its batch goes now, in a round trip beyond the slots.
func (p *pipeline) overdue() {
	p.mu.Lock()
	if len(p.queue) == 0 {
		p.mu.Unlock()
		return
	}
	if wait := maxQueueWait - time.Since(p.queue[0].queued); wait > 0 {
		p.armLocked(wait)
		p.mu.Unlock()
		return
	}
	p.busy++
	p.late.Add(1)
	p.sendLocked()
}

func (p *pipeline) armLocked(d time.Duration) {
	if p.timer == nil {
		p.timer = time.AfterFunc(d, p.overdue)
		return
	}
	p.timer.Reset(d)
}

// sendLocked (p.mu held, and released) takes a batch off the queue, for a
// round trip counted in busy, and wakes its first script to send it. A
// batch holds at most maxBatch scripts and never two of one key (a script
// of a key already in it waits for the next one, keeping its place).
func (p *pipeline) sendLocked() {
	var batch, rest []*piped
	inBatch := map[string]bool{}
	for _, q := range p.queue {
		if len(batch) == maxBatch || sharesKey(inBatch, q.keys) {
			rest = append(rest, q)
			continue
		}
		for _, k := range q.keys {
			inBatch[k] = true
		}
		batch = append(batch, q)
	}
	p.queue = rest
	if len(rest) > 0 {
		p.armLocked(max(maxQueueWait-time.Since(rest[0].queued), 0))
	}
	p.mu.Unlock()
	batch[0].batch = batch
	batch[0].wake <- true
}

func sharesKey(in map[string]bool, keys []string) bool {
	for _, k := range keys {
		if in[k] {
			return true
		}
	}
	return false
}

// errNotSent is the reply of a script of a pipeline that ended without
// answering it and without saying why. It is not an error reply of
// Redis: the script may have run (an ambiguous reply).
var errNotSent = errors.New("dlock: the pipeline ended without this script's reply")

// send runs batch's scripts in one pipeline (EVALSHA; the scripts Redis no
// longer has go again by EVAL, in a second one) and wakes every script of
// it but the first, its sender, even when sending panics (a hook).
func (p *pipeline) send(batch []*piped) {
	woken := false
	defer func() {
		if woken {
			return
		}
		r := recover() // sending panicked: the others learn it, and so does the sender's caller
		if r == nil {
			return
		}
		for _, b := range batch[1:] {
			b.v, b.err = nil, fmt.Errorf("%w: the pipeline panicked: %v", errNotSent, r)
			b.wake <- false
		}
		panic(r)
	}()
	if len(batch) == 1 {
		b := batch[0]
		b.v, b.err = b.s.Run(b.ctx, p.rdb, b.keys, b.args...).Result()
		woken = true
		return
	}
	cmds := make([]*redis.Cmd, len(batch))
	pipe := p.rdb.Pipeline()
	for i, b := range batch {
		cmds[i] = b.s.EvalSha(b.ctx, pipe, b.keys, b.args...)
	}
	_, err := pipe.Exec(batch[0].ctx)
	var again []int
	for i, cmd := range cmds {
		if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		pipe := p.rdb.Pipeline()
		for _, i := range again {
			b := batch[i]
			cmds[i] = b.s.Eval(b.ctx, pipe, b.keys, b.args...)
		}
		if _, e := pipe.Exec(batch[0].ctx); e != nil {
			err = e
		}
	}
	for i, b := range batch {
		b.v, b.err = cmds[i].Result()
		if b.v == nil && b.err == nil { // never answered: a hook refused the pipeline, say
			b.err = errNotSent
			if err != nil {
				b.err = fmt.Errorf("%w: %w", errNotSent, err)
			}
		}
	}
	woken = true
	for _, b := range batch[1:] {
		b.wake <- false
	}
}
