package dlockrt

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/slot"
)

// The multiplexer carries every subscription of a client over one sharded
// pub/sub connection (one per primary in a Cluster). Channels are
// reference-counted: the first local subscriber of a channel sends
// SSUBSCRIBE, the last one to leave causes SUNSUBSCRIBE. One goroutine per
// connection writes (subscribe/unsubscribe, in order) and one reads.
//
// A subscriber waits for the server's confirmation before it checks state in
// Redis, so a notification published after its check is never missed. When
// the connection breaks, go-redis reconnects and resubscribes; every
// channel's subscribers then get a resync notice, because messages may have
// been lost meanwhile, and re-check.

// healthInterval is how long the reader waits for traffic before it pings;
// a second silent interval after the ping means the connection is dead.
const healthInterval = 3 * time.Second

// notice is what a subscriber hears: a message, or a resync after the
// subscription was re-established. Either way the subscriber re-checks.
type notice struct {
	payload string
	resync  bool
}

type mux struct {
	client  redis.UniversalClient
	cluster *redis.ClusterClient // client, when it is a cluster
	log     *slog.Logger
	quit    chan struct{} // closed by close
	wg      sync.WaitGroup
	drops   atomic.Int64 // channels the server dropped (their slot moved)

	mu     lockedBy[muxRank] // protects the fields below and those of shards and channels
	closed bool
	chans  map[string]*channel
	shards map[string]*shard // by node address; "" outside a cluster
}

type channel struct {
	name      string
	shard     *shard
	subs      map[*subscription]struct{}
	ready     chan struct{} // closed at the first confirmation, or on err
	isReady   bool          // ready is closed
	confirmed bool          // the current connection confirmed the subscription
	err       error         // subscribing failed for good (e.g. NOPERM)
}

type shard struct {
	addr   string
	client redis.UniversalClient
	ps     *redis.PubSub
	sent   map[string]bool     // SSUBSCRIBEd on ps and not since SUNSUBSCRIBEd
	unsent map[string]int      // our SUNSUBSCRIBEs on ps not yet answered
	dirty  map[string]struct{} // channels whose wanted state may differ from sent
	wake   chan struct{}       // cap 1: dirty is not empty
	ctx    context.Context     // ends when the shard is retired
	cancel context.CancelFunc
}

// subscription is one local subscriber's view of a channel.
type subscription struct {
	C    chan notice // a full buffer collapses into one resync notice (see notifyLocked)
	m    *mux
	ch   *channel
	once sync.Once
}

func newMux(client redis.UniversalClient, log *slog.Logger) *mux {
	m := &mux{client: client, log: log, quit: make(chan struct{}),
		chans: map[string]*channel{}, shards: map[string]*shard{}}
	m.cluster, _ = client.(*redis.ClusterClient)
	return m
}

// route returns the client and address of the node that serves name.
func (m *mux) route(ctx context.Context, name string) (redis.UniversalClient, string, error) {
	if m.cluster == nil {
		return m.client, "", nil
	}
	node, err := m.cluster.MasterForKey(ctx, name)
	if err != nil {
		return nil, "", err
	}
	return node, node.Options().Addr, nil
}

