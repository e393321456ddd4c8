package dlockrt

import (
	"context"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// Following a Sentinel failover. go-redis's failover client redials data
// connections to the new primary, but leaves a subscription connection on
// the demoted one, where releases are no longer published. dialWatch is a
// go-redis hook that sees every connection the client dials: when a data
// connection reaches a server other than the one the subscription
// connection is on, the subscription is re-established (on the primary the
// dialer now resolves) and every waiter re-checks.

type psDialKey struct{}

type dialWatch struct {
	m *mux

	mu        lockedBy[dialRank] // protects the fields below
	psAddr    string             // the server the subscription connection is on
	lastReset time.Time
}

func (w *dialWatch) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err == nil {
			w.dialed(ctx, conn.RemoteAddr().String())
		}
		return conn, err
	}
}

func (w *dialWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (w *dialWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (w *dialWatch) dialed(ctx context.Context, remote string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ctx.Value(psDialKey{}) != nil {
		w.psAddr = remote
		return
	}
	if w.psAddr == "" || remote == w.psAddr || time.Since(w.lastReset) < time.Second {
		return
	}
	w.lastReset = time.Now()
	w.psAddr = ""
	go w.m.resetAll()
}

// watchFailover installs the hook on the clients of a non-cluster mux.
func (m *mux) watchFailover(clients ...redis.UniversalClient) {
	if m.cluster != nil {
		return
	}
	w := &dialWatch{m: m}
	seen := map[*redis.Client]bool{}
	for _, c := range clients {
		if rc, ok := c.(*redis.Client); ok && !seen[rc] {
			seen[rc] = true
			rc.AddHook(w)
		}
	}
}

// resetAll re-establishes every shard's subscription connection.
func (m *mux) resetAll() {
	m.mu.Lock()
	shards := make([]*shard, 0, len(m.shards))
	for _, sh := range m.shards {
		shards = append(shards, sh)
	}
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return
	}
	for _, sh := range shards {
		m.log.Warn("dlock: the primary changed; re-subscribing", "addr", sh.addr)
		m.reset(sh)
	}
}
