package dlockrt

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// ErrEvictable: the server's maxmemory-policy may evict dlock's keys (every
// one of them has a TTL, so volatile-* policies evict them as readily as
// allkeys-* ones). An evicted lock is free while its holder believes it
// holds it: mutual exclusion is lost without any error.
var ErrEvictable = errors.New("dlock: the server may evict dlock's keys (maxmemory-policy)")

// EvictionCheck is what New does about eviction (Options.Eviction).
type EvictionCheck int

const (
	// EvictionWarn: Check includes the policy; under the default
	// Options.Startup (StartupWarn) New logs a warning on Options.Logger
	// when dlock's keys may be evicted, and a policy it cannot read (CONFIG
	// refused, Redis unreachable) at Info level. New itself makes no round
	// trip.
	EvictionWarn EvictionCheck = iota
	// EvictionRefuse: New asks the server before it returns (within
	// Options.OpTimeout) and fails with an error matching ErrEvictable when
	// dlock's keys may be evicted, or with CheckEviction's error when the
	// policy cannot be read (ErrNoPermission when an ACL refuses CONFIG;
	// ErrUnavailable when Redis is unreachable or has no CONFIG, as on
	// managed servers and dlocktest's in-process server).
	EvictionRefuse
	// EvictionIgnore: neither New nor Check asks.
	EvictionIgnore
)

// CheckEviction asks the server (each primary, on a Cluster) for its
// maxmemory-policy and returns an error matching ErrEvictable when it may
// evict dlock's keys: any policy but noeviction, when maxmemory is set. Call
// it at start-up (New does, as Options.Eviction says). A server
// that refuses CONFIG GET (a managed Redis, an ACL without it) yields an
// error matching ErrUnavailable or ErrNoPermission: the policy is unknown.
func (c *Client) CheckEviction(ctx context.Context) error {
	if err := c.check(); err != nil {
		return err
	}
	check := func(ctx context.Context, rdb redis.UniversalClient) error {
		conf, err := rdb.ConfigGet(ctx, "maxmemory*").Result() // one round trip: maxmemory and maxmemory-policy
		if err != nil {
			return redisErr(err)
		}
		p, okp := conf["maxmemory-policy"]
		m, okm := conf["maxmemory"]
		if !okp || !okm {
			return fmt.Errorf("%w: CONFIG GET gave no maxmemory-policy or maxmemory", ErrUnavailable)
		}
		if p != "noeviction" && m != "0" {
			return fmt.Errorf("%w: maxmemory-policy %s with maxmemory %s; set noeviction, or keep dlock on a server that never evicts",
				ErrEvictable, p, m)
		}
		return nil
	}
	if cc, ok := c.rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return check(ctx, n) })
	}
	return check(ctx, c.rdb)
}
