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
// and it talks to Redis for all of them, on its own goroutine and context:
// no caller's context or timeout ends it while others are attached. It
// leads (runs the job) or waits for the leader in another process, and
// takes over when that leader's lease lapses. It ends when its outcome is
// delivered, or when all its callers left while it was waiting.
//
// State is protected by Client.fmu.
type flight struct {
	c        *Client
	key      string
	tag      string
	cfg      callConfig
	callers  map[*caller]struct{}
	runner   func(context.Context) ([]byte, error) // a Fanout caller's job: lets the flight take over; nil for Push only
	claim    *claim                                // the Push caller that started the flight, waiting to learn whether it leads
	leading  bool
	ended    bool
	warned   bool            // a dropped message was logged
	answered bool            // a join had its reply: Redis answered this flight
	ctx      context.Context // cancelled when the flight ends or all callers left
	cancel   context.CancelFunc
	start    time.Time       // when its first caller called, for the Observer
	obsCtx   context.Context // its first caller's context, for the Observer (values only)
}

type caller struct {
	onDone func([]byte, error)
	async  bool // a Push caller: onDone runs on a goroutine of its own
	timer  *time.Timer
}

func fanKey(tag string) string     { return tag + ":fan" }
func fanChannel(tag string) string { return tag + ":fan:ch" }

// claim tells the Push caller that started a flight whether it leads. If
// that caller leaves first, the flight runs the job itself (when a Fanout
// caller brought one) or steps down.
type claim struct {
	mu    sync.Mutex
	state int // 0 open, 1 given, 2 abandoned
	cl    *caller
	ch    chan claimed
}

type claimed struct {
	job *Job
	err error
}

// give hands the outcome of the first join to the Push caller; false when
// it left.
func (k *claim) give(job *Job, err error) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.state != 0 {
		return false
	}
	k.state = 1
	k.ch <- claimed{job, err}
	return true
}

// abandon is the Push caller leaving; false when the outcome was given.
func (k *claim) abandon() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.state != 0 {
		return false
	}
	k.state = 2
	return true
}

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

	mu   sync.Mutex // protects done, why
	done bool
	why  error // why the job ended before Complete
}

// Push joins the fanout of key: the distributed callback queue. Exactly one
// caller in the fleet becomes the leader and gets a *Job; every other caller
// gets ErrNotAcquired. (A join whose reply made it lead after its lease
// would have ended is asked for again; after three such late replies Push
// returns an ErrUnavailable error.) Every caller's onDone, the leader's included, is then
// called exactly once, later and on a goroutine of its own (never inside
// Push or Complete), with the leader's result, its error (a *RemoteError),
// ErrTimeout when the caller's timeout (WithTimeout, default
// Options.FanoutTimeout) passed first, or ErrClosed. When Push returns any
// other error, onDone is never called.
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
		cl := f.attachLocked(onDone, async, cfg.timeout, runner)
		c.fmu.Unlock()
		return nil, attachment{f, cl}, ErrNotAcquired
	}
	f := &flight{c: c, key: key, tag: tag, cfg: cfg, callers: map[*caller]struct{}{}, runner: runner,
		start: time.Now(), obsCtx: context.WithoutCancel(ctx)}
	f.ctx, f.cancel = context.WithCancel(c.bg)
	first := f.attachLocked(onDone, async, cfg.timeout, runner)
	if runner == nil {
		f.claim = &claim{cl: first, ch: make(chan claimed, 1)}
	}
	c.flights[key] = f
	c.fmu.Unlock()
	at := attachment{f, first}
	if !c.goTracked(f.begin) { // the client closed meanwhile
		f.forget(first)
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
		c.fmu.Lock()
		abandoned := f.claim.abandon()
		if abandoned { // detached in the same step: onDone is never called
			f.detachLocked(first)
		}
		c.fmu.Unlock()
		if abandoned {
			return nil, attachment{}, unavailable(ctx.Err())
		}
		r := <-f.claim.ch
		return r.job, at, r.err
	}
}

// giveClaim hands the first join's outcome to the Push caller that started
// the flight, if it still waits for it; false when it left (or there is
// none). An error detaches it in the same step, so its onDone is never
// called; if it already had its outcome (its timeout), Push reports
// ErrNotAcquired instead of the error.
func (f *flight) giveClaim(job *Job, err error) bool {
	if f.claim == nil {
		return false
	}
	f.c.fmu.Lock()
	defer f.c.fmu.Unlock()
	if err != nil && !errors.Is(err, ErrNotAcquired) {
		if _, attached := f.callers[f.claim.cl]; attached {
			if !f.claim.give(nil, err) {
				return false
			}
			f.detachLocked(f.claim.cl)
			return true
		}
		err = ErrNotAcquired
	}
	return f.claim.give(job, err)
}