// subscribe subscribes to name and waits for the server's confirmation, the
// context, or the client's close.
func (m *mux) subscribe(ctx context.Context, name string) (*subscription, error) {
	client, addr, err := m.route(ctx, name)
	if err != nil {
		return nil, unavailable(err)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	ch := m.chans[name]
	if ch == nil {
		ch = &channel{name: name, subs: map[*subscription]struct{}{}, ready: make(chan struct{})}
		m.chans[name] = ch
		ch.shard = m.shardLocked(client, addr)
	}
	s := &subscription{C: make(chan notice, 4), m: m, ch: ch}
	ch.subs[s] = struct{}{}
	ch.shard.markLocked(name)
	m.mu.Unlock()

	select {
	case <-ch.ready:
		m.mu.Lock()
		err := ch.err
		m.mu.Unlock()
		if err != nil {
			s.close()
			return nil, redisErr(err)
		}
		return s, nil
	case <-ctx.Done():
		s.close()
		return nil, ctx.Err()
	case <-m.quit:
		s.close()
		return nil, ErrClosed
	}
}

// close leaves the channel; the last subscriber to leave unsubscribes it.
// (A subscription that no mux made, as tests make them, has nothing to
// leave.)
func (s *subscription) close() {
	if s.m == nil {
		return
	}
	s.once.Do(func() {
		m := s.m
		m.mu.Lock()
		delete(s.ch.subs, s)
		if len(s.ch.subs) == 0 {
			s.ch.shard.markLocked(s.ch.name)
		}
		m.mu.Unlock()
	})
}

func (sh *shard) markLocked(name string) {
	sh.dirty[name] = struct{}{}
	select {
	case sh.wake <- struct{}{}:
	default:
	}
}

// shardLocked returns the shard for addr, starting it if needed.
func (m *mux) shardLocked(client redis.UniversalClient, addr string) *shard {
	if sh := m.shards[addr]; sh != nil {
		return sh
	}
	sh := &shard{addr: addr, client: client, sent: map[string]bool{}, unsent: map[string]int{},
		dirty: map[string]struct{}{}, wake: make(chan struct{}, 1)}
	sh.ctx, sh.cancel = context.WithCancel(context.WithValue(context.Background(), psDialKey{}, true))
	sh.ps = client.SSubscribe(sh.ctx)
	m.shards[addr] = sh
	m.wg.Add(2)
	go m.write(sh)
	go m.read(sh)
	return sh
}

// write sends SSUBSCRIBE and SUNSUBSCRIBE so that what the server has
// matches what local subscribers want, in order, one batch at a time.
func (m *mux) write(sh *shard) {
	defer m.wg.Done()
	for {
		select {
		case <-sh.wake:
		case <-sh.ctx.Done():
			return
		}
		var sub, unsub []string
		m.mu.Lock()
		for name := range sh.dirty {
			ch := m.chans[name]
			mine := ch != nil && ch.shard == sh
			want := mine && len(ch.subs) > 0
			switch {
			case want && !sh.sent[name]:
				sub = append(sub, name)
				sh.sent[name] = true
			case !want && sh.sent[name]:
				unsub = append(unsub, name)
				delete(sh.sent, name)
				sh.unsent[name]++
			}
			if mine && !want {
				delete(m.chans, name)
			}
		}
		clear(sh.dirty)
		ps := sh.ps
		m.mu.Unlock()
		// Errors are the connection's. go-redis reconnects within the
		// failed call, before it records the channels, so they would not
		// be subscribed on the new connection: they are sent again, after
		// a pause (the reader may also replace the connection meanwhile).
		failed := false
		for _, names := range m.bySlot(sub) {
			if err := ps.SSubscribe(sh.ctx, names...); err != nil {
				m.log.Debug("dlock: ssubscribe failed; sending again", "err", err)
				m.resend(sh, ps, names)
				failed = true
			}
		}
		if testHookMuxWrote != nil {
			testHookMuxWrote(sub, unsub)
		}
		for _, names := range m.bySlot(unsub) {
			ps.SUnsubscribe(sh.ctx, names...)
		}
		if failed {
			select {
			case <-time.After(100 * time.Millisecond):
			case <-sh.ctx.Done():
				return
			}
		}
	}
}

// resend marks names, whose SSUBSCRIBE on ps failed, to be sent again
// (unless the connection was replaced meanwhile, which sends them anyway).
func (m *mux) resend(sh *shard, ps *redis.PubSub, names []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if sh.ps != ps {
		return
	}
	for _, n := range names {
		delete(sh.sent, n)
		sh.markLocked(n)
	}
}

// bySlot splits names into the batches one SSUBSCRIBE or SUNSUBSCRIBE may
// carry: on a Cluster, the channels of one slot (the server refuses
// others with CROSSSLOT); elsewhere all of them.
func (m *mux) bySlot(names []string) [][]string {
	if len(names) == 0 {
		return nil
	}
	if m.cluster == nil || len(names) == 1 {
		return [][]string{names}
	}
	slots := map[int][]string{}
	var order []int
	for _, n := range names {
		s := slot.Of(n)
		if slots[s] == nil {
			order = append(order, s)
		}
		slots[s] = append(slots[s], n)
	}
	batches := make([][]string, 0, len(order))
	for _, s := range order {
		batches = append(batches, slots[s])
	}
	return batches
}

// read receives messages and confirmations, pings an idle connection and
// replaces a dead one.
func (m *mux) read(sh *shard) {
	defer m.wg.Done()
	pinged := false
	backoff := 25 * time.Millisecond
	for {
		m.mu.Lock()
		ps := sh.ps
		m.mu.Unlock()
		msg, err := ps.ReceiveTimeout(sh.ctx, healthInterval)
		if sh.ctx.Err() != nil {
			return
		}
		if err != nil {
			var rerr redis.Error
			var nerr net.Error
			switch {
			case errors.As(err, &nerr) && nerr.Timeout() && !pinged:
				pinged = true
				ps.Ping(sh.ctx)
				if m.cluster == nil {
					// Through the data path too: after a failover it dials the
					// new primary, which dialWatch notices.
					// Off the reader: go-redis may block past the context
					// (up to its ReadTimeout) when the server hangs, and
					// Close waits for the reader.
					go func() {
						pctx, cancel := context.WithTimeout(context.Background(), time.Second)
						defer cancel()
						m.client.Ping(pctx)
					}()
				}
				continue
			case errors.As(err, &nerr) && nerr.Timeout():
				m.log.Warn("dlock: subscription connection unresponsive; reconnecting", "addr", sh.addr)
				m.reset(sh)
			case errors.As(err, &rerr):
				m.refused(sh, err)
				continue
			case m.cluster != nil:
				// go-redis would subscribe the channels again in one
				// command, which a Cluster refuses when they are of
				// several slots: a new connection, subscribed slot by slot.
				m.log.Warn("dlock: subscription connection failed", "addr", sh.addr, "err", err)
				m.reset(sh)
			default:
				m.log.Warn("dlock: subscription connection failed", "addr", sh.addr, "err", err)
				m.lost(sh)
			}
			pinged = false
			if testHookMuxBroken != nil {
				testHookMuxBroken()
			}
			select {
			case <-time.After(backoff/2 + rand.N(backoff)):
			case <-sh.ctx.Done():
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		pinged, backoff = false, 25*time.Millisecond
		switch v := msg.(type) {
		case *redis.Message:
			m.deliver(v.Channel, notice{payload: v.Payload})
		case *redis.Subscription:
			// Servers without sharded pub/sub outside a Cluster (the
			// in-process test server) answer with the classic kinds.
			switch v.Kind {
			case "ssubscribe", "subscribe":
				m.confirm(sh, v.Channel)
			case "sunsubscribe", "unsubscribe":
				m.unsubscribed(sh, v.Channel)
			}
		}
	}
}

func (m *mux) deliver(name string, n notice) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ch := m.chans[name]; ch != nil {
		ch.notifyLocked(n)
	}
}

// notifyLocked hands n to every subscriber. A subscriber whose buffer is
// full gets, instead of what it holds and n, one resync notice: it looks
// again (re-joins, re-tries), so no message is lost unseen, even when
// garbage it would skip filled its buffer.
func (ch *channel) notifyLocked(n notice) {
	for s := range ch.subs {
		select {
		case s.C <- n:
		default:
			select {
			case <-s.C:
			default:
			}
			select {
			case s.C <- notice{resync: true}:
			default:
			}
		}
	}
}

// confirm marks name subscribed on sh's current connection. A channel that
// was subscribed before the connection broke gets a resync notice.
func (m *mux) confirm(sh *shard, name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ch := m.chans[name]
	if ch == nil || ch.shard != sh || ch.confirmed {
		return
	}
	ch.confirmed = true
	if !ch.isReady {
		ch.isReady = true
		close(ch.ready)
		return
	}
	ch.notifyLocked(notice{resync: true})
}

// close stops every shard and waits for their goroutines.
func (m *mux) close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	close(m.quit)
	for _, sh := range m.shards {
		sh.cancel()
		sh.ps.Close()
	}
	m.mu.Unlock()
	m.wg.Wait()
}

// numChannels reports how many channels the client is subscribed to or
// about to be (for tests of resource bounds).
func (m *mux) numChannels() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.chans)
}
