package dlockrt

import (
	"context"
	"time"
)

// A flight is this process's part in one fanout of one key: every local
// caller of the key attaches to it (no Redis traffic for the extra ones),
// and it talks to Redis for all of them, on its own goroutine and context:
// no caller's context or timeout ends it while others are attached. It
// leads (runs the job) or waits for the leader in another process, and
// takes over when that leader's lease lapses. It ends when its outcome is
// delivered, or when all its callers left while it was not leading.
//
// Its state, as an operator reads it:
//
//	joining        asking Redis: is a result there, does a generation lead, may this one lead?
//	waiting        another process's generation leads; subscribed, waiting for its outcome
//	leading        this process's generation leads: its job runs
//	stepping down  the job ended without an outcome; its lease is being given back
//	ended          the outcome was delivered, every caller left, or the client closed
//
// Only flight.to changes the state, by the table below; an event the table
// does not list for the current state changes nothing, and the code that
// sent it does not carry out its effects (so, say, an outcome arriving
// after the flight ended is delivered to nobody).
//
//	state          event          next           effects (carried out by the sender)
//	joining        waits          waiting        subscribe, join again, wait for that generation's outcome
//	waiting        waits          waiting        wait for the generation the join named
//	joining        leads          leading        start the lease; hand the Job to the Push caller,
//	waiting        leads          leading          else run a Fanout caller's job, else abandon it
//	joining        lateLead       joining        give the lead back; join again, as a new generation
//	waiting        lateLead       joining        (same)
//	joining        outcome        ended          deliver the outcome (a result found, or the error
//	waiting        outcome        ended            of a join, subscription or Close) to every caller
//	leading        outcome        ended          (Complete published it)
//	leading        abandon        stepping down  cancel the job's context; give the lease back
//	stepping down  outcome        ended          deliver ErrClosed (Close)
//	stepping down  steppedDown    joining        callers remain: join again at once (one may take over)
//	leading        notPublished   joining        Complete found another generation leading: join again
//	stepping down  lastGone       ended          no caller remains
//	joining        lastGone       ended          every caller left: stop talking to Redis
//	waiting        lastGone       ended          (same)
//
// A caller that leaves a leading flight leaves the job running: callers in
// other processes may be waiting on it.
type flight struct {
	c      *Client
	key    string
	tag    string
	cfg    callConfig
	ctx    context.Context // ends when the flight ends or the client closes
	cancel context.CancelFunc
	start  time.Time       // when its first caller called, for the Observer
	obsCtx context.Context // its first caller's context, for the Observer and the job (values only; see FlightTracer)
	trace  string          // "|<traceparent>" (FlightTracer), the end of its generations' ids; "" for none

	mu       lockedBy[flightMuRank] // protects the fields below and its Job's (lock order: lockorder.go)
	state    flightState
	callers  map[*caller]struct{}
	runner   func(context.Context) ([]byte, error) // a Fanout caller's job: lets the flight lead; nil for Push only
	claim    *claim                                // the Push caller that started the flight, until it learns whether it leads
	job      *Job                                  // while leading or stepping down
	answered bool                                  // a join had its reply: Redis answered this flight
	warned   bool                                  // a dropped message was logged
	awaited  string                                // the generation it waits on or leads, for its callers' events
	led      bool                                  // it has been leading
}

type flightState uint8

const (
	flightJoining flightState = iota
	flightWaiting
	flightLeading
	flightSteppingDown
	flightEnded
)

func (s flightState) String() string {
	return [...]string{"joining", "waiting", "leading", "stepping down", "ended"}[s]
}

type flightEvent uint8

const (
	evWaits        flightEvent = iota // a join found another generation leading
	evLeads                           // a join made this process's generation lead, in time
	evLateLead                        // a join made it lead too late to be trusted
	evOutcome                         // the flight's outcome: a result or an error, for every caller
	evAbandon                         // the job ended without an outcome
	evSteppedDown                     // the abandoned lease was given back, and callers remain
	evNotPublished                    // Complete found another generation leading
	evLastGone                        // no caller remains
)