// attachment is one caller's place in a flight.
type attachment struct {
	f  *flight
	cl *caller
}

// attachLocked adds a caller whose onDone fires at the latest after
// timeout.
func (f *flight) attachLocked(onDone func([]byte, error), async bool, timeout time.Duration, runner func(context.Context) ([]byte, error)) *caller {
	cl := &caller{onDone: onDone, async: async}
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
	cl.deliver(nil, why)
}

// leaveUnanswered is a caller leaving because its context ended: it
// returns why, wrapped as ErrUnavailable when Redis never answered the
// flight.
func (f *flight) leaveUnanswered(cl *caller, why error) error {
	f.c.fmu.Lock()
	answered := f.answered
	f.c.fmu.Unlock()
	f.leave(cl, why)
	if !answered {
		return unavailable(why)
	}
	return why
}

func (cl *caller) deliver(b []byte, err error) {
	if cl.async {
		go cl.onDone(b, err)
		return
	}
	cl.onDone(b, err)
}

// forget detaches a caller without calling its onDone.
func (f *flight) forget(cl *caller) {
	f.c.fmu.Lock()
	f.detachLocked(cl)
	f.c.fmu.Unlock()
}

func (f *flight) detachLocked(cl *caller) {
	delete(f.callers, cl)
	cl.timer.Stop()
	if len(f.callers) == 0 && !f.leading && !f.ended {
		f.endLocked()
	}
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
	c.opts.Observer.FanoutDone(f.obsCtx, f.key, f.start, leading, len(callers), err)
	for cl := range callers {
		cl.timer.Stop()
		if payload != nil {
			cl.deliver(append([]byte(nil), payload...), nil)
		} else {
			cl.deliver(nil, err)
		}
	}
}

// closed ends the flight with ErrClosed for the callers still attached when
// the client closed (one that started after Close took its snapshot of
// the flights); after every caller left, it does nothing.
func (f *flight) closed() {
	if f.c.bg.Err() != nil {
		f.finish(nil, ErrClosed)
	}
}

// dropped reports a malformed or oversize message or stored result: to the
// Observer always, to the log once per flight.
func (f *flight) dropped(what string, err error) {
	f.c.opts.Observer.Dropped(f.obsCtx, "fanout", f.key, err)
	f.c.fmu.Lock()
	warned := f.warned
	f.warned = true
	f.c.fmu.Unlock()
	if !warned {
		f.c.opts.Logger.Warn("dlock: dropped malformed fanout "+what, "key", f.key, "err", err)
	}
}

type joinState int

const (
	joinWait joinState = iota
	joinLead
	joinResult
)

// joined is what a join found.
type joined struct {
	state  joinState
	env    envelope      // joinResult: the stored outcome
	wait   time.Duration // joinWait: the rest of the leader's lease
	leader string        // joinWait: the generation that leads
}

// join runs fanout_join once, on the flight's context bounded by
// OpTimeout. When the reply is lost (or comes too late), a lease it may
// have taken is released.
func (f *flight) join(gen string, mayLead bool, waited string) (joined, error) {
	lead := "0"
	if mayLead {
		lead = "1"
	}
	ctx, cancel := context.WithTimeout(f.ctx, f.c.opts.OpTimeout)
	defer cancel()
	v, err := f.c.run(ctx, scriptFanoutJoin, []string{fanKey(f.tag)}, []any{gen, ms(f.cfg.ttl), lead, waited},
		func(ctx context.Context, _ any) { f.c.releaseFan(ctx, f.tag, gen) })
	if err != nil {
		return joined{}, err
	}
	f.c.fmu.Lock()
	f.answered = true
	f.c.fmu.Unlock()
	r, ok := v.([]any)
	if !ok || len(r) == 0 {
		return joined{}, unavailable(errBadReply)
	}
	switch st, _ := r[0].(int64); {
	case st == 1:
		return joined{state: joinLead}, nil
	case st == 2 && len(r) == 2:
		s, _ := r[1].(string)
		env, err := decodeEnvelope(s, f.c.opts.MaxResultSize)
		if err != nil {
			// A foreign or corrupt value in the key: ignore it and wait;
			// the leader's publication or the key's expiry decides.
			f.dropped("result", err)
			return joined{state: joinWait, wait: f.cfg.ttl}, nil
		}
		return joined{state: joinResult, env: env}, nil
	case st == 0 && len(r) == 3:
		pttl, _ := r[1].(int64)
		leader, _ := r[2].(string)
		wait := time.Duration(pttl) * time.Millisecond
		if pttl < 0 {
			wait = f.cfg.ttl
		}
		return joined{state: joinWait, wait: wait, leader: leader}, nil
	}
	return joined{}, unavailable(errBadReply)
}

