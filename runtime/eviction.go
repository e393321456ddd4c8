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

// CheckEviction asks the server (each primary, on a Cluster) for its
// maxmemory-policy and returns an error matching ErrEvictable when it may
// evict dlock's keys: any policy but noeviction, when maxmemory is set. Call
// it at start-up; New does not, so that it makes no round trip. A server
// that refuses CONFIG GET (a managed Redis, an ACL without it) yields an
// error matching ErrUnavailable or ErrNoPermission: the policy is unknown.
func (c *Client) CheckEviction(ctx context.Context) error {
	if err := c.check(); err != nil {
		return err
	}
	check := func(ctx context.Context, rdb redis.UniversalClient) error {
		policy, err := rdb.ConfigGet(ctx, "maxmemory-policy").Result()
		if err != nil {
			return redisErr(err)
		}
		max, err := rdb.ConfigGet(ctx, "maxmemory").Result()
		if err != nil {
			return redisErr(err)
		}
		if p := policy["maxmemory-policy"]; p != "noeviction" && max["maxmemory"] != "0" {
			return fmt.Errorf("%w: maxmemory-policy %s with maxmemory %s; set noeviction, or keep dlock on a server that never evicts",
				ErrEvictable, p, max["maxmemory"])
		}
		return nil
	}
	if cc, ok := c.rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return check(ctx, n) })
	}
	return check(ctx, c.rdb)
}