// flightTable is the table of flight's doc comment.
var flightTable = map[flightState]map[flightEvent]flightState{
	flightJoining: {evWaits: flightWaiting, evLeads: flightLeading, evLateLead: flightJoining,
		evOutcome: flightEnded, evLastGone: flightEnded},
	flightWaiting: {evWaits: flightWaiting, evLeads: flightLeading, evLateLead: flightJoining,
		evOutcome: flightEnded, evLastGone: flightEnded},
	flightLeading:      {evOutcome: flightEnded, evAbandon: flightSteppingDown, evNotPublished: flightJoining},
	flightSteppingDown: {evOutcome: flightEnded, evSteppedDown: flightJoining, evLastGone: flightEnded},
}

// nextState is the flight's table as a function: the next state, and
// whether ev applies in s at all.
func nextState(s flightState, ev flightEvent) (flightState, bool) {
	next, ok := flightTable[s][ev]
	if !ok {
		return s, false
	}
	return next, true
}

// toLocked moves the flight by ev (f.mu held): it reports whether ev
// applied. Entering ended cancels the flight's context; the caller removes
// the flight from the client's map once it no longer holds f.mu (the map's
// lock comes first).
func (f *flight) toLocked(ev flightEvent) bool {
	next, ok := nextState(f.state, ev)
	if !ok {
		return false
	}
	f.state = next
	switch next {
	case flightLeading:
		f.led = true
	case flightEnded:
		f.cancel()
	}
	return true
}

// flightsNow returns the client's flights at this moment (each may end
// meanwhile: its own state says).
func (c *Client) flightsNow() []*flight {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	flights := make([]*flight, 0, len(c.flights))
	for _, f := range c.flights {
		flights = append(flights, f)
	}
	return flights
}

// forget removes a flight that ended without an outcome from the client's
// map (the code that ended it calls it once) and ends its trace.
func (f *flight) forget() { f.forgetWith(FlightEndEvent{}) }

// forgetWith is forget for a flight that ended with e's outcome.
func (f *flight) forgetWith(e FlightEndEvent) {
	c := f.c
	c.fmu.Lock()
	if c.flights[f.key] == f {
		delete(c.flights, f.key)
	}
	c.fmu.Unlock()
	if tr, ok := c.opts.Observer.(FlightTracer); ok {
		f.mu.Lock()
		e.Key, e.Leader = f.key, f.led
		f.mu.Unlock()
		tr.EndFlight(f.obsCtx, e)
	}
}

// caller is one caller's place in a flight.
type caller struct {
	ctx     context.Context // its context, for the Observer (values only)
	start   time.Time       // when it called
	onDone  func([]byte, error)
	async   bool // a Push caller: onDone runs on a goroutine of its own
	patient bool // it waits through Redis outages (WaitThroughOutages)
	timer   *time.Timer
}

// attachLocked adds a caller whose onDone fires at the latest after
// cfg.timeout (f.mu held, the flight not ended).
func (f *flight) attachLocked(ctx context.Context, onDone func([]byte, error), async bool, cfg callConfig, runner func(context.Context) ([]byte, error)) *caller {
	cl := &caller{ctx: context.WithoutCancel(ctx), start: time.Now(), onDone: onDone, async: async, patient: cfg.patient}
	f.callers[cl] = struct{}{}
	if f.runner == nil {
		f.runner = runner
	}
	cl.timer = time.AfterFunc(cfg.timeout, func() { f.leave(cl, ErrTimeout) })
	return cl
}

// detachLocked removes a caller without calling its onDone (f.mu held);
// it reports whether the flight ended because the last caller left.
func (f *flight) detachLocked(cl *caller) (ended bool) {
	if _, ok := f.callers[cl]; !ok {
		return false
	}
	delete(f.callers, cl)
	cl.timer.Stop()
	return len(f.callers) == 0 && f.toLocked(evLastGone)
}

