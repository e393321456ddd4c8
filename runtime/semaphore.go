package dlockrt

import (
	"context"
	"strconv"
	"strings"
	"time"
)

// waiterLease is how long a queued waiter keeps its place without renewing
// it; a waiter renews it three times per lease while it waits.
const waiterLease = 3 * time.Second

// semOfferGrace is how long a waiter a free permit is offered to has to
// take it: a live one is told at once and takes it in a round trip; a dead
// one's place lapses then, and the waiter behind it, told to look again
// after the grace, takes its turn. So a waiter that died at the head of
// the queue holds up the others for about this long, not a waiterLease.
// (A variable only so that a test can widen it past scheduling noise.)
var semOfferGrace = 250 * time.Millisecond

// Semaphore admits at most Limit holders of a key across the fleet at once.
// Waiters are served first come, first served, fleet-wide. Holders hold
// leases (renewed by the watchdog), so a crashed holder's permit returns when
// its lease ends. Methods on a nil *Semaphore return ErrInvalid.
type Semaphore struct {
	c     *Client
	key   string
	tag   string
	limit int
	rkey  string // the sorted set that holds its holders and queue
	ch    string // its channel
	err   error  // bad key or limit, reported by every call
}

// Permit is one held place in a Semaphore. Methods on a nil *Permit return
// ErrNotHeld or zero values.
type Permit struct {
	s  *Semaphore
	id string
	leaseHandle
}

// Semaphore returns the semaphore of key with limit permits. Every process
// should use the same limit for a key; when they differ (during a deploy
// that changes it), no grant ever exceeds the smallest limit of the
// requester and the current holders, and the disagreement is reported
// (Observer.LimitMismatch, and a warning naming the key and both limits).
// A bad key or limit (< 1) makes every call on it fail with ErrInvalid.
func (c *Client) Semaphore(key string, limit int) *Semaphore {
	s := &Semaphore{c: c, key: key, limit: limit}
	if limit < 1 {
		s.err = invalid("semaphore limit %d < 1", limit)
	}
	if c == nil {
		s.err = invalid("nil *Client")
		return s
	}
	tag, err := c.tag(key)
	if err != nil {
		s.err = err
	}
	s.tag = tag
	s.rkey, s.ch = tag+":sem", tag+":sem:ch"
	return s
}

func (s *Semaphore) check() error {
	if s == nil {
		return invalid("nil *Semaphore")
	}
	if s.err != nil {
		return s.err
	}
	return s.c.check()
}

// Acquire waits for a permit, in arrival order across the fleet, until ctx
// ends. It sleeps until a permit is released (announced over the client's
// subscription) or the earliest holder's lease ends; it never polls faster
// than it renews its place in the queue. When ctx ends first, it leaves the
// queue and returns an error matching ErrNotAcquired and ctx.Err(); when
// Redis cannot be reached, or a grant came back late three times in a row
// (see Client.Once), an error matching ErrUnavailable.
func (s *Semaphore) Acquire(ctx context.Context, opts ...Option) (*Permit, error) {
	return s.acquire(ctx, true, opts)
}

// TryAcquire takes a permit only if one is free now and nobody is queued
// for it; otherwise it returns ErrNotAcquired at once. Acquire and
// TryAcquire take WithTTL and WithWatchdog; any other option is an
// ErrInvalid error.
func (s *Semaphore) TryAcquire(ctx context.Context, opts ...Option) (*Permit, error) {
	return s.acquire(ctx, false, opts)
}

