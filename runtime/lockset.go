package dlockrt

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/slot"
)

// A lockset is the Redis side of one acquisition: one or more user keys in
// groups, each group taken by one script run, groups in canonical order
// (by slot, then key). Outside a Cluster all keys are one group (one round
// trip). On a Cluster every key is a group of its own: a script of one key
// works in every state of a slot migration, where one of several keys in a
// migrating slot would get TRYAGAIN until the migration ends. A single lock
// is a lockset of one key.
type lockset struct {
	c      *Client
	called time.Time // when the caller asked, for the Observer
	owner  string
	keys   []string // user keys, canonical order (by group, then key)
	groups []lockGroup
}

type lockGroup struct {
	keys     []string // user keys
	locks    []string // their Redis keys: lock1, lock2, ...
	channels []string // their channels, in the same order
	channel  string   // the first key's channel: where a waiter listens
}

func lockKey(tag string) string     { return tag + ":lock" }
func lockChannel(tag string) string { return tag + ":lock:ch" }

// newLockset validates keys, drops duplicates and lays them out.
func (c *Client) newLockset(keys []string) (*lockset, error) {
	if len(keys) == 0 {
		return nil, invalid("no keys")
	}
	if len(keys) == 1 { // the common case, without sorting
		tag, err := c.tag(keys[0])
		if err != nil {
			return nil, err
		}
		ch := lockChannel(tag)
		return &lockset{c: c, called: time.Now(), owner: c.newOwnerID(), keys: keys, groups: []lockGroup{{
			keys:     keys,
			locks:    []string{lockKey(tag)},
			channels: []string{ch},
			channel:  ch,
		}}}, nil
	}
	type entry struct {
		key, tag string
		slot     int
	}
	es := make([]entry, 0, len(keys))
	_, cluster := c.rdb.(*redis.ClusterClient)
	for _, k := range keys {
		tag, err := c.tag(k)
		if err != nil {
			return nil, err
		}
		e := entry{key: k, tag: tag}
		if cluster {
			e.slot = slot.Of(tag)
		}
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b entry) int {
		if a.slot != b.slot {
			return a.slot - b.slot
		}
		return strings.Compare(a.key, b.key)
	})
	es = slices.CompactFunc(es, func(a, b entry) bool { return a.key == b.key })
	s := &lockset{c: c, called: time.Now(), owner: c.newOwnerID()}
	for i, e := range es {
		if i == 0 || cluster {
			s.groups = append(s.groups, lockGroup{channel: lockChannel(e.tag)})
		}
		g := &s.groups[len(s.groups)-1]
		g.keys = append(g.keys, e.key)
		g.locks = append(g.locks, lockKey(e.tag))
		g.channels = append(g.channels, lockChannel(e.tag))
		s.keys = append(s.keys, e.key)
	}
	return s, nil
}

// attempt is the outcome of one try at a lockset.
type attempt struct {
	tokens []int64       // one per key, canonical order, when acquired
	held   []string      // keys others hold, when not acquired
	wait   time.Duration // the shortest remaining lease among them; <0 unknown
}

// try takes every group in order; on the first group that others hold it
// releases the groups it took. One script run per group. When it cannot
// know whether a group was taken (its caller left, or the reply was lost),
// that group and the ones before it are released in the background.
func (s *lockset) try(ctx context.Context, ttl time.Duration) (attempt, error) {
	var a attempt
	args := []any{s.owner, ms(ttl)}
	for gi, g := range s.groups {
		v, err := s.c.run(ctx, scriptLockAcquire, g.locks, args, func(ctx context.Context, _ any) {
			s.releaseGroups(ctx, gi+1)
		})
		var granted bool
		if err == nil {
			granted, err = a.parse(v, g.keys)
		}
		if granted {
			if testHookGroupTaken != nil && gi+1 < len(s.groups) {
				testHookGroupTaken(gi + 1)
			}
			continue
		}
		if gi > 0 && err == nil {
			ctx, cancel := s.c.detached(ctx)
			s.releaseGroups(ctx, gi)
			cancel()
		}
		if err != nil {
			// The undo releases this group when the reply was ambiguous;
			// the groups taken before are released here, whatever the
			// error (the caller left, an error reply, a bad reply).
			if gi > 0 {
				s.c.undo(ctx, nil, func(ctx context.Context, _ any) { s.releaseGroups(ctx, gi) })
			}
			return attempt{}, err
		}
		a.tokens = nil
		return a, nil
	}
	return a, nil
}