// releaseFan ends generation gen's lease without an outcome (it stepped
// down), and wakes the waiters so one takes over.
func (c *Client) releaseFan(ctx context.Context, tag, gen string) {
	c.run(ctx, scriptLockRelease, []string{fanKey(tag)}, []any{gen, ms(c.opts.FenceTTL), fanChannel(tag)}, nil)
}

// lateLead reports whether the join that made generation gen lead came
// back too late to be trusted (see lapsed): then it gives the lead back,
// and the flight joins again (no job runs on a lease that may have ended,
// alongside a newer generation's).
func (f *flight) lateLead(gen string, sent time.Time) bool {
	if lapsed(sent, f.cfg.ttl) == nil {
		return false
	}
	ctx, cancel := f.c.detached(f.obsCtx)
	defer cancel()
	f.c.releaseFan(ctx, f.tag, gen)
	return true
}

// begin is the flight's first join, on a goroutine of its own: it leads,
// takes the stored result, or waits for the leader.
func (f *flight) begin() {
	var gen string
	var sent time.Time
	var j joined
	var err error
	for late := 1; ; late++ {
		gen, sent = newOwnerID(), time.Now()
		j, err = f.join(gen, true, "")
		if err != nil || j.state != joinLead || !f.lateLead(gen, sent) {
			break
		}
		if late == maxLateGrants {
			err = lapsed(sent, f.cfg.ttl)
			break
		}
	}
	switch {
	case err != nil:
		f.giveClaim(nil, err) // Push returns the error: its onDone is not called
		if f.ctx.Err() != nil && f.c.closed.Load() {
			err = ErrClosed
		}
		f.finish(nil, err)
	case j.state == joinResult:
		f.giveClaim(nil, ErrNotAcquired)
		f.finish(&j.env, nil)
	case j.state == joinLead:
		job, err := f.lead(gen, sent)
		if err != nil {
			f.giveClaim(nil, err)
			f.finish(nil, err)
			return
		}
		if f.giveClaim(job, nil) {
			return // the Push caller runs it
		}
		f.c.fmu.Lock()
		runner := f.runner
		f.c.fmu.Unlock()
		if runner == nil { // the Push caller left and nobody else brought the job
			job.abandon(fmt.Errorf("%w: its caller left", ErrNotHeld))
			return
		}
		go job.run(runner)
	default:
		f.giveClaim(nil, ErrNotAcquired)
		f.wait(j.leader)
	}
}

// wait waits for the outcome of generation leader (in another process):
// subscribe, join again, then take the first envelope of that generation
// published, or join again when the leader's lease should have ended,
// another generation's outcome was published, or the subscription was
// re-established. It leads when a join finds neither a leader nor a result
// and a local caller brought the job.
func (f *flight) wait(leader string) {
	if testHookFanoutWait != nil {
		testHookFanoutWait(f.key)
	}
	sub, err := f.c.mux.subscribe(f.ctx, fanChannel(f.tag))
	if err != nil {
		if f.ctx.Err() == nil {
			f.finish(nil, err)
		}
		f.closed()
		return
	}
	defer sub.close()
	t := time.NewTimer(0) // join again at once: the first join preceded the subscription
	defer t.Stop()
	for {
		var n notice
		got, fired := false, false
		select {
		case n = <-sub.C:
			got = true
		case <-t.C:
			fired = true
			select { // a message that came meanwhile is looked at first
			case n = <-sub.C:
				got = true
			default:
			}
		case <-f.ctx.Done():
			f.closed()
			return // every caller left, or the client closed
		}
		if got && !n.resync && n.payload != "released" {
			env, err := decodeEnvelope(n.payload, f.c.opts.MaxResultSize)
			switch {
			case err != nil:
				f.dropped("message", err)
				if !fired {
					continue
				}
			case env.gen == leader && leader != "":
				f.finish(&env, nil)
				return
			}
			// Another generation's outcome: the key says which is the
			// latest, and whether it is ours to take.
		}
		f.c.fmu.Lock()
		mayLead := f.runner != nil
		f.c.fmu.Unlock()
		gen := newOwnerID()
		sent := time.Now()
		j, err := f.join(gen, mayLead, leader)
		next := j.wait
		switch {
		case err != nil:
			if f.ctx.Err() != nil {
				f.closed()
				return
			}
			f.c.opts.Logger.Warn("dlock: fanout join failed; retrying", "key", f.key, "err", err)
			next = min(f.cfg.ttl/10, 100*time.Millisecond) + rand.N(10*time.Millisecond)
		case j.state == joinResult:
			f.finish(&j.env, nil)
			return
		case j.state == joinLead && f.lateLead(gen, sent):
			next = 0 // join again at once
		case j.state == joinLead:
			f.c.fmu.Lock()
			runner := f.runner
			f.c.fmu.Unlock()
			job, err := f.lead(gen, sent)
			if err != nil {
				f.finish(nil, err)
				return
			}
			go job.run(runner)
			return
		default:
			leader = j.leader
		}
		t.Reset(next + time.Millisecond)
	}
}

