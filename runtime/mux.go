package dlockrt

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
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

	mu     sync.Mutex // protects the fields below and those of shards and channels
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
			return nil, unavailable(err)
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
func (s *subscription) close() {
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
		// Errors are the connection's: go-redis records the channels and
		// (re)subscribes them when it reconnects; the reader sees the error.
		if len(sub) > 0 {
			if err := ps.SSubscribe(sh.ctx, sub...); err != nil {
				m.log.Debug("dlock: ssubscribe deferred to reconnect", "err", err)
			}
		}
		if len(unsub) > 0 {
			ps.SUnsubscribe(sh.ctx, unsub...)
		}
	}
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
			default:
				m.log.Warn("dlock: subscription connection failed", "addr", sh.addr, "err", err)
				m.lost(sh)
			}
			pinged = false
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

// unsubscribed handles a SUNSUBSCRIBE reply. One we did not ask for means
// the server dropped the channel (its slot moved): subscribe it again where
// it lives now. Replies come in order, so the answer to our own
// SUNSUBSCRIBE is told apart by counting those still unanswered, also when
// the channel was subscribed again since.
func (m *mux) unsubscribed(sh *shard, name string) {
	m.mu.Lock()
	dropped := false
	switch {
	case sh.unsent[name] > 0:
		if sh.unsent[name]--; sh.unsent[name] == 0 {
			delete(sh.unsent, name)
		}
	case sh.sent[name]:
		dropped = true
		delete(sh.sent, name)
		if ch := m.chans[name]; ch != nil && ch.shard == sh {
			ch.confirmed = false
		}
	}
	m.mu.Unlock()
	if dropped {
		m.drops.Add(1)
		m.rerouteAsync(sh, []string{name})
	}
}

// lost records that sh's connection broke: its channels are unconfirmed
// until go-redis resubscribes them. In a Cluster the channels may now live
// on another node, so they are routed again.
func (m *mux) lost(sh *shard) {
	m.mu.Lock()
	clear(sh.unsent) // the broken connection's answers never come
	var names []string
	for name, ch := range m.chans {
		if ch.shard == sh {
			ch.confirmed = false
			names = append(names, name)
		}
	}
	m.mu.Unlock()
	if m.cluster != nil {
		m.reroute(sh, names, false)
	}
}

// reset replaces sh's connection, which stopped answering, with a new one
// and subscribes every channel again.
func (m *mux) reset(sh *shard) {
	m.lost(sh)
	m.mu.Lock()
	old := sh.ps
	sh.ps = sh.client.SSubscribe(sh.ctx)
	clear(sh.sent)
	for name, ch := range m.chans {
		if ch.shard == sh {
			sh.markLocked(name)
		}
	}
	m.mu.Unlock()
	old.Close()
}

// refused handles an error reply on the subscription connection: MOVED
// means the channel belongs elsewhere; anything else (NOPERM) fails the
// subscribers still waiting for a confirmation.
func (m *mux) refused(sh *shard, err error) {
	m.mu.Lock()
	var pending []string
	for name, ch := range m.chans {
		if ch.shard == sh && !ch.confirmed {
			pending = append(pending, name)
		}
	}
	moved := strings.HasPrefix(err.Error(), "MOVED") || strings.HasPrefix(err.Error(), "ASK")
	if moved {
		for _, name := range pending {
			delete(sh.sent, name) // the server did not take it
		}
	} else {
		m.log.Warn("dlock: subscribe refused", "addr", sh.addr, "err", err)
		for _, name := range pending {
			ch := m.chans[name]
			delete(sh.sent, name)
			delete(m.chans, name)
			ch.err = err
			if !ch.isReady {
				ch.isReady = true
				close(ch.ready)
			}
		}
	}
	m.mu.Unlock()
	if moved {
		m.rerouteAsync(sh, pending)
	}
}

// rerouteAsync reroutes channels the server moved away from sh, off the
// reader's goroutine: finding their new node can take a while (the cluster
// client's slot map reloads), and sh's other channels keep being heard
// meanwhile.
func (m *mux) rerouteAsync(sh *shard, names []string) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.reroute(sh, names, true)
	}()
}

// reroute moves channels to the node that serves them now (Cluster only;
// elsewhere it subscribes them again in place). When moved, the server said
// the channels left from's node, and the cluster client's slot map (which
// reloads in the background) is consulted until it agrees, for a while.
func (m *mux) reroute(from *shard, names []string, moved bool) {
	if m.cluster == nil {
		m.mu.Lock()
		for _, name := range names {
			from.markLocked(name)
		}
		m.mu.Unlock()
		return
	}
	ctx, cancel := context.WithTimeout(from.ctx, 5*time.Second)
	defer cancel()
	for _, name := range names {
		client, addr, err := m.route(ctx, name)
		for tries := 0; moved && (err != nil || addr == from.addr) && tries < 40; tries++ {
			m.cluster.ReloadState(ctx)
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
			}
			client, addr, err = m.route(ctx, name)
		}
		m.mu.Lock()
		ch := m.chans[name]
		if ch != nil && ch.shard == from && !m.closed {
			if err == nil && addr != from.addr {
				from.markLocked(name) // unsubscribe here if still subscribed
				ch.shard = m.shardLocked(client, addr)
				ch.confirmed = false
			}
			ch.shard.markLocked(name)
		}
		m.mu.Unlock()
	}
	m.retireIdle(from)
}

// retireIdle stops a cluster shard that no channel uses any more.
func (m *mux) retireIdle(sh *shard) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ch := range m.chans {
		if ch.shard == sh {
			return
		}
	}
	if m.shards[sh.addr] == sh {
		delete(m.shards, sh.addr)
		sh.cancel()
		sh.ps.Close()
	}
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
