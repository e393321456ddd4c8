package dlockrt

import (
	"context"
	"errors"
	"time"
)

// Push joins the fanout of key: the distributed callback queue. Exactly one
// caller in the fleet becomes the leader and gets a *Job; every other caller
// gets ErrNotAcquired. (A join whose reply made it lead after its lease
// would have ended is asked for again; after three such late replies Push
// returns an ErrUnavailable error.) Every caller's onDone, the leader's
// included, is then called exactly once, later and on a goroutine of its
// own (never inside Push or Complete), with the leader's result, its error
// (a *RemoteError), ErrTimeout when the caller's timeout (WithTimeout,
// default Options.FanoutTimeout) passed first, or ErrClosed. When Push
// returns any other error, onDone is never called.
//
// ctx bounds only the join; the wait that follows is bounded by the
// timeout. A caller of Push that is not the leader cannot take over from a
// leader that died; Fanout callers can.
func (c *Client) Push(ctx context.Context, key string, onDone func([]byte, error), opts ...Option) (*Job, error) {
	if onDone == nil {
		return nil, invalid("nil onDone")
	}
	job, _, err := c.push(ctx, key, onDone, nil, opts)
	return job, err
}

// attachment is one caller's place in a flight.
type attachment struct {
	f  *flight
	cl *caller
}

// push is Push, with the job a Fanout caller brings (nil for Push). It
// also returns the caller's attachment, so that the caller can leave. A
// Fanout caller gets ErrNotAcquired unless the call failed outright; its
// outcome reaches onDone.
func (c *Client) push(ctx context.Context, key string, onDone func([]byte, error),
	runner func(context.Context) ([]byte, error), opts []Option) (*Job, attachment, error) {
	if err := c.check(); err != nil {
		return nil, attachment{}, err
	}
	cfg, err := c.callConfig("Fanout and Push", fanoutOpts, opts)
	if err != nil {
		return nil, attachment{}, err
	}
	tag, err := c.tag(key)
	if err != nil {
		return nil, attachment{}, err
	}
	async := runner == nil
	c.fmu.Lock()
	if f := c.flights[key]; f != nil {
		f.mu.Lock()
		if f.state != flightEnded {
			cl := f.attachLocked(ctx, onDone, async, cfg, runner)
			f.mu.Unlock()
			c.fmu.Unlock()
			return nil, attachment{f, cl}, ErrNotAcquired
		}
		f.mu.Unlock() // it ended: a new flight takes its place
	}
	f := &flight{c: c, key: key, tag: tag, cfg: cfg, callers: map[*caller]struct{}{}, runner: runner,
		start: time.Now(), obsCtx: context.WithoutCancel(ctx)}
	if tr, ok := c.opts.Observer.(FlightTracer); ok {
		f.obsCtx, f.trace = tr.StartFlight(f.obsCtx, FlightEvent{Key: key})
		f.trace = traceField(f.trace)
	}
	f.ctx, f.cancel = context.WithCancel(c.bg)
	f.mu.Lock()
	first := f.attachLocked(ctx, onDone, async, cfg, runner)
	if runner == nil {
		f.claim = &claim{cl: first, ch: make(chan claimed, 1)}
	}
	f.mu.Unlock()
	c.flights[key] = f
	c.fmu.Unlock()
	at := attachment{f, first}
	if !c.goTracked(func() { f.run(true) }) { // the client closed meanwhile
		f.detach(first)
		f.finish(nil, ErrClosed)
		return nil, attachment{}, ErrClosed
	}
	if runner != nil {
		return nil, at, ErrNotAcquired
	}
	select {
	case r := <-f.claim.ch:
		return r.job, at, r.err
	case <-ctx.Done():
		f.mu.Lock()
		abandoned := f.claim.state == claimOpen
		ended := false
		if abandoned { // detached in the same step: onDone is never called
			f.claim.state = claimAbandoned
			ended = f.detachLocked(first)
		}
		f.mu.Unlock()
		if ended {
			f.forget()
		}
		if abandoned {
			return nil, attachment{}, unavailable(ctx.Err())
		}
		r := <-f.claim.ch
		return r.job, at, r.err
	}
}

// claim tells the Push caller that started a flight whether it leads. If
// that caller leaves first, the flight runs the job itself (when a Fanout
// caller brought one) or steps down. Its state is protected by the
// flight's mu.
type claim struct {
	state claimState
	cl    *caller
	ch    chan claimed // cap 1: the outcome of the first join
}

type claimState uint8

const (
	claimOpen      claimState = iota // the Push caller waits for the first join's outcome
	claimGiven                       // it was handed over
	claimAbandoned                   // the Push caller left first
)

type claimed struct {
	job *Job
	err error
}

// giveClaim hands the first join's outcome to the Push caller that started
// the flight, if it still waits for it; false when it left (or there is
// none). An error detaches it in the same step, so its onDone is never
// called; if it already had its outcome (its timeout), Push reports
// ErrNotAcquired instead of the error.
func (f *flight) giveClaim(job *Job, err error) bool {
	f.mu.Lock()
	k := f.claim
	if k == nil || k.state != claimOpen {
		f.mu.Unlock()
		return false
	}
	ended := false
	if err != nil && !errors.Is(err, ErrNotAcquired) {
		if _, attached := f.callers[k.cl]; attached {
			ended = f.detachLocked(k.cl)
		} else {
			err = ErrNotAcquired
		}
	}
	k.state = claimGiven
	k.ch <- claimed{job, err}
	f.mu.Unlock()
	if ended {
		f.forget()
	}
	return true
}