// leave detaches a caller before the outcome, calling its onDone with why.
// A flight that is not leading ends when its last caller leaves.
func (f *flight) leave(cl *caller, why error) {
	f.leaveIfAttached(cl, why)
}

// leaveIfAttached is leave, reporting whether cl was still attached (else
// its outcome was, or is being, delivered).
func (f *flight) leaveIfAttached(cl *caller, why error) bool {
	f.mu.Lock()
	_, attached := f.callers[cl]
	ended := f.detachLocked(cl)
	leading, awaited := f.state == flightLeading, f.awaited
	f.mu.Unlock()
	if ended {
		f.forget()
	}
	if attached {
		f.returned(cl, leading, awaited, why)
		cl.deliver(nil, why)
	}
	return attached
}

// returned tells the Observer that one caller's part ended: with err (nil
// for a result), from this process's run when leading, with the outcome
// (or the wait) of generation gen.
func (f *flight) returned(cl *caller, leading bool, gen string, err error) {
	f.c.opts.Observer.FanoutReturned(cl.ctx, FanoutCallEvent{Key: f.key, Start: cl.start, Leader: leading, Err: err, Run: traceOf(gen)})
}

// detach removes a caller without calling its onDone.
func (f *flight) detach(cl *caller) {
	f.mu.Lock()
	ended := f.detachLocked(cl)
	f.mu.Unlock()
	if ended {
		f.forget()
	}
}

// leaveUnanswered is a caller leaving because its context ended, with
// why, wrapped as ErrUnavailable when Redis never answered the flight. It
// reports left false when the caller's outcome came first (it is, or is
// being, delivered to its onDone).
func (f *flight) leaveUnanswered(cl *caller, why error) (left bool, err error) {
	f.mu.Lock()
	answered := f.answered
	f.mu.Unlock()
	if !answered {
		why = unavailable(why)
	}
	return f.leaveIfAttached(cl, why), why
}

func (cl *caller) deliver(b []byte, err error) {
	if cl.async {
		go cl.onDone(b, err)
		return
	}
	cl.onDone(b, err)
}

// finish ends the flight with its outcome — env, or err when env is nil —
// and delivers it to every caller still attached, each with its own copy
// of the bytes. It does nothing when the flight's state does not take an
// outcome (it ended before, or it is stepping down).
func (f *flight) finish(env *envelope, err error) {
	f.mu.Lock()
	leading := f.state == flightLeading
	if !f.toLocked(evOutcome) {
		f.mu.Unlock()
		return
	}
	callers, gen := f.callers, f.awaited
	f.callers = map[*caller]struct{}{}
	f.mu.Unlock()
	var payload []byte
	if env != nil {
		payload, err = env.outcome()
		gen = env.gen
	}
	f.c.opts.Observer.FanoutDone(f.obsCtx, FanoutEvent{Key: f.key, Start: f.start, Leader: leading, Callers: len(callers), Err: err})
	f.forgetWith(FlightEndEvent{Delivered: true, Callers: len(callers), Err: err})
	for cl := range callers {
		cl.timer.Stop()
		f.returned(cl, leading, gen, err)
		if payload != nil {
			cl.deliver(append([]byte(nil), payload...), nil)
		} else {
			cl.deliver(nil, err)
		}
	}
}

// closed ends the flight with ErrClosed for the callers still attached
// when the client closed; otherwise (every caller left) it does nothing.
func (f *flight) closed() {
	if f.c.bg.Err() != nil {
		f.finish(nil, ErrClosed)
	}
}

// dropped reports a malformed or oversize message or stored result: to the
// Observer always, to the log once per flight.
func (f *flight) dropped(what string, err error) {
	f.c.opts.Observer.Dropped(f.obsCtx, DropEvent{Kind: KindFanout, Key: f.key, Err: err})
	f.mu.Lock()
	warned := f.warned
	f.warned = true
	f.mu.Unlock()
	if !warned {
		f.c.opts.Logger.Warn("dlock: dropped malformed fanout "+what, "key", f.key, "err", err)
	}
}
