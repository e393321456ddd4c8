package dlockrt

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Auto-pipelining. A script goes to Redis alone while fewer than
// pipelineSlots round trips of the client are in flight, so one caller
// waits for nothing but its own reply. Scripts that find every slot taken
// queue; when a round trip ends, its slot goes to the queue, and the first
// script queued sends all of them (up to maxBatch) in one write, as a
// go-redis pipeline. On a Cluster each primary has its own queue and
// slots, so a slow node never holds up scripts bound for another. Under load, Redis then
// reads and answers many scripts per system call instead of one, which is
// what a busy single-threaded server spends most of its time on.
//
// What a reply means stays per script (P19): each script of a pipeline
// gets its own reply or error; a pipeline that fails (a network error)
// fails each of its scripts with that error, an ambiguous reply for each,
// undone by its caller as when it went alone. Scripts are idempotent per
// owner id, so go-redis resending a whole pipeline is as safe as resending
// one script.
type pipeline struct {
	rdb   redis.UniversalClient
	mu    sync.Mutex
	busy  int      // round trips in flight
	queue []*piped // scripts waiting for a round trip, in arrival order
}

// pipelineSlots is how many round trips (of one node) go out alone before
// scripts queue: a few callers at once keep going in parallel, as without
// pipelining, and only beyond that do scripts wait to share one. (Measured
// at 4, 8 and 32 workers: 4 is no slower than no pipelining at 4 and 8,
// and 2 halved the throughput of 2 to 4 workers.)
const pipelineSlots = 4

// maxBatch bounds one pipeline's scripts; the rest wait for the next slot.
const maxBatch = 256

// piped is one queued script and, once its round trip ended, its reply.
type piped struct {
	ctx   context.Context
	s     *redis.Script
	keys  []string
	args  []any
	v     any
	err   error
	wake  chan bool // true: send batch (this script leads it); false: the reply is in
	batch []*piped
}

// exec runs script s and returns its reply: alone when a slot is free,
// else in the next pipeline. ctx must not be cancellable (run bounds the
// caller's wait by its context).
func (c *Client) exec(ctx context.Context, s *redis.Script, keys []string, args []any) (any, error) {
	p := c.pipelineFor(ctx, keys[0])
	p.mu.Lock()
	if p.busy < pipelineSlots && len(p.queue) == 0 {
		p.busy++
		p.mu.Unlock()
		v, err := s.Run(ctx, p.rdb, keys, args...).Result()
		p.roundTripDone()
		return v, err
	}
	call := &piped{ctx: ctx, s: s, keys: keys, args: args, wake: make(chan bool, 1)}
	p.queue = append(p.queue, call)
	p.mu.Unlock()
	if <-call.wake {
		p.send(call.batch)
		p.roundTripDone()
	}
	return call.v, call.err
}

// pipelineFor returns the pipeline of the node that serves key: the
// client's one, but on a Cluster, its primary's (by the client's view of
// the slots; a script that reaches the wrong node is redirected by
// go-redis as when it goes alone).
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
// the first of them sends up to maxBatch of them; with none, it is free.
func (p *pipeline) roundTripDone() {
	p.mu.Lock()
	if len(p.queue) == 0 {
		p.busy--
		p.mu.Unlock()
		return
	}
	n := min(len(p.queue), maxBatch)
	batch := p.queue[:n:n]
	if n == len(p.queue) {
		p.queue = nil
	} else {
		p.queue = p.queue[n:]
	}
	p.mu.Unlock()
	batch[0].batch = batch
	batch[0].wake <- true
}

// send runs batch's scripts in one pipeline (EVALSHA; the scripts
// Redis no longer has go again by EVAL, in a second one) and wakes every
// script of it but the first, its sender.
func (p *pipeline) send(batch []*piped) {
	if len(batch) == 1 {
		b := batch[0]
		b.v, b.err = b.s.Run(b.ctx, p.rdb, b.keys, b.args...).Result()
		return
	}
	cmds := make([]*redis.Cmd, len(batch))
	pipe := p.rdb.Pipeline()
	for i, b := range batch {
		cmds[i] = b.s.EvalSha(b.ctx, pipe, b.keys, b.args...)
	}
	pipe.Exec(batch[0].ctx)
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
		pipe.Exec(batch[0].ctx)
	}
	for i, b := range batch {
		b.v, b.err = cmds[i].Result()
		if i > 0 {
			b.wake <- false
		}
	}
}
