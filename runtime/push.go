package dlockrt

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// A flight is this process's part in one fanout of one key: every local
// caller of the key attaches to it (no Redis traffic for the extra ones),
// and it talks to Redis for all of them. It leads (runs the job) or waits
// for the leader in another process, and takes over when that leader's
// lease lapses. It ends when its outcome is delivered, or when all its
// callers left while it was waiting.
//
// State is protected by Client.fmu.
type flight struct {
	c       *Client
	key     string
	tag     string
	cfg     callConfig
	callers map[*caller]struct{}
	runner  func(context.Context) ([]byte, error) // a Fanout caller's job: lets the flight take over; nil for Push only
	leading bool
	ended   bool
	ctx     context.Context // cancelled when the flight ends or all callers left
	cancel  context.CancelFunc
	start   time.Time       // when its first caller called, for the Observer
	obsCtx  context.Context // its first caller's context, for the Observer (values only)
}

type caller struct {
	onDone func([]byte, error)
	timer  *time.Timer
}

func fanKey(tag string) string     { return tag + ":fan" }
func resultKey(tag string) string  { return tag + ":fan:res" }
func fanChannel(tag string) string { return tag + ":fan:ch" }

// Job is the leader's handle on a push: run the work, then Complete it.
// Its lease is renewed by the watchdog until Complete or the timeout.
type Job struct {
	f      *flight
	gen    string
	lease  *lease
	ctx    context.Context
	cancel context.CancelCauseFunc
	// stopTimeout ends the timeout's context after Complete.
	stopTimeout context.CancelFunc

	mu   sync.Mutex // protects done
	done bool
}

// Push joins the fanout of key: the distributed callback queue. Exactly one
// caller in the fleet becomes the leader and gets a *Job; every other caller
// gets ErrNotAcquired. Every caller's onDone, the leader's included, is then
// called exactly once, later and on another goroutine, with the leader's
// result, its error (a *RemoteError), ErrTimeout when the caller's timeout
// (WithTimeout, default Options.FanoutTimeout) passed first, or ErrClosed.
// When Push returns any other error, onDone is never called.
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

// push is Push, with the job a Fanout caller brings (nil for Push). It
// also returns the caller's attachment, so that the caller can leave.
func (c *Client) push(ctx context.Context, key string, onDone func([]byte, error),
	runner func(context.Context) ([]byte, error), opts []Option) (*Job, attachment, error) {
	if err := c.check(); err != nil {
		return nil, attachment{}, err
	}
	cfg, err := c.callConfig(opts)
	if err != nil {
		return nil, attachment{}, err
	}
	tag, err := c.tag(key)
	if err != nil {
		return nil, attachment{}, err
	}
	c.fmu.Lock()
	if f := c.flights[key]; f != nil {
		cl := f.attachLocked(onDone, cfg.timeout, runner)
		c.fmu.Unlock()
		return nil, attachment{f, cl}, ErrNotAcquired
	}
	f := &flight{c: c, key: key, tag: tag, cfg: cfg, callers: map[*caller]struct{}{}, runner: runner,
		start: time.Now(), obsCtx: ctx}
	f.ctx, f.cancel = context.WithCancel(c.bg)
	first := f.attachLocked(onDone, cfg.timeout, runner)
	c.flights[key] = f
	c.fmu.Unlock()

	gen := newOwnerID()
	sent := time.Now()
	st, env, _, err := f.join(ctx, gen, true)
	at := attachment{f, first}
	switch {
	case err != nil:
		f.forget(first)
		f.finish(nil, err)
		return nil, attachment{}, err
	case st == joinResult:
		f.finish(&env, nil)
		return nil, at, ErrNotAcquired
	case st == joinLead:
		job := f.lead(ctx, gen, sent)
		if runner != nil {
			go job.run(runner)
		}
		return job, at, nil
	}
	if !c.goTracked(f.wait) {
		f.finish(nil, ErrClosed) // the client closed meanwhile
	}
	return nil, at, ErrNotAcquired
}

// attachment is one caller's place in a flight.
type attachment struct {
	f  *flight
	cl *caller
}

// attachLocked adds a caller whose onDone fires at the latest after
// timeout.
func (f *flight) attachLocked(onDone func([]byte, error), timeout time.Duration, runner func(context.Context) ([]byte, error)) *caller {
	cl := &caller{onDone: onDone}
	f.callers[cl] = struct{}{}
	if f.runner == nil {
		f.runner = runner
	}
	cl.timer = time.AfterFunc(timeout, func() { f.leave(cl, ErrTimeout) })
	return cl
}

