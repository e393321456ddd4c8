package dlockrt

import (
	"context"
	"fmt"
	"time"
)

// Job is the leader's handle on a push: run the work, then Complete it.
// Its lease is renewed by the watchdog until Complete or the timeout.
type Job struct {
	f           *flight
	gen         string
	lease       *lease
	ctx         context.Context
	cancel      context.CancelCauseFunc
	stopTimeout context.CancelFunc // ends the timeout's context after Complete

	state jobState // protected by f.mu
	why   error    // protected by f.mu: why it was abandoned
}

// jobState: a job runs until Complete claims it or it is abandoned; the
// first of the two wins, and the other then does nothing.
type jobState uint8

const (
	jobRunning   jobState = iota
	jobCompleted          // Complete claimed it
	jobAbandoned          // its timeout, its lease lost, its caller gone, Close
)

// lead starts generation gen's lease (with the watchdog) and its Job, and
// sets it to work: the Push caller that started the flight gets it (first
// join only), else a Fanout caller's job runs, else (the Push caller left
// and nobody brought a job) it is abandoned. The job's context ends at the
// timeout or when the lease is lost; then the flight steps down. When the
// client is closing it gives the lease back and ends the flight with
// ErrClosed.
func (f *flight) lead(gen string, sent time.Time, first bool) {
	c := f.c
	l := &lease{c: c, kind: KindFanout, key: f.key, ttl: f.cfg.ttl, watchdog: true,
		extend:  func(ctx context.Context, ttl time.Duration) (bool, error) { return c.fan.extend(ctx, f.tag, gen, ttl) },
		release: func(ctx context.Context) (int, int, error) { return c.fan.release(ctx, f.tag, gen) }}
	if !l.start(f.obsCtx, sent) {
		ctx, cancel := c.detached(f.obsCtx)
		c.fan.giveBack(ctx, f.tag, gen)
		cancel()
		f.giveClaim(nil, ErrClosed)
		f.finish(nil, ErrClosed)
		return
	}
	j := &Job{f: f, gen: gen, lease: l}
	tctx, cancel := context.WithTimeoutCause(withValues(c.bg, f.obsCtx), f.cfg.timeout, ErrTimeout)
	j.ctx, j.cancel = context.WithCancelCause(tctx)
	j.stopTimeout = cancel
	f.mu.Lock()
	led := f.toLocked(evLeads)
	if led {
		f.job, f.awaited = j, gen
	}
	runner := f.runner
	f.mu.Unlock()
	if !led { // every caller left meanwhile (or Close ended the flight)
		j.abandon(fmt.Errorf("%w: its callers left", ErrNotHeld))
		j.stopTimeout()
		return
	}
	context.AfterFunc(tctx, func() {
		// The timeout passed (or the client closed) without Complete:
		// step down, so that a waiter here or elsewhere may take over.
		why := error(ErrTimeout)
		if c.bg.Err() != nil {
			why = ErrClosed
		}
		j.abandon(why)
	})
	// The lease ending before Complete (lost, taken over as an Extend
	// found, released by Close) abandons the job: whatever it returns now
	// may be caused by that, so it is never published, and the callers
	// join again. After Complete, abandon does nothing. (A callback of the
	// lease, not a goroutine per leader.)
	l.afterEnd(j.abandon)
	switch {
	case first && f.giveClaim(j, nil):
		// the Push caller runs it
	case runner == nil: // the Push caller left and nobody else brought the job
		j.abandon(fmt.Errorf("%w: its caller left", ErrNotHeld))
	default:
		go j.run(runner)
	}
}

// abandon ends a job without an outcome (its timeout, Close, its lease
// lost, its caller gone): it cancels the job's context with why, gives the
// lease back if it still holds it, and steps the flight down: its callers
// join again at once (one may take over), or it ends when none remain.
func (j *Job) abandon(why error) {
	f := j.f
	f.mu.Lock()
	if j.state != jobRunning {
		f.mu.Unlock()
		return
	}
	j.state, j.why = jobAbandoned, why
	f.toLocked(evAbandon)
	f.mu.Unlock()
	j.cancel(why)
	ctx, cancel := f.c.detached(f.obsCtx)
	j.lease.doRelease(ctx, fmt.Errorf("%w: %w", ErrNotHeld, why))
	cancel()
	f.steppedDown()
}

// steppedDown follows a leader that gave its lease up without an outcome:
// the flight's callers join again (it ends if none remain).
func (f *flight) steppedDown() {
	f.mu.Lock()
	f.job = nil
	var ended, rejoin bool
	if len(f.callers) == 0 {
		ended = f.toLocked(evLastGone)
	} else {
		rejoin = f.toLocked(evSteppedDown)
	}
	f.mu.Unlock()
	if ended {
		f.forget()
	}
	if rejoin {
		f.drive(false)
	}
}

