package dlockrt

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Check proves, in a dozen round trips, everything dlock needs from Redis:
// the server answers this user, runs Redis 7 or later (sharded pub/sub), and
// lets this user run dlock's scripts on its keys (locks, semaphores,
// fanouts) and publish and subscribe on its channels; and, unless
// Options.Eviction is EvictionIgnore, that the server will not evict
// dlock's keys. Call it at start-up (New does, as Options.Startup says).
//
// It returns nil, or every problem it found, joined (errors.Is matches
// each): ErrUnavailable (the server does not answer: nothing else could be
// checked), ErrAuth (the user or password is refused: likewise),
// ErrUnsupportedServer, ErrNoPermission (one per missing command, key or
// channel permission, saying what to grant), ErrEvictable, or an
// ErrNoPermission or ErrUnavailable error saying the eviction policy could
// not be read. Each problem's message says what to do.
//
// It writes only to a key of its own (a lock, a semaphore and a fanout of
// the user key "\x00check", released at once) and publishes on its
// channels.
func (c *Client) Check(ctx context.Context) error {
	if err := c.check(); err != nil {
		return err
	}
	return errors.Join(c.problems(ctx)...)
}

// problems is Check's list of problems.
func (c *Client) problems(ctx context.Context) []error {
	if err := redisErr(c.rdb.Ping(ctx).Err()); err != nil {
		if !errors.Is(err, ErrAuth) {
			err = fmt.Errorf("%w (is the address right, and the server up?)", err)
		}
		return []error{err}
	}
	var problems []error
	if err := c.checkVersion(ctx); err != nil {
		problems = append(problems, err)
	}
	problems = append(problems, c.checkScripts(ctx)...)
	if err := c.checkSubscribe(ctx); err != nil {
		problems = append(problems, err)
	}
	if c.opts.Eviction != EvictionIgnore {
		if err := c.checkEvictionAsProblem(ctx); err != nil {
			problems = append(problems, err)
		}
	}
	return problems
}

// checkTag is the stem of Check's own keys and channels.
func (c *Client) checkTag() string {
	tag, _ := c.tag(checkKey)
	return tag
}

// checkKey is the user key Check takes a lock and a permit of: no
// caller's (Keys leaves it out).
const checkKey = "\x00check"

// checkVersion asks every primary for its version (HELLO, which the
// least-privilege ACL allows).
func (c *Client) checkVersion(ctx context.Context) error {
	check := func(ctx context.Context, rdb redis.UniversalClient) error {
		v, err := rdb.Do(ctx, "HELLO").Result()
		if err != nil {
			return redisErr(err)
		}
		version := helloVersion(v)
		major, _ := strconv.Atoi(strings.SplitN(version, ".", 2)[0])
		if major < 7 {
			return fmt.Errorf("%w: it runs %q; upgrade to Redis 7.0 or later", ErrUnsupportedServer, version)
		}
		return nil
	}
	if cc, ok := c.rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return check(ctx, n) })
	}
	return check(ctx, c.rdb)
}

// helloVersion finds the server's version in HELLO's reply (a map in
// RESP3, a flat list in RESP2).
func helloVersion(v any) string {
	switch r := v.(type) {
	case map[any]any:
		s, _ := r["version"].(string)
		return s
	case []any:
		for i := 0; i+1 < len(r); i += 2 {
			if k, _ := r[i].(string); k == "version" {
				s, _ := r[i+1].(string)
				return s
			}
		}
	}
	return ""
}