// testHookFanoutWait, when set by a test, runs when a flight begins to
// wait for another generation, before it subscribes.
var testHookFanoutWait func(key string)

// lead starts generation gen's lease (with the watchdog) and returns its
// Job; its context ends at the timeout or when the lease is lost, and then
// the flight steps down. When the client is closing it releases the lease
// and returns ErrClosed.
func (f *flight) lead(gen string, sent time.Time) (*Job, error) {
	c := f.c
	set := &lockset{c: c, owner: gen, keys: []string{f.key}, groups: []lockGroup{{
		keys:     []string{f.key},
		locks:    []string{fanKey(f.tag)},
		channels: []string{fanChannel(f.tag)},
	}}}
	l := &lease{c: c, kind: "fanout", key: f.key, ttl: f.cfg.ttl, watchdog: true, extend: set.extend, release: set.release}
	if !l.start(f.obsCtx, sent) {
		ctx, cancel := c.detached(f.obsCtx)
		defer cancel()
		c.releaseFan(ctx, f.tag, gen)
		return nil, ErrClosed
	}
	c.fmu.Lock()
	f.leading = true
	c.fmu.Unlock()
	j := &Job{f: f, gen: gen, lease: l}
	tctx, cancel := context.WithTimeoutCause(c.bg, f.cfg.timeout, ErrTimeout)
	j.ctx, j.cancel = context.WithCancelCause(tctx)
	j.stopTimeout = cancel
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
	return j, nil
}

// abandon ends a job without an outcome (its timeout, Close, its lease
// lost, its caller gone): cancels its context with why, releases its lease
// if it still holds it, and steps the flight down.
func (j *Job) abandon(why error) {
	j.mu.Lock()
	if j.done {
		j.mu.Unlock()
		return
	}
	j.done, j.why = true, why
	j.mu.Unlock()
	j.cancel(why)
	ctx, cancel := j.f.c.detached(j.f.obsCtx)
	defer cancel()
	j.lease.doRelease(ctx, fmt.Errorf("%w: %w", ErrNotHeld, why))
	j.f.stepDown()
}

// stepDown marks a flight that stopped leading without an outcome. If
// callers remain, they join again at once (one of them may take over);
// else it ends.
func (f *flight) stepDown() {
	c := f.c
	c.fmu.Lock()
	f.leading = false
	if f.ended {
		c.fmu.Unlock()
		return
	}
	if len(f.callers) == 0 {
		f.endLocked()
		c.fmu.Unlock()
		return
	}
	c.fmu.Unlock()
	if c.closed.Load() || !c.goTracked(func() { f.wait("") }) {
		f.finish(nil, ErrClosed)
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

// markDone claims the job's end for Complete; when the job ended before,
// it returns why.
func (j *Job) markDone() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.done {
		if j.why != nil {
			return fmt.Errorf("%w: %w", ErrNotHeld, j.why)
		}
		return ErrNotHeld
	}
	j.done = true
	return nil
}

// Context is cancelled when the job should stop: its timeout passed
// (cause ErrTimeout), its lease was lost (ErrLost: then another caller may
// be running it), or the client closed (ErrClosed); context.Cause says
// which. Unlike Lock.Context(parent), it takes no parent: a job runs for
// every caller of the key, so no one caller's context may end it.
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
	if err := j.markDone(); err != nil {
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
	store := "0"
	if env.status == statusOK {
		store = "1"
	}
	v, err := c.run(rctx, scriptFanoutComplete, []string{fanKey(f.tag)},
		[]any{j.gen, wire, ms(c.opts.ResultTTL), store, fanChannel(f.tag)}, nil)
	j.cancel(context.Canceled)
	j.stopTimeout()
	if n, _ := v.(int64); err == nil && n != 1 {
		// The lease lapsed or another generation took over: this run's
		// outcome is not the key's; the callers join again.
		f.stepDown()
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