func (s *Semaphore) acquire(ctx context.Context, queue bool, opts []Option) (*Permit, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	cfg, err := s.c.callConfig("Semaphore", semaphoreOpts, opts)
	if err != nil {
		return nil, err
	}
	called := time.Now()
	// The permit's id carries the limit its holder asked for: other
	// processes' grants honour the smallest limit in force.
	waiter, permit := s.c.newOwnerID(), s.c.newOwnerID()+"/"+strconv.Itoa(s.limit)
	q := "0"
	if queue {
		q = "1"
	}
	args := []any{waiter, permit, s.limit, ms(cfg.ttl), ms(waiterLease), q, s.ch, ms(semOfferGrace)}
	keys := []string{s.rkey}
	var sub *subscription
	defer func() {
		if sub != nil {
			sub.close()
		}
	}()
	for late := 1; ; {
		sent := time.Now()
		v, err := s.c.run(ctx, scriptSemAcquire, keys, args, func(ctx context.Context, _ any) {
			// The caller left, or lost the reply: whatever this call got
			// (a permit, a place in the queue) is given back.
			s.release(ctx, permit, waiter)
		})
		if err != nil {
			if queue {
				s.leave(ctx, waiter)
			}
			return nil, notAcquiredBy(ctx, err)
		}
		r, ok := int64s(v)
		if !ok || (r[0] == 1 && len(r) != 3) || (r[0] == 0 && len(r) != 5) {
			return nil, unavailable(errBadReply)
		}
		s.limitsAgree(ctx, r[len(r)-1])
		if r[0] != 1 {
			late = 1 // late grants are counted in a row
		}
		if r[0] == 1 && late < maxLateGrants && lapsed(sent, cfg.ttl) != nil {
			// Too late to be trusted: ask again (the script renews a
			// permit that is still ours).
			late++
			continue
		}
		if r[0] == 1 {
			p := &Permit{s: s, id: permit}
			p.lease = &lease{c: s.c, kind: KindSemaphore, key: s.key, called: called,
				ttl: cfg.ttl, watchdog: cfg.watchdog, extend: p.extend, release: p.releaseAll}
			if err := lapsed(sent, cfg.ttl); err != nil {
				s.release(ctx, permit, "")
				return nil, err
			}
			if !p.lease.start(ctx, sent) { // Close began meanwhile
				s.release(ctx, permit, "")
				return nil, ErrClosed
			}
			return p, nil
		}
		if !queue {
			s.c.opts.Observer.NotAcquired(ctx, NotAcquiredEvent{Kind: KindSemaphore, Key: s.key})
			return nil, ErrNotAcquired
		}
		s.c.opts.Observer.Queued(ctx, QueueEvent{Key: s.key, Waiters: int(r[3])})
		if sub == nil { // queued for the first time: counted in Snapshot until it returns
			defer s.c.queuing(s.key)()
		}
		s.c.queueDepth(s.key, int(r[3]))
		if sub == nil {
			if testHookSemQueued != nil {
				testHookSemQueued(s.key)
			}
			// Subscribe, then try again before waiting, so a release in
			// between is not missed.
			if sub, err = s.c.mux.subscribe(ctx, s.ch); err != nil {
				s.leave(ctx, waiter)
				return nil, notAcquiredBy(ctx, err)
			}
			continue
		}
		wait := waiterLease / 3
		if r[1] >= 0 {
			wait = min(wait, time.Duration(r[1])*time.Millisecond+time.Millisecond)
		}
		if r[1] == ms(semOfferGrace) {
			wait = semOfferGrace // permits are offered to waiters ahead: look again once a dead one's place lapsed
		}
		if err := s.sleep(ctx, sub, wait, r[2]); err != nil {
			s.c.opts.Observer.NotAcquired(ctx, NotAcquiredEvent{Kind: KindSemaphore, Key: s.key})
			s.leave(ctx, waiter)
			return nil, notAcquiredBy(ctx, err)
		}
	}
}