// checkScripts runs each kind of script dlock runs on a key of Check's
// own: a lock taken and released (which publishes), a permit, a fanout
// lead given back. A refusal names what is missing.
func (c *Client) checkScripts(ctx context.Context) []error {
	tag, owner := c.checkTag(), c.newOwnerID()
	steps := []struct {
		what string
		run  func() error
	}{
		{"take and release a lock", func() error {
			_, err := c.run(ctx, scriptLockAcquire, []string{lockKey(tag)}, []any{owner, 1000}, nil)
			if err == nil {
				_, err = c.run(ctx, scriptLockRelease, []string{lockKey(tag)}, []any{owner, 1000, lockChannel(tag)}, nil)
			}
			return err
		}},
		{"take and release a semaphore's permit", func() error {
			s := c.Semaphore("\x00check", 1)
			permit := owner + "/1"
			_, err := c.run(ctx, scriptSemAcquire, []string{s.rkey}, []any{owner, permit, 1, 1000, 1000, "0", s.ch, ms(semOfferGrace)}, nil)
			if err == nil {
				_, err = s.release(ctx, permit, "")
			}
			return err
		}},
		{"lead a fanout and step down", func() error {
			if _, err := c.fan.join(ctx, tag, owner, time.Second, true, ""); err != nil {
				return err
			}
			_, _, err := c.fan.release(ctx, tag, owner)
			return err
		}},
	}
	var problems []error
	for _, s := range steps {
		if err := s.run(); err != nil {
			problems = append(problems, fmt.Errorf("could not %s on dlock's keys (%s:*): %w%s", s.what, c.opts.Prefix, err, c.aclHint(err)))
		}
	}
	return problems
}

// checkSubscribe subscribes to a channel of Check's own, as waiters do.
func (c *Client) checkSubscribe(ctx context.Context) error {
	ch := lockChannel(c.checkTag())
	ps := c.mux.client.SSubscribe(ctx, ch)
	defer ps.Close()
	_, err := ps.Receive(ctx)
	if err != nil {
		err = redisErr(err)
		return fmt.Errorf("could not subscribe to dlock's channels (%s:*): %w%s", c.opts.Prefix, err, c.aclHint(err))
	}
	return nil
}

// checkEvictionAsProblem is CheckEviction, with what to do when the policy
// cannot be read.
func (c *Client) checkEvictionAsProblem(ctx context.Context) error {
	err := c.CheckEviction(ctx)
	if err == nil || errors.Is(err, ErrEvictable) {
		return err
	}
	return fmt.Errorf("could not read the server's maxmemory-policy (%w): make sure it is noeviction, then set Options.Eviction to EvictionIgnore to skip this check", err)
}

// aclHint says what an ACL refusal lacks.
func (c *Client) aclHint(err error) string {
	if !errors.Is(err, ErrNoPermission) {
		return ""
	}
	m := err.Error()
	switch {
	case strings.Contains(m, "channel"):
		return "; grant the channels: &" + c.opts.Prefix + ":*"
	case strings.Contains(m, "keys"):
		return "; grant the keys: ~" + c.opts.Prefix + ":*"
	}
	return "; grant the commands of the README's Security ACL"
}

// startup does what Options.Startup and Options.Eviction say at New; it
// returns an error only under StartupRefuse or EvictionRefuse.
func (c *Client) startup() error {
	ctx, cancel := context.WithTimeout(c.bg, c.opts.OpTimeout)
	defer cancel()
	switch {
	case c.opts.Startup == StartupRefuse:
		return c.Check(ctx)
	case c.opts.Eviction == EvictionRefuse:
		if err := c.CheckEviction(ctx); err != nil {
			return err
		}
	}
	if c.opts.Startup != StartupWarn {
		return nil
	}
	c.goTracked(func() {
		ctx, cancel := context.WithTimeout(c.bg, c.opts.OpTimeout)
		defer cancel()
		problems := c.problems(ctx)
		if c.bg.Err() != nil {
			return // closed meanwhile
		}
		for _, p := range problems {
			switch {
			case errors.Is(p, ErrEvictable):
				c.opts.Logger.Warn("dlock: Redis may evict dlock's keys: a lock evicted while held is lost without any error", "err", p)
			case strings.Contains(p.Error(), "maxmemory-policy"):
				c.opts.Logger.Info("dlock: could not read the server's maxmemory-policy; make sure it is noeviction", "err", p)
			default:
				c.opts.Logger.Warn("dlock: Redis does not give dlock all it needs", "err", p)
			}
		}
	})
	return nil
}
