package dlockrt

import (
	"context"
	"strings"
	"time"
)

// Keeping the subscriptions where their channels live: a connection that
// broke, stopped answering or was refused, and (in a Cluster) a channel
// whose slot moved to another node.

// unsubscribed handles a SUNSUBSCRIBE reply. One we did not ask for means
// the server dropped the channel (its slot moved): subscribe it again where
// it lives now. Replies come in order, so the answer to our own
// SUNSUBSCRIBE is told apart by counting those still unanswered, also when
// the channel was subscribed again since.
func (m *mux) unsubscribed(sh *shard, name string) {
	if testHookMuxUnsubscribed != nil {
		testHookMuxUnsubscribed(name)
	}
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

// testHookMuxWrote, when set by a test, runs after the writer sent its
// SSUBSCRIBEs (sub) and before it sends its SUNSUBSCRIBEs (unsub).
var testHookMuxWrote func(sub, unsub []string)

// testHookMuxBroken, when set by a test, runs on the reader after it
// found its connection broken (and told the subscribers), before it
// reconnects.
var testHookMuxBroken func()

// testHookMuxResetting, when set by a test, runs in reset between telling
// the subscribers and replacing the connection.
var testHookMuxResetting func()

// testHookMuxUnsubscribed, when set by a test, runs on the reader before it
// handles a SUNSUBSCRIBE reply for name.
var testHookMuxUnsubscribed func(name string)

// lost records that sh's connection broke: its channels are unconfirmed
// until go-redis resubscribes them, and their subscribers get a resync
// notice at once (they look again now: when Redis itself is gone, their
// next call says so, rather than their timers much later). In a Cluster
// the channels may now live on another node, so they are routed again.
func (m *mux) lost(sh *shard) {
	m.mu.Lock()
	clear(sh.unsent) // the broken connection's answers never come
	var names []string
	for name, ch := range m.chans {
		if ch.shard == sh {
			if ch.confirmed {
				ch.notifyLocked(notice{resync: true})
			}
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
	if testHookMuxResetting != nil {
		testHookMuxResetting()
	}
	m.mu.Lock()
	old := sh.ps
	sh.ps = sh.client.SSubscribe(sh.ctx)
	clear(sh.sent)
	// unsent counts our SUNSUBSCRIBEs on the current connection; those the
	// writer sent on the old one since lost() will never be answered.
	clear(sh.unsent)
	for name, ch := range m.chans {
		if ch.shard == sh {
			sh.markLocked(name)
		}
	}
	m.mu.Unlock()
	old.Close()
}

// refused handles an error reply on the subscription connection: MOVED
// means the channel belongs elsewhere; CROSSSLOT, that go-redis subscribed
// channels of several slots again in one command after a reconnect (the
// connection is replaced and they are subscribed slot by slot); anything
// else (NOPERM) fails the subscribers still waiting for a confirmation.
func (m *mux) refused(sh *shard, err error) {
	if strings.HasPrefix(err.Error(), "CROSSSLOT") {
		m.log.Debug("dlock: resubscribing slot by slot", "addr", sh.addr, "err", err)
		m.reset(sh)
		return
	}
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
			} else {
				// Subscribed before (the connection was replaced): its
				// subscribers will hear nothing more, so they look again
				// now, and go on by their timers.
				ch.notifyLocked(notice{resync: true})
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
