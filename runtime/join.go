package dlockrt

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// drive runs the flight's joins and waits on a goroutine of its own (Close
// waits for it); when the client is closing it ends the flight with
// ErrClosed instead. first says whether this is the flight's first join
// (its answer goes to a Push caller's claim, and a failure ends it).
func (f *flight) drive(first bool) bool {
	if f.c.closed.Load() || !f.c.goTracked(func() { f.run(first) }) {
		f.finish(nil, ErrClosed)
		return false
	}
	return true
}

// run joins and waits until the flight leads (its job then runs on its
// own) or ends. It joins; when another generation leads it subscribes to
// the key's channel, joins again (an outcome between the two joins is
// found in the key), then waits for the envelope of that generation, or
// the leader's lease end, or a resync, and joins again. It leads when a
// join finds neither a leader nor a result and a local caller brought the
// job. Before the flight's first answer a failed join ends it (the error
// is every caller's), and three late leads in a row do too; after it, a
// failed join is retried.
func (f *flight) run(first bool) {
	var sub *subscription
	defer func() {
		if sub != nil {
			sub.close()
		}
	}()
	leader, late := "", 0
	var failing time.Time // since when joins fail; zero while Redis answers
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for {
		f.mu.Lock()
		mayLead := f.runner != nil || (first && f.claim != nil)
		f.mu.Unlock()
		gen, sent := f.c.newOwnerID()+f.trace, time.Now()
		j, err := f.join(gen, mayLead, leader)
		// Join again at least every OpTimeout while waiting, even when the
		// leader's lease runs longer: an outage that the subscription does
		// not show at once (a network that drops everything) is then found
		// within two OpTimeouts.
		next := min(j.wait, f.c.opts.OpTimeout)
		if err == nil {
			failing = time.Time{}
		}
		switch {
		case err != nil && (first || refused(err)):
			// Before its first answer, or refused for good (a permission,
			// the credentials): the error is every caller's outcome.
			f.giveClaim(nil, err) // Push returns the error: its onDone is not called
			if f.ctx.Err() != nil && f.c.closed.Load() {
				err = ErrClosed
			}
			f.finish(nil, err)
			return
		case err != nil:
			if f.ctx.Err() != nil {
				f.closed()
				return
			}
			if failing.IsZero() {
				failing = sent // the outage began no later than this join
			}
			if down := time.Since(failing); down >= f.c.opts.OpTimeout && !f.outage(fmt.Errorf("%w: redis unreachable for %v: %w", ErrUnavailable, down.Round(time.Millisecond), err)) {
				return // no caller waits through the outage
			}
			f.c.opts.Logger.Warn("dlock: fanout join failed; retrying", "key", f.key, "err", err)
			next = min(f.cfg.ttl/10, 100*time.Millisecond) + rand.N(10*time.Millisecond)
		case j.state == joinResult:
			f.giveClaim(nil, ErrNotAcquired)
			f.finish(&j.env, nil)
			return
		case j.state == joinLead && lapsed(sent, f.cfg.ttl) != nil:
			// The lead came back too late to be trusted: no job runs on a
			// lease that may have ended, beside a newer generation's.
			ctx, cancel := f.c.detached(f.obsCtx)
			f.c.fan.giveBack(ctx, f.tag, gen)
			cancel()
			f.mu.Lock()
			f.toLocked(evLateLead)
			f.mu.Unlock()
			if late++; first && late == maxLateGrants {
				err := lapsed(sent, f.cfg.ttl)
				f.giveClaim(nil, err)
				f.finish(nil, err)
				return
			}
			next = 0
		case j.state == joinLead:
			f.lead(gen, sent, first)
			return
		default:
			late = 0
			if first {
				f.giveClaim(nil, ErrNotAcquired)
				first = false
			}
			f.mu.Lock()
			moved := f.toLocked(evWaits)
			f.mu.Unlock()
			if !moved { // every caller left meanwhile
				f.closed()
				return
			}
			leader = j.leader
			f.mu.Lock()
			f.awaited = leader
			f.mu.Unlock()
			if sub == nil {
				if testHookFanoutWait != nil {
					testHookFanoutWait(f.key)
				}
				if sub, err = f.c.fan.subscribe(f.ctx, f.tag); err != nil {
					if f.ctx.Err() == nil {
						f.finish(nil, err)
					}
					f.closed()
					return
				}
				next = joinNow // join again at once: the first join preceded the subscription
			}
		}
		if !f.await(sub, t, next, &leader) {
			return
		}
	}
}

// outage ends the wait of every caller that does not wait through Redis
// outages (WaitThroughOutages) with err; it reports whether any caller
// still waits.
func (f *flight) outage(err error) bool {
	f.mu.Lock()
	var gone []*caller
	for cl := range f.callers {
		if !cl.patient {
			gone = append(gone, cl)
		}
	}
	f.mu.Unlock()
	for _, cl := range gone {
		f.leave(cl, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state != flightEnded
}

// joinNow, as await's next, says to join again at once, once the messages
// that came meanwhile were looked at (just after subscribing: the outcome
// may be there already, and then no join is needed).
const joinNow time.Duration = -1

// await waits, after a join, for the next reason to join again: a message
// on the key's channel, a resync, or the timer (next: the rest of the
// leader's lease, or a pause before retrying). It ends the flight and
// reports false when the awaited generation's outcome arrives or the
// flight's context ends. An envelope of another generation is not taken:
// the next join says which outcome is current.
func (f *flight) await(sub *subscription, t *time.Timer, next time.Duration, leader *string) bool {
	if sub == nil {
		if next > 0 {
			t.Reset(next)
			select {
			case <-t.C:
			case <-f.ctx.Done():
				f.closed()
				return false
			}
		}
		return true
	}
	if next == joinNow {
		t.Reset(0)
	} else {
		t.Reset(next + time.Millisecond)
	}
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
			return false // every caller left, or the client closed
		}
		if got && !n.resync && n.payload != "released" {
			env, err := decodeEnvelope(n.payload, f.c.opts.MaxResultSize)
			switch {
			case err != nil:
				f.dropped("message", err)
				if !fired {
					continue
				}
			case env.gen == *leader && *leader != "":
				f.finish(&env, nil)
				return false
			}
		}
		return true
	}
}

// testHookFanoutWait, when set by a test, runs when a flight begins to
// wait for another generation, before it subscribes.
var testHookFanoutWait func(key string)

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
// have taken is given back.
func (f *flight) join(gen string, mayLead bool, waited string) (joined, error) {
	ctx, cancel := context.WithTimeout(f.ctx, f.c.opts.OpTimeout)
	defer cancel()
	r, err := f.c.fan.join(ctx, f.tag, gen, f.cfg.ttl, mayLead, waited)
	if err != nil {
		return joined{}, err
	}
	f.mu.Lock()
	f.answered = true
	f.mu.Unlock()
	switch r.state {
	case 1:
		return joined{state: joinLead}, nil
	case 2:
		env, err := decodeEnvelope(r.stored, f.c.opts.MaxResultSize)
		if err != nil {
			// A foreign or corrupt value in the key: ignore it and wait;
			// the leader's publication or the key's expiry decides.
			f.dropped("result", err)
			return joined{state: joinWait, wait: f.cfg.ttl}, nil
		}
		return joined{state: joinResult, env: env}, nil
	}
	wait := time.Duration(r.pttl) * time.Millisecond
	if r.pttl < 0 {
		wait = f.cfg.ttl
	}
	return joined{state: joinWait, wait: wait, leader: r.leader}, nil
}
