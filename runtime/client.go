package dlockrt

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Client runs dlock's primitives on one Redis deployment (standalone,
// Sentinel or Cluster). It is safe for concurrent use; create one per
// process and share it.
type Client struct {
	rdb  redis.UniversalClient
	opts Options
	mux  *mux

	closed atomic.Bool
	bg     context.Context // cancelled by Close; parent of watchdogs
	stop   context.CancelFunc

	fan  fanoutRedis // the fanout scripts (fanoutScripts; faked by tests)
	pipe pipeline    // scripts queued for the next round trip (pipeline.go)

	pipesMu sync.Mutex           // protects pipes; a leaf
	pipes   map[string]*pipeline // a Cluster's, by primary address

	// Mutexes nest in the order of lockorder.go.
	mu      lockedBy[clientMuRank] // protects leases, closing, waiting
	leases  map[*lease]struct{}
	closing bool           // Close has taken the leases: track refuses more
	waiting bool           // Close waits for wg: no more goTracked
	wg      sync.WaitGroup // goroutines of watchdog renewals, fanout waits, semaphore leaves (goTracked)
	clock   *leaseClock    // wakes leases for their renewals and losses

	fmu     lockedBy[fmuRank] // protects flights (each flight has its own mu)
	flights map[string]*flight

	tmu        lockedBy[tmuRank] // protects turnstiles
	turnstiles map[string]*turnstile
	qmu        sync.Mutex              // protects queued; a leaf: nothing is taken under it
	queued     map[string]*queuedCount // semaphore keys this client's callers queue for (Snapshot)

	limitsWarned sync.Map // limitPair -> true: semaphore limits that disagree, logged once

	idSuffix string // of every owner id: the client's identity (identity.go)
}

