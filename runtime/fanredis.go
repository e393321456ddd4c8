package dlockrt

import (
	"context"
	"time"
)

// fanoutRedis is what a flight asks of Redis: the fanout scripts on a
// key's state (T:fan, see PROTOCOL.md) and the key's channel. The client's
// is fanoutScripts; the tests of the flight's states fake it.
type fanoutRedis interface {
	// join runs fanout_join for generation gen; when its reply is lost
	// (or comes after ctx ended) a lead it may have taken is given back.
	join(ctx context.Context, tag, gen string, ttl time.Duration, mayLead bool, waited string) (joinReply, error)
	// giveBack ends generation gen's lease without an outcome and wakes
	// the key's waiters.
	giveBack(ctx context.Context, tag, gen string)
	// extend renews generation gen's lease while it still leads.
	extend(ctx context.Context, tag, gen string, ttl time.Duration) (bool, error)
	// release is giveBack, reporting whether gen still led (1 of 1).
	release(ctx context.Context, tag, gen string) (released, total int, err error)
	// complete publishes and keeps gen's outcome if gen still leads.
	complete(ctx context.Context, tag, gen string, envelope []byte, store bool) (published bool, err error)
	// subscribe subscribes to the key's channel and waits for the
	// server's confirmation.
	subscribe(ctx context.Context, tag string) (*subscription, error)
}

// joinReply is fanout_join's reply: state 1 (leads), 2 (stored: an
// envelope), or 0 (pttl: the rest of leader's lease).
type joinReply struct {
	state  int64
	stored string
	pttl   int64
	leader string
}

func fanKey(tag string) string     { return tag + ":fan" }
func fanChannel(tag string) string { return tag + ":fan:ch" }

// fanoutScripts is the client's fanoutRedis.
type fanoutScripts struct{ c *Client }

func (s fanoutScripts) join(ctx context.Context, tag, gen string, ttl time.Duration, mayLead bool, waited string) (joinReply, error) {
	lead := "0"
	if mayLead {
		lead = "1"
	}
	v, err := s.c.run(ctx, scriptFanoutJoin, []string{fanKey(tag)}, []any{gen, ms(ttl), lead, waited},
		func(ctx context.Context, _ any) { s.giveBack(ctx, tag, gen) })
	if err != nil {
		return joinReply{}, err
	}
	r, _ := v.([]any)
	var st int64
	if len(r) > 0 {
		st, _ = r[0].(int64)
	}
	switch {
	case st == 1:
		return joinReply{state: 1}, nil
	case st == 2 && len(r) == 2:
		stored, _ := r[1].(string)
		return joinReply{state: 2, stored: stored}, nil
	case st == 0 && len(r) == 3:
		pttl, _ := r[1].(int64)
		leader, _ := r[2].(string)
		return joinReply{state: 0, pttl: pttl, leader: leader}, nil
	}
	return joinReply{}, unavailable(errBadReply)
}

func (s fanoutScripts) giveBack(ctx context.Context, tag, gen string) {
	s.release(ctx, tag, gen)
}

func (s fanoutScripts) extend(ctx context.Context, tag, gen string, ttl time.Duration) (bool, error) {
	v, err := s.c.run(ctx, scriptLockExtend, []string{fanKey(tag)}, []any{gen, ms(ttl)}, nil)
	if err != nil {
		return false, err
	}
	n, _ := v.(int64)
	return n == 1, nil
}

func (s fanoutScripts) release(ctx context.Context, tag, gen string) (int, int, error) {
	v, err := s.c.run(ctx, scriptLockRelease, []string{fanKey(tag)}, []any{gen, ms(s.c.opts.FenceTTL), fanChannel(tag)}, nil)
	n, _ := v.(int64)
	return int(n), 1, err
}

func (s fanoutScripts) complete(ctx context.Context, tag, gen string, envelope []byte, store bool) (bool, error) {
	keep := "0"
	if store {
		keep = "1"
	}
	v, err := s.c.run(ctx, scriptFanoutComplete, []string{fanKey(tag)},
		[]any{gen, envelope, ms(s.c.opts.ResultTTL), keep, fanChannel(tag)}, nil)
	n, _ := v.(int64)
	return n == 1, err
}

func (s fanoutScripts) subscribe(ctx context.Context, tag string) (*subscription, error) {
	return s.c.mux.subscribe(ctx, fanChannel(tag))
}