// leave detaches a caller before the outcome, calling its onDone with why.
// A waiting flight whose last caller left ends.
func (f *flight) leave(cl *caller, why error) {
	c := f.c
	c.fmu.Lock()
	if _, ok := f.callers[cl]; !ok {
		c.fmu.Unlock()
		return
	}
	delete(f.callers, cl)
	cl.timer.Stop()
	if len(f.callers) == 0 && !f.leading && !f.ended {
		f.endLocked()
	}
	c.fmu.Unlock()
	cl.onDone(nil, why)
}

// forget detaches a caller without calling its onDone.
func (f *flight) forget(cl *caller) {
	f.c.fmu.Lock()
	delete(f.callers, cl)
	cl.timer.Stop()
	f.c.fmu.Unlock()
}

func (f *flight) endLocked() {
	f.ended = true
	if f.c.flights[f.key] == f {
		delete(f.c.flights, f.key)
	}
	f.cancel()
}

// finish ends the flight and delivers env's outcome (or err) to every
// caller still attached, each with its own copy of the bytes.
func (f *flight) finish(env *envelope, err error) {
	c := f.c
	c.fmu.Lock()
	if f.ended && len(f.callers) == 0 {
		c.fmu.Unlock()
		return
	}
	if !f.ended {
		f.endLocked()
	}
	callers := f.callers
	f.callers = map[*caller]struct{}{}
	leading := f.leading
	c.fmu.Unlock()
	var payload []byte
	if env != nil {
		payload, err = env.outcome()
	}
	c.opts.Observer.FanoutDone(context.WithoutCancel(f.obsCtx), f.key, f.start, leading, len(callers), err)
	for cl := range callers {
		cl.timer.Stop()
		if payload != nil {
			cl.onDone(append([]byte(nil), payload...), nil)
		} else {
			cl.onDone(nil, err)
		}
	}
}

type joinState int

const (
	joinWait joinState = iota
	joinLead
	joinResult
)

// join runs fanout_join once.
func (f *flight) join(ctx context.Context, gen string, mayLead bool) (joinState, envelope, time.Duration, error) {
	lead := "0"
	if mayLead {
		lead = "1"
	}
	keys := []string{fanKey(f.tag), resultKey(f.tag)}
	v, err := f.c.run(ctx, scriptFanoutJoin, keys, []any{gen, ms(f.cfg.ttl), lead}, func(v any) {
		// The caller left while this join made it leader: step down.
		if r, ok := v.([]any); ok && len(r) == 1 {
			f.c.releaseFan(f.tag, gen)
		}
	})
	if err != nil {
		return 0, envelope{}, 0, err
	}
	r, ok := v.([]any)
	if !ok || len(r) == 0 {
		return 0, envelope{}, 0, unavailable(errBadReply)
	}
	switch st, _ := r[0].(int64); {
	case st == 1:
		return joinLead, envelope{}, 0, nil
	case st == 2 && len(r) == 2:
		s, _ := r[1].(string)
		env, err := decodeEnvelope([]byte(s))
		if err != nil {
			// A foreign or corrupt value in the result key: ignore it and
			// wait; the leader's publication or the lease decides.
			f.c.opts.Logger.Warn("dlock: dropped malformed fanout result", "key", f.key, "err", err)
			return joinWait, envelope{}, f.cfg.ttl, nil
		}
		return joinResult, env, 0, nil
	case st == 0 && len(r) == 2:
		pttl, _ := r[1].(int64)
		wait := time.Duration(pttl) * time.Millisecond
		if pttl < 0 {
			wait = f.cfg.ttl
		}
		return joinWait, envelope{}, wait, nil
	}
	return 0, envelope{}, 0, unavailable(errBadReply)
}

// releaseFan ends a leader's lease without a result (it stepped down), and
// wakes the waiters so one takes over.
func (c *Client) releaseFan(tag, gen string) {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.OpTimeout)
	defer cancel()
	c.run(ctx, scriptLockRelease, []string{fanKey(tag), fanChannel(tag)}, []any{gen}, nil)
}

// wait waits for the leader in another process: subscribe, join again,
// then take the first envelope published, or join again when the leader's
// lease should have ended or the subscription was re-established. It leads
// when a join finds neither a leader nor a result and a local caller
// brought the job.
func (f *flight) wait() {
	sub, err := f.c.mux.subscribe(f.ctx, fanChannel(f.tag))
	if err != nil {
		if f.ctx.Err() == nil {
			f.finish(nil, err)
		}
		return
	}
	defer sub.close()
	t := time.NewTimer(0) // join again at once: the first join preceded the subscription
	defer t.Stop()
	for {
		select {
		case n := <-sub.C:
			if !n.resync {
				if env, err := decodeEnvelope([]byte(n.payload)); err == nil {
					f.finish(&env, nil)
					return
				} else if n.payload != "released" {
					f.c.opts.Logger.Warn("dlock: dropped malformed fanout message", "key", f.key, "err", err)
					continue
				}
			}
		case <-t.C:
		case <-f.ctx.Done():
			return // every caller left, or the client closed
		}
		f.c.fmu.Lock()
		mayLead := f.runner != nil
		f.c.fmu.Unlock()
		gen := newOwnerID()
		sent := time.Now()
		st, env, next, err := f.join(f.ctx, gen, mayLead)
		switch {
		case err != nil:
			if f.ctx.Err() != nil {
				return
			}
			f.c.opts.Logger.Warn("dlock: fanout join failed; retrying", "key", f.key, "err", err)
			next = min(f.cfg.ttl/10, 100*time.Millisecond) + rand.N(10*time.Millisecond)
		case st == joinResult:
			f.finish(&env, nil)
			return
		case st == joinLead:
			f.c.fmu.Lock()
			runner := f.runner
			f.c.fmu.Unlock()
			go f.lead(f.ctx, gen, sent).run(runner)
			return
		}
		t.Reset(next + time.Millisecond)
	}
}