// New returns a Client that drives rdb, a *redis.Client (standalone or
// Sentinel failover) or *redis.ClusterClient (a *redis.Ring is refused with
// ErrInvalid). A nil opts means defaults. The
// client does not own rdb: Close leaves it open.
//
// dlock needs Redis 7 (it uses sharded pub/sub on every topology). For a
// *redis.Client (standalone or Sentinel), New adds a dial hook to it (and to
// Options.PubSub) that notices when connections reach a new primary, so the
// client's subscription follows a failover; it stays after Close, inert.
// New makes no round trip to Redis, unless Options.Startup is
// StartupRefuse (then it runs Check, within Options.OpTimeout, and fails
// with its error) or Options.Eviction is EvictionRefuse (then it fails with
// CheckEviction's error: ErrEvictable, ErrUnavailable, ErrNoPermission).
// By default it runs Check in the background and logs each problem.
func New(rdb redis.UniversalClient, opts *Options) (*Client, error) {
	if isNil(rdb) {
		return nil, invalid("nil redis client")
	}
	if _, ring := rdb.(*redis.Ring); ring {
		// A Ring shards by key on the client, without failover or sharded
		// pub/sub routing: refused rather than half working.
		return nil, invalid("*redis.Ring is not supported; use a *redis.Client (standalone or Sentinel) or a *redis.ClusterClient")
	}
	o, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	c := &Client{rdb: rdb, opts: o, leases: map[*lease]struct{}{}, flights: map[string]*flight{}, turnstiles: map[string]*turnstile{},
		clock: newLeaseClock()}
	c.fan = fanoutScripts{c}
	c.pipe.rdb = rdb
	c.idSuffix = identitySuffix(o.Name)
	bg, stop := context.WithCancelCause(context.Background())
	c.bg, c.stop = bg, func() { stop(ErrClosed) } // work on c.bg ends with cause ErrClosed
	ps := o.PubSub
	if isNil(ps) {
		ps = rdb
	}
	c.mux = newMux(ps, o.Logger)
	c.mux.watchFailover(rdb, ps)
	if err := c.startup(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Close releases every lock, permit and fanout lease the client still
// holds (best effort: a fanout led here is then taken over by a waiter
// elsewhere), stops their watchdogs and the subscription connections, and
// makes later calls fail with ErrClosed. After it returns, nothing the
// client obtained is believed held: every Done channel is closed and Err
// says ErrClosed; an acquisition that raced Close returns ErrClosed and
// released what it got. Fanout callers, Lock callers and semaphore waiters
// still waiting get ErrClosed. Close returns within Options.OpTimeout (plus
// a little), even when Redis is unreachable; what it could not release then
// lapses with its lease. Close is idempotent.
func (c *Client) Close() error {
	if c == nil || c.closed.Swap(true) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.OpTimeout)
	defer cancel()
	c.mu.Lock()
	c.closing = true // from now on track refuses new leases
	held := make([]*lease, 0, len(c.leases))
	for l := range c.leases {
		held = append(held, l)
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range held {
		wg.Go(func() { l.doRelease(ctx, ErrClosed) })
	}
	wg.Wait()
	for _, f := range c.flightsNow() {
		f.finish(nil, ErrClosed)
	}
	c.stop()
	c.clock.stop()
	c.mu.Lock()
	c.waiting = true
	c.mu.Unlock()
	// Background work ends with c.bg or within OpTimeout of its start;
	// Close waits for it no longer than its own deadline.
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	c.mux.close()
	return nil
}

// isNil reports whether rdb is nil, or a nil pointer in the interface.
func isNil(rdb redis.UniversalClient) bool {
	switch r := rdb.(type) {
	case nil:
		return true
	case *redis.Client:
		return r == nil
	case *redis.ClusterClient:
		return r == nil
	case *redis.Ring:
		return r == nil
	}
	return false
}

func (c *Client) check() error {
	if c == nil {
		return invalid("nil *Client")
	}
	if c.closed.Load() {
		return ErrClosed
	}
	return nil
}

// run evaluates a script and returns promptly when ctx ends, even if the
// client's own timeouts are longer (go-redis does not bound network I/O by
// the context unless ContextTimeoutEnabled is set).
//
// undo (if not nil) makes an acquisition leave nothing behind when its
// caller cannot know what it got: it is called, on a background goroutine
// with a context bounded by Options.OpTimeout, when the caller leaves
// before the reply (at once, and again with the late reply's value, or nil
// when it failed), and when the call failed in a way that may have reached
// Redis (a network error, not an error reply). Exactly one side owns a late
// reply: the caller, if the reply came before it left, else undo.
func (c *Client) run(ctx context.Context, s *redis.Script, keys []string, args []any, undo func(context.Context, any)) (any, error) {
	if ctx.Done() == nil {
		v, err := c.exec(ctx, s, keys, args)
		c.undoIfAmbiguous(ctx, err, undo)
		return v, redisErr(err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err // the caller left before anything was sent
	}
	type reply struct {
		v   any
		err error
	}
	ch := make(chan reply, 1)
	var owner atomic.Int32 // a replyOwner: who owns the late reply
	go func() {
		v, err := c.exec(context.WithoutCancel(ctx), s, keys, args)
		if owner.CompareAndSwap(int32(replyUnowned), int32(replyCaller)) {
			ch <- reply{v, err}
			return
		}
		if undo != nil && (err == nil || ambiguous(err)) {
			if err != nil {
				v = nil
			}
			c.undo(ctx, v, undo)
		}
	}()
	select {
	case r := <-ch:
		c.undoIfAmbiguous(ctx, r.err, undo)
		return r.v, redisErr(r.err)
	case <-ctx.Done():
		if !owner.CompareAndSwap(int32(replyUnowned), int32(replyUndo)) { // the reply came first: it is the caller's
			r := <-ch
			c.undoIfAmbiguous(ctx, r.err, undo)
			return r.v, redisErr(r.err)
		}
		if undo != nil {
			// Undo now too, not only when the late reply comes: the reply
			// may never come (lost, a one-way partition), and the client's
			// own timeout may be long. Undoing is idempotent, and the late
			// reply undoes again (a request delayed past this undo).
			c.undo(ctx, nil, undo)
		}
		return nil, unavailable(ctx.Err())
	}
}

// replyOwner says who owns the reply of a script run that its caller may
// leave before: exactly one side acts on it.
type replyOwner int32

const (
	replyUnowned replyOwner = iota // not yet decided
	replyCaller                    // the reply came before the caller left: the caller's
	replyUndo                      // the caller left first: the undo's
)

// undoIfAmbiguous runs undo when err says the call may still have run in
// Redis.
func (c *Client) undoIfAmbiguous(ctx context.Context, err error, undo func(context.Context, any)) {
	if err != nil && undo != nil && ambiguous(err) {
		c.undo(ctx, nil, undo)
	}
}

// ambiguous reports whether a failed call may still have run in Redis: a
// network error or a timeout, not an error reply.
func ambiguous(err error) bool {
	var rerr redis.Error
	return !errors.As(err, &rerr) && !errors.Is(err, redis.Nil)
}

// undo runs f in the background (Close waits for it; once it no longer
// does, inline), on a context with ctx's values bounded by OpTimeout.
func (c *Client) undo(ctx context.Context, v any, f func(context.Context, any)) {
	do := func() {
		uctx, cancel := c.detached(ctx)
		defer cancel()
		f(uctx, v)
	}
	if !c.goTracked(do) {
		do()
	}
}

// redisErr maps a go-redis error to dlock's: nil stays nil, a refused
// user or password is ErrAuth, a refusal for lack of permission (NOPERM,
// or a script refused a key or channel, which Redis reports as ERR) is
// ErrNoPermission, the rest ErrUnavailable, each wrapping the cause.
func redisErr(err error) error {
	if err == nil || errors.Is(err, redis.Nil) {
		return nil
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNoPermission) || errors.Is(err, ErrAuth) {
		return err
	}
	switch m := err.Error(); {
	case strings.Contains(m, "WRONGPASS") || strings.Contains(m, "NOAUTH"):
		return fmt.Errorf("%w: %w", ErrAuth, err)
	case strings.Contains(m, "NOPERM") || strings.Contains(m, "The user executing the script can't"):
		return fmt.Errorf("%w: %w", ErrNoPermission, err)
	}
	return unavailable(err)
}

// refused reports whether err is a refusal that no retry will change: a
// permission or the credentials.
func refused(err error) bool {
	return errors.Is(err, ErrNoPermission) || errors.Is(err, ErrAuth)
}

// detached returns a context for cleanup work that must happen even when the
// caller's context has ended: it keeps ctx's values, drops its cancellation,
// and is bounded by Options.OpTimeout.
func (c *Client) detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), c.opts.OpTimeout)
}

