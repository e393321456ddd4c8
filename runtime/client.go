package dlockrt

import (
	"context"
	"errors"
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

	mu      sync.Mutex // protects leases, waiting
	leases  map[*lease]struct{}
	waiting bool           // Close waits for wg: no more goTracked
	wg      sync.WaitGroup // goroutines of watchdog renewals, fanout waits, semaphore leaves (goTracked)
	clock   *leaseClock    // wakes leases for their renewals and losses

	fmu     sync.Mutex // protects flights and the state of every flight
	flights map[string]*flight

	tmu        sync.Mutex // protects turnstiles
	turnstiles map[string]*turnstile
}

// New returns a Client that drives rdb, a *redis.Client (standalone or
// Sentinel failover) or *redis.ClusterClient. A nil opts means defaults. The
// client does not own rdb: Close leaves it open.
//
// dlock needs Redis 7 (it uses sharded pub/sub on every topology). For a
// *redis.Client (standalone or Sentinel), New adds a dial hook to it (and to
// Options.PubSub) that notices when connections reach a new primary, so the
// client's subscription follows a failover; it stays after Close, inert.
func New(rdb redis.UniversalClient, opts *Options) (*Client, error) {
	if rdb == nil {
		return nil, invalid("nil redis client")
	}
	o, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	c := &Client{rdb: rdb, opts: o, leases: map[*lease]struct{}{}, flights: map[string]*flight{}, turnstiles: map[string]*turnstile{},
		clock: newLeaseClock()}
	c.bg, c.stop = context.WithCancel(context.Background())
	ps := o.PubSub
	if ps == nil {
		ps = rdb
	}
	c.mux = newMux(ps, o.Logger)
	c.mux.watchFailover(rdb, ps)
	return c, nil
}

// Close releases every lock and fanout lease the client still holds (best
// effort, bounded by Options.OpTimeout; a fanout led here is then taken
// over by a waiter elsewhere), stops their watchdogs and the subscription
// connections, and makes later calls fail with ErrClosed. Holders of
// released locks see their Done channel close with ErrClosed; fanout
// callers, Lock callers and semaphore waiters still waiting get ErrClosed.
// Close is idempotent.
func (c *Client) Close() error {
	if c == nil || c.closed.Swap(true) {
		return nil
	}
	c.mu.Lock()
	held := make([]*lease, 0, len(c.leases))
	for l := range c.leases {
		held = append(held, l)
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.OpTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, l := range held {
		wg.Go(func() { l.doRelease(ctx, ErrClosed) })
	}
	wg.Wait()
	c.fmu.Lock()
	flights := make([]*flight, 0, len(c.flights))
	for _, f := range c.flights {
		flights = append(flights, f)
	}
	c.fmu.Unlock()
	for _, f := range flights {
		f.finish(nil, ErrClosed)
	}
	c.stop()
	c.clock.stop()
	c.mu.Lock()
	c.waiting = true
	c.mu.Unlock()
	c.wg.Wait()
	c.mux.close()
	return nil
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
// the context unless ContextTimeoutEnabled is set). When the caller has left
// and the call later succeeds, orphan (if not nil) is given its result to
// undo it.
func (c *Client) run(ctx context.Context, s *redis.Script, keys []string, args []any, orphan func(any)) (any, error) {
	if ctx.Done() == nil {
		v, err := s.Run(ctx, c.rdb, keys, args...).Result()
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
	var left atomic.Bool
	go func() {
		v, err := s.Run(context.WithoutCancel(ctx), c.rdb, keys, args...).Result()
		if left.Load() && err == nil && orphan != nil {
			orphan(v)
		}
		ch <- reply{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, redisErr(r.err)
	case <-ctx.Done():
		left.Store(true)
		select { // it may have finished meanwhile: prefer its answer
		case r := <-ch:
			return r.v, redisErr(r.err)
		default:
		}
		return nil, unavailable(ctx.Err())
	}
}

// redisErr maps a go-redis error to dlock's: nil stays nil, the rest is
// ErrUnavailable wrapping the cause.
func redisErr(err error) error {
	if err == nil || errors.Is(err, redis.Nil) {
		return nil
	}
	return unavailable(err)
}

// detached returns a context for cleanup work that must happen even when the
// caller's context has ended: it keeps ctx's values, drops its cancellation,
// and is bounded by Options.OpTimeout.
func (c *Client) detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), c.opts.OpTimeout)
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

func (c *Client) track(l *lease) {
	c.mu.Lock()
	c.leases[l] = struct{}{}
	c.mu.Unlock()
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