// run runs a Fanout job as leader and completes it. A panic in the job
// becomes its error, so that no caller is left waiting.
func (j *Job) run(job func(context.Context) ([]byte, error)) {
	res, err := func() (res []byte, err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("dlock: fanout job panicked: %v", p)
				j.f.c.opts.Logger.Error("dlock: fanout job panicked", "key", j.f.key, "panic", p)
			}
		}()
		return job(j.ctx)
	}()
	j.Complete(context.Background(), res, err)
}

// claimForComplete claims the job's end for Complete; when the job ended
// before, it returns why.
func (j *Job) claimForComplete() error {
	j.f.mu.Lock()
	defer j.f.mu.Unlock()
	switch j.state {
	case jobAbandoned:
		return fmt.Errorf("%w: %w", ErrNotHeld, j.why)
	case jobCompleted:
		return ErrNotHeld
	}
	j.state = jobCompleted
	return nil
}

// Context is cancelled when the job should stop: its timeout passed
// (cause ErrTimeout), its lease was lost (ErrLost: then another caller may
// be running it), or the client closed (ErrClosed); context.Cause says
// which. Unlike Lock.Context(parent), it takes no parent: a job runs for
// every caller of the key, so no one caller's context may end it. It
// carries the values of the context of the caller that started the flight
// in this process (its trace, with a FlightTracer the flight's span).
func (j *Job) Context() context.Context {
	if j == nil {
		return closedCtx
	}
	return j.ctx
}

// Key is the fanout's key.
func (j *Job) Key() string {
	if j == nil {
		return ""
	}
	return j.f.key
}

// Extend renews the leader's lease for ttl from now (the watchdog already
// does this while the job runs). When no answer comes before the lease
// would end, the lease is lost (an ErrLost error) and the job's context
// ends.
func (j *Job) Extend(ctx context.Context, ttl time.Duration) error {
	if j == nil {
		return ErrNotHeld
	}
	return j.lease.doExtend(ctx, ttl)
}

// Complete publishes the job's outcome, result or jobErr, to every caller in
// the fleet, and ends the lease, in one step. A result larger than
// Options.MaxResultSize is replaced by ErrResultTooLarge for everybody, and
// Complete returns that error too. A result stays readable for
// Options.ResultTTL; an error reaches only the callers of this run.
// Complete runs even when ctx has ended.
//
// An outcome is published only while the job still leads. After the job's
// timeout, the loss of its lease (then the callers join again, and one of
// them runs the job anew), or a second Complete, it publishes nothing and
// returns an error matching ErrNotHeld. When another generation took over
// meanwhile, it returns an error matching ErrLost. When Redis could not be
// reached, the callers in this process still get the outcome, and Complete
// returns an ErrUnavailable error.
func (j *Job) Complete(ctx context.Context, result []byte, jobErr error) error {
	if j == nil {
		return ErrNotHeld
	}
	if j.ctx.Err() != nil {
		// The job's context ended (its timeout, Close, the lease lost)
		// before it completed: what it returned may be caused by that, so
		// it is not published; the flight steps down instead.
		why := context.Cause(j.ctx)
		j.abandon(why)
		return fmt.Errorf("%w: %w", ErrNotHeld, why)
	}
	if err := j.claimForComplete(); err != nil {
		return err
	}
	f := j.f
	c := f.c
	env := envelope{gen: j.gen, status: statusOK, payload: result}
	var tooLarge error
	switch {
	case jobErr != nil:
		env = failure(j.gen, jobErr)
	case len(result) > c.opts.MaxResultSize:
		tooLarge = fmt.Errorf("%w: %d bytes, limit %d", ErrResultTooLarge, len(result), c.opts.MaxResultSize)
		env = failure(j.gen, tooLarge)
	}
	j.lease.finish(fmt.Errorf("%w: completed", ErrNotHeld), true)
	c.untrack(j.lease)
	rctx, cancel := c.detached(ctx)
	defer cancel()
	wire := env.encode()
	published, err := c.fan.complete(rctx, f.tag, j.gen, wire, env.status == statusOK)
	j.cancel(context.Canceled)
	j.stopTimeout()
	if err == nil && !published {
		// The lease lapsed or another generation took over: this run's
		// outcome is not the key's; the callers join again.
		f.mu.Lock()
		f.job = nil
		rejoin := f.toLocked(evNotPublished)
		ended := rejoin && len(f.callers) == 0 && f.toLocked(evLastGone)
		f.mu.Unlock()
		switch {
		case ended:
			f.forget()
		case rejoin:
			f.drive(false)
		}
		return fmt.Errorf("%w: another generation leads; the outcome was not published", ErrLost)
	}
	// Local callers get the envelope as remote ones decode it.
	out, derr := decodeEnvelope(string(wire), c.opts.MaxResultSize)
	if derr != nil {
		out = failure(j.gen, derr)
	}
	f.finish(&out, nil)
	if tooLarge != nil {
		return tooLarge
	}
	return err
}

var closedCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()