// withValues returns a context that ends with parent and carries vals's
// values (and parent's, where vals has none), but for a fencing token
// (TokenFromContext): a job runs in the trace of the caller that started
// its flight, on the client's lifetime, and holds none of its locks.
func withValues(parent, vals context.Context) context.Context {
	return valuesCtx{parent, vals}
}

type valuesCtx struct {
	context.Context
	vals context.Context
}

func (v valuesCtx) Value(key any) any {
	if _, token := key.(tokenKey); token {
		return v.Context.Value(key) // a caller's fencing token is not the job's: it holds no lock
	}
	if x := v.vals.Value(key); x != nil {
		return x
	}
	return v.Context.Value(key)
}

// goTracked runs f on a goroutine that Close waits for. Once Close has
// begun waiting it reports false, and f does not run.
func (c *Client) goTracked(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waiting {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

// track records a held lease, so that Close releases it; once Close has
// begun it reports false and records nothing.
func (c *Client) track(l *lease) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	c.leases[l] = struct{}{}
	return true
}

func (c *Client) untrack(l *lease) {
	c.mu.Lock()
	delete(c.leases, l)
	c.mu.Unlock()
}

func ms(d time.Duration) int64 {
	m := d.Milliseconds()
	if m < 1 {
		m = 1
	}
	return m
}