// lead starts generation gen's lease (with the watchdog) and returns its
// Job; its context ends at the timeout or when the lease is lost.
func (f *flight) lead(ctx context.Context, gen string, sent time.Time) *Job {
	c := f.c
	c.fmu.Lock()
	f.leading = true
	c.fmu.Unlock()
	set := &lockset{c: c, owner: gen, keys: []string{f.key}, groups: []lockGroup{{
		keys:    []string{f.key},
		extend:  []string{fanKey(f.tag)},
		release: []string{fanKey(f.tag), fanChannel(f.tag)},
	}}}
	l := &lease{c: c, kind: "fanout", key: f.key, ttl: f.cfg.ttl, watchdog: true, extend: set.extend, release: set.release}
	l.start(ctx, sent)
	j := &Job{f: f, gen: gen, lease: l}
	tctx, cancel := context.WithTimeout(c.bg, f.cfg.timeout)
	j.ctx, j.cancel = context.WithCancelCause(tctx)
	j.stopTimeout = cancel
	context.AfterFunc(tctx, func() {
		// The timeout passed (or the client closed) without Complete:
		// step down, so that a waiter elsewhere may take over.
		if j.markDone() {
			j.cancel(ErrTimeout)
			l.doRelease(context.Background(), fmt.Errorf("%w: job timed out", ErrNotHeld))
			f.stepDown()
		}
	})
	go func() {
		select {
		case <-l.done:
			if err := l.errNow(); errors.Is(err, ErrLost) {
				j.cancel(err)
			}
		case <-j.ctx.Done():
		}
	}()
	return j
}

// stepDown marks a flight that stopped leading without an outcome; it ends
// if nobody waits on it any more.
func (f *flight) stepDown() {
	f.c.fmu.Lock()
	defer f.c.fmu.Unlock()
	f.leading = false
	if len(f.callers) == 0 && !f.ended {
		f.endLocked()
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

func (j *Job) markDone() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.done {
		return false
	}
	j.done = true
	return true
}

// Context is cancelled when the job should stop: its timeout passed, or its
// lease was lost (then another caller may be running it). The cause
// (context.Cause) says which.
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
// does this while the job runs).
func (j *Job) Extend(ctx context.Context, ttl time.Duration) error {
	if j == nil {
		return ErrNotHeld
	}
	return j.lease.doExtend(ctx, ttl)
}

// Complete publishes the job's outcome, result or jobErr, to every caller in
// the fleet, and ends the lease, in one step. A result larger than
// Options.MaxResultSize is replaced by ErrResultTooLarge for everybody, and
// Complete returns that error too. Complete runs even when ctx has ended.
// A second Complete, or one after the timeout, returns ErrNotHeld.
func (j *Job) Complete(ctx context.Context, result []byte, jobErr error) error {
	if j == nil || !j.markDone() {
		return ErrNotHeld
	}
	f := j.f
	c := f.c
	env := envelope{status: statusOK, payload: result}
	var tooLarge error
	switch {
	case jobErr != nil:
		env = failure(jobErr)
	case len(result) > c.opts.MaxResultSize:
		tooLarge = fmt.Errorf("%w: %d bytes, limit %d", ErrResultTooLarge, len(result), c.opts.MaxResultSize)
		env = failure(tooLarge)
	}
	j.lease.finish(fmt.Errorf("%w: completed", ErrNotHeld), true)
	c.untrack(j.lease)
	rctx, cancel := c.detached(ctx)
	defer cancel()
	keys := []string{fanKey(f.tag), resultKey(f.tag), fanChannel(f.tag)}
	wire := env.encode()
	_, err := c.run(rctx, scriptFanoutComplete, keys, []any{j.gen, wire, ms(c.opts.ResultTTL)}, nil)
	j.cancel(context.Canceled)
	j.stopTimeout()
	// Local callers get the envelope as remote ones decode it.
	out, derr := decodeEnvelope(wire)
	if derr != nil {
		out = failure(derr)
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