// sleep waits until it is worth looking again: a "free <t1> <t2>" notice
// for a ticket at or after ours (at once up to t1; after the offer's
// grace up to t2), a resync, the timer, or the end of ctx (its error).
func (s *Semaphore) sleep(ctx context.Context, sub *subscription, wait time.Duration, ticket int64) error {
	t := time.NewTimer(wait)
	defer t.Stop()
	deadline := time.Now().Add(wait)
	for {
		select {
		case n := <-sub.C:
			if up, ok := strings.CutPrefix(n.payload, "free "); ok && !n.resync {
				t1, t2, ok := freeNotice(up)
				switch {
				case ok && ticket > t2:
					continue // permits for those well ahead of us
				case ok && ticket > t1:
					// A standby: the permit is offered to a waiter just
					// ahead; look again when a dead one's place lapsed.
					if at := time.Now().Add(semOfferGrace + semOfferGrace/5); at.Before(deadline) {
						deadline = at
						t.Reset(time.Until(at))
					}
					continue
				}
			}
			if testHookSemWoken != nil {
				testHookSemWoken(s.key, true)
			}
			return nil
		case <-t.C:
			if testHookSemWoken != nil {
				testHookSemWoken(s.key, false)
			}
			return nil
		case <-s.c.bg.Done():
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// freeNotice parses "<t1> <t2>" (or an older "<t1>").
func freeNotice(s string) (t1, t2 int64, ok bool) {
	a, b, two := strings.Cut(s, " ")
	t1, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	t2 = t1
	if two {
		if t2, err = strconv.ParseInt(b, 10, 64); err != nil || t2 < t1 {
			return 0, 0, false
		}
	}
	return t1, t2, true
}

// limitsAgree reports a holder's limit other than ours (other, 0 for
// none): to the Observer every time, to the log once per key and pair of
// limits.
func (s *Semaphore) limitsAgree(ctx context.Context, other int64) {
	if other == 0 || other == int64(s.limit) {
		return
	}
	s.c.opts.Observer.LimitMismatch(ctx, LimitEvent{Key: s.key, Limit: s.limit, Other: int(other)})
	if _, seen := s.c.limitsWarned.LoadOrStore(limitPair{s.key, s.limit, int(other)}, true); !seen {
		s.c.opts.Logger.Warn("dlock: processes use different limits for one semaphore; grants honour the smallest",
			"key", s.key, "limit", s.limit, "other", other)
	}
}

type limitPair struct {
	key          string
	limit, other int
}

// testHookSemWoken, when set by a test, runs when a queued Acquire wakes
// to look again: by a message on its channel, or by its timer.
var testHookSemWoken func(key string, byMessage bool)

// testHookSemQueued, when set by a test, runs when Acquire first found no
// permit and queued.
var testHookSemQueued func(key string)

// leave takes a waiter that gives up out of the queue, in the background
// (Close waits for it): the caller does not wait for it (Redis may be what
// failed). Once Close no longer waits, it runs before the caller returns.
// If it cannot, the waiter's place lapses with its lease.
func (s *Semaphore) leave(ctx context.Context, waiter string) {
	out := func() { s.release(ctx, "", waiter) }
	if !s.c.goTracked(out) {
		out()
	}
}

// release runs sem_release on a context detached from the caller's.
func (s *Semaphore) release(ctx context.Context, permit, waiter string) (bool, error) {
	ctx, cancel := s.c.detached(ctx)
	defer cancel()
	v, err := s.c.run(ctx, scriptSemRelease, []string{s.rkey}, []any{permit, waiter, s.limit, s.ch, ms(semOfferGrace)}, nil)
	n, _ := v.(int64)
	return n == 1, err
}

// Do runs f holding a permit, and always releases it. f's context is
// cancelled, with ErrLost as its cause, if the permit's lease is lost.
func (s *Semaphore) Do(ctx context.Context, f func(ctx context.Context) error, opts ...Option) error {
	p, err := s.Acquire(ctx, opts...)
	if err != nil {
		return err
	}
	defer p.Release(ctx)
	fctx, cancel := p.Context(ctx)
	defer cancel()
	return f(fctx)
}

func (p *Permit) extend(ctx context.Context, ttl time.Duration) (bool, error) {
	v, err := p.s.c.run(ctx, scriptSemExtend, []string{p.s.rkey}, []any{p.id, ms(ttl)}, nil)
	if err != nil {
		return false, err
	}
	n, _ := v.(int64)
	return n == 1, nil
}

func (p *Permit) releaseAll(ctx context.Context) (int, int, error) {
	ok, err := p.s.release(ctx, p.id, "")
	if ok {
		return 1, 1, err
	}
	return 0, 1, err
}

// Key is the semaphore's key.
func (p *Permit) Key() string {
	if p == nil {
		return ""
	}
	return p.s.key
}