// parse adds lock_acquire's reply for a group of keys to a: their tokens
// when the group was granted (for one key the token alone, for several
// {1, tokens...}), else the keys others hold and the shortest of their
// leases.
func (a *attempt) parse(v any, keys []string) (granted bool, err error) {
	if token, ok := v.(int64); ok {
		if len(keys) != 1 {
			return false, unavailable(errBadReply)
		}
		a.tokens = append(a.tokens, token)
		return true, nil
	}
	vals, ok := int64s(v)
	if !ok || len(vals) < 2 {
		return false, unavailable(errBadReply)
	}
	if vals[0] == 1 {
		a.tokens = append(a.tokens, vals[1:]...)
		return true, nil
	}
	a.wait = time.Duration(vals[1]) * time.Millisecond
	if vals[1] < 0 {
		a.wait = -1
	}
	for _, i := range vals[2:] {
		if i >= 1 && int(i) <= len(keys) {
			a.held = append(a.held, keys[i-1])
		}
	}
	return false, nil
}

// testHookGroupTaken, when set by a test, runs after a multi-lock took
// taken of its groups and before it takes the next.
var testHookGroupTaken func(taken int)

// releaseGroups releases the first n groups, ignoring errors (rollback).
func (s *lockset) releaseGroups(ctx context.Context, n int) {
	for _, g := range s.groups[:n] {
		s.c.run(ctx, scriptLockRelease, g.locks, g.releaseArgs(s.c, s.owner), nil)
	}
}

// releaseArgs are lock_release's arguments for owner.
func (g *lockGroup) releaseArgs(c *Client, owner string) []any {
	args := make([]any, 0, 2+len(g.channels))
	args = append(args, owner, ms(c.opts.FenceTTL))
	for _, ch := range g.channels {
		args = append(args, ch)
	}
	return args
}

func (s *lockset) extend(ctx context.Context, ttl time.Duration) (bool, error) {
	for _, g := range s.groups {
		v, err := s.c.run(ctx, scriptLockExtend, g.locks, []any{s.owner, ms(ttl)}, nil)
		if err != nil {
			return false, err
		}
		if n, _ := v.(int64); n != 1 {
			return false, nil
		}
	}
	return true, nil
}

func (s *lockset) release(ctx context.Context) (released, total int, err error) {
	for _, g := range s.groups {
		v, rerr := s.c.run(ctx, scriptLockRelease, g.locks, g.releaseArgs(s.c, s.owner), nil)
		if rerr != nil {
			err = rerr
			continue
		}
		n, _ := v.(int64)
		released += int(n)
	}
	return released, len(s.keys), err
}

// hold starts the lease of an acquired lockset. When the client is
// closing, or the grant came too late (see lapsed), it releases the locks
// instead and returns ErrClosed or an ErrUnavailable error.
func (s *lockset) hold(ctx context.Context, cfg callConfig, sent time.Time) (*lease, error) {
	l := &lease{c: s.c, kind: s.kind(), key: s.keys[0], called: s.called,
		ttl: cfg.ttl, watchdog: cfg.watchdog, extend: s.extend, release: s.release}
	err := lapsed(sent, cfg.ttl)
	if err == nil && !l.start(ctx, sent) {
		err = ErrClosed
	}
	if err != nil {
		rctx, cancel := s.c.detached(ctx)
		defer cancel()
		s.releaseGroups(rctx, len(s.groups))
		return nil, err
	}
	return l, nil
}

// kind names the lockset for the Observer.
func (s *lockset) kind() Kind {
	if len(s.keys) > 1 {
		return KindMulti
	}
	return KindLock
}

func int64s(v any) ([]int64, bool) {
	list, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]int64, len(list))
	for i, x := range list {
		if out[i], ok = x.(int64); !ok {
			return nil, false
		}
	}
	return out, true
}
