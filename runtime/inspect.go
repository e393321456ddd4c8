package dlockrt

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// KeyState is what Redis holds for one user key, as Inspect read it in one
// round trip: its lock, semaphore and fanout state (each nil when the key
// has none), and the server's time then.
type KeyState struct {
	Key        string
	ServerTime time.Time
	Lock       *LockState
	Semaphore  *SemaphoreState
	Fanout     *FanoutState
}

// LockState is a lock key: held, or released lately (it keeps its last
// fencing token for Options.FenceTTL after a release).
type LockState struct {
	Held   bool
	Holder Identity // who holds it, or last held it; zero for a holder before dlock 0.4
	Owner  string   // the holder's owner id
	Token  int64    // the holder's fencing token, or the last one handed out
	// Since is when it was granted, read from its token (the server's clock
	// in microseconds at the grant; later only after grants within one
	// microsecond or a clock that went back).
	Since time.Time
	TTL   time.Duration // time left of the lease; of the kept token once released
}

// SemaphoreState is a semaphore key: its holders and its queue.
type SemaphoreState struct {
	// Limit is the limit in force: the smallest the holders asked for (0
	// when none holds, or none said: holders before dlock 0.3).
	Limit   int
	Holders []PermitHolder // by lease deadline, soonest first
	Waiters []Waiter       // in queue order: the first is served first
	// Truncated is set when the semaphore has more members than
	// Inspect read (10,000): Holders and Waiters are a prefix.
	Truncated bool
}

// PermitHolder is one permit held.
type PermitHolder struct {
	Holder Identity
	Permit string        // the permit id
	Limit  int           // the limit its holder asked for (0: before dlock 0.3)
	TTL    time.Duration // time left of its lease
}

// Waiter is one caller queued for a permit.
type Waiter struct {
	Holder Identity
	ID     string        // the waiter's id
	Ticket int64         // its place: smaller is served first
	TTL    time.Duration // time left of its place unless it renews it (waiters renew while they wait)
}

// FanoutState is a fanout key: a generation leading (its job runs), or an
// outcome kept for late callers, or a leader that stepped down.
type FanoutState struct {
	Leading    bool
	Leader     Identity // the leading (or last) generation's process
	Generation string   // its id
	// Trace is the W3C traceparent of the flight that leads (or led)
	// Generation, when its process traces (FlightTracer); else "".
	Trace string
	// Outcome is "result" (kept for every caller), "error" (kept for the
	// callers of Generation) or "".
	Outcome     string
	OutcomeSize int           // its envelope's size in bytes
	TTL         time.Duration // time left of the lead, or of the kept outcome
}

// inspectMembers bounds how many semaphore members Inspect reads.
const inspectMembers = 10000

// Inspect reads what Redis holds for key (as the caller names it, or as a
// generated wrapper's …Key helper computes it): who holds its lock and
// since when, its semaphore's holders and queue, its fanout's leader or
// kept outcome. One round trip, one script that only reads. A key with
// nothing in Redis
// returns a KeyState whose parts are all nil. Errors: ErrInvalid for a bad
// key; ErrUnavailable, ErrNoPermission as for any call.
func (c *Client) Inspect(ctx context.Context, key string) (*KeyState, error) {
	tag, err := c.tag(key)
	if err != nil {
		return nil, err
	}
	v, err := c.run(ctx, scriptInspect, []string{lockKey(tag), tag + ":sem", fanKey(tag)}, []any{inspectMembers}, nil)
	if err != nil {
		return nil, err
	}
	r, ok := v.([]any)
	if !ok || len(r) != 9 {
		return nil, errors.New("dlock: inspect: unexpected reply")
	}
	now := time.Unix(toInt(r[0]), toInt(r[1])*1000)
	st := &KeyState{Key: key, ServerTime: now}
	if s, ok := r[2].(string); ok {
		st.Lock = parseLock(s, toInt(r[3]))
	}
	if ms, ok := r[4].([]any); ok && len(ms) > 0 {
		st.Semaphore = parseSemaphore(ms, now)
		st.Semaphore.Truncated = toInt(r[5]) > int64(len(ms)/2)
	}
	if s, ok := r[6].(string); ok {
		st.Fanout = parseFanout(s, int(toInt(r[7])), toInt(r[8]))
	}
	return st, nil
}

func toInt(v any) int64 {
	n, _ := v.(int64)
	return n
}

// pttl is a PTTL reply as a duration (0 for none or no key).
func pttl(ms int64) time.Duration { return time.Duration(max(ms, 0)) * time.Millisecond }

func parseLock(v string, ttl int64) *LockState {
	tok, owner, _ := strings.Cut(v, " ")
	l := &LockState{Owner: owner, TTL: pttl(ttl)}
	l.Token, _ = strconv.ParseInt(tok, 10, 64)
	if l.Token > 0 {
		l.Since = time.UnixMicro(l.Token)
	}
	if rest, released := strings.CutPrefix(owner, "-"); released {
		l.Owner = rest
	} else {
		l.Held = true
	}
	l.Holder, _ = parseOwnerID(l.Owner)
	return l
}

// The semaphore's sorted set (PROTOCOL.md): members in score ranges of B.
const semB = 1e13

func parseSemaphore(flat []any, now time.Time) *SemaphoreState {
	s := &SemaphoreState{}
	nowMS := float64(now.UnixMilli())
	places := map[string]float64{} // waiter id -> its place's deadline (server ms)
	for i := 0; i+1 < len(flat); i += 2 {
		m, _ := flat[i].(string)
		score, _ := strconv.ParseFloat(flatString(flat[i+1]), 64)
		if len(m) < 2 {
			continue
		}
		id := m[1:]
		switch {
		case m[0] == 'h' && score > nowMS && score < semB:
			h := PermitHolder{Permit: id, TTL: time.Duration(score-nowMS) * time.Millisecond}
			if i := strings.LastIndexByte(id, '/'); i >= 0 {
				h.Limit, _ = strconv.Atoi(id[i+1:])
			}
			h.Holder, _ = parseOwnerID(id)
			if h.Limit > 0 && (s.Limit == 0 || h.Limit < s.Limit) {
				s.Limit = h.Limit
			}
			s.Holders = append(s.Holders, h)
		case m[0] == 'q' && score >= semB && score < 2*semB:
			w := Waiter{ID: id, Ticket: int64(score - semB)}
			w.Holder, _ = parseOwnerID(id)
			s.Waiters = append(s.Waiters, w)
		case m[0] == 'l' && score >= 2*semB && score < 3*semB:
			places[id] = score - 2*semB
		}
	}
	for i, w := range s.Waiters {
		s.Waiters[i].TTL = time.Duration(max(places[w.ID]-nowMS, 0)) * time.Millisecond
	}
	sort.SliceStable(s.Waiters, func(i, j int) bool { return s.Waiters[i].Ticket < s.Waiters[j].Ticket })
	return s
}

// flatString is a reply element as a string (scores come as strings in
// RESP2, floats in RESP3).
func flatString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case int64:
		return strconv.FormatInt(x, 10)
	}
	return ""
}

func parseFanout(v string, size int, ttl int64) *FanoutState {
	f := &FanoutState{TTL: pttl(ttl), OutcomeSize: max(size-1, 0)}
	switch {
	case strings.HasPrefix(v, "0 -"):
		f.Generation = v[3:]
		f.OutcomeSize = 0
	case strings.HasPrefix(v, "0 "):
		f.Leading, f.Generation, f.OutcomeSize = true, v[2:], 0
	case strings.HasPrefix(v, "="):
		f.Outcome = "result"
	case strings.HasPrefix(v, "!"):
		gen, _, _ := strings.Cut(v[1:], " ")
		f.Outcome, f.Generation = "error", gen
		f.OutcomeSize = max(size-2-len(gen), 0)
	}
	f.Leader, _ = parseOwnerID(f.Generation)
	f.Trace = traceOf(f.Generation)
	return f
}

// Keys returns the user keys that have something in Redis (a lock,
// possibly released lately; a semaphore; a fanout lead or kept outcome)
// and start with prefix ("" for all), sorted, at most limit of them (0:
// no bound). It SCANs every primary (all of a Cluster's), writing nothing;
// a key may appear or go while it runs. Generated wrappers' keys start
// with their key space ("example.com/app/users.loadUser"), so a space lists
// a function's keys.
func (c *Client) Keys(ctx context.Context, prefix string, limit int) ([]string, error) {
	stem := c.opts.Prefix + ":{" + globEscaper.Replace(keyEscaper.Replace(prefix))
	found := map[string]bool{}
	var mu sync.Mutex
	scan := func(ctx context.Context, rdb redis.Cmdable) error {
		it := rdb.Scan(ctx, 0, stem+"*}:*", 1000).Iterator()
		for it.Next(ctx) {
			k, ok := userKey(c.opts.Prefix, it.Val())
			mu.Lock()
			if ok && k != checkKey { // Check's own key is no user's
				found[k] = true
			}
			full := limit > 0 && len(found) >= limit
			mu.Unlock()
			if full {
				return nil
			}
		}
		return it.Err()
	}
	var err error
	if cc, ok := c.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return scan(ctx, m) })
	} else {
		err = scan(ctx, c.rdb)
	}
	if err != nil {
		return nil, redisErr(err)
	}
	keys := make([]string, 0, len(found))
	for k := range found {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if limit > 0 && len(keys) > limit {
		keys = keys[:limit]
	}
	return keys, nil
}

// globEscaper escapes SCAN's MATCH pattern characters.
var globEscaper = strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`, "]", `\]`)

var keyUnescaper = strings.NewReplacer("%25", "%", "%7B", "{", "%7D", "}")

// userKey returns the user key of a Redis key of dlock's
// ("<prefix>:{<key>}:lock" and the like).
func userKey(prefix, redisKey string) (string, bool) {
	rest, ok := strings.CutPrefix(redisKey, prefix+":{")
	if !ok {
		return "", false
	}
	i := strings.LastIndex(rest, "}:")
	if i < 0 {
		return "", false
	}
	switch rest[i+2:] {
	case "lock", "sem", "fan":
		return keyUnescaper.Replace(rest[:i]), true
	}
	return "", false
}

// ForceRelease frees key's lock, or one of its permits, if owner (an owner
// or permit id, as Inspect reports it) still holds it: for an operator to
// free what a dead process held, without waiting out its lease. It is the
// holder's own release, run on its behalf: the key keeps its last fencing
// token (the next grant's is larger), waiters are woken, and a holder
// still alive learns at its next renewal that it lost the lease (its Done
// closes, Err is ErrLost). ErrNotHeld when owner no longer holds it.
func (c *Client) ForceRelease(ctx context.Context, key, owner string) error {
	tag, err := c.tag(key)
	if err != nil {
		return err
	}
	if owner == "" {
		return invalid("empty owner id")
	}
	var v any
	if i := strings.LastIndexByte(owner, '/'); i >= 0 { // a permit id ends in /<limit>
		limit, _ := strconv.Atoi(owner[i+1:])
		v, err = c.run(ctx, scriptSemRelease, []string{tag + ":sem"}, []any{owner, "", max(limit, 1), tag + ":sem:ch", ms(semOfferGrace)}, nil)
	} else {
		v, err = c.run(ctx, scriptLockRelease, []string{lockKey(tag)}, []any{owner, ms(c.opts.FenceTTL), lockChannel(tag)}, nil)
	}
	if err != nil {
		return err
	}
	if n, _ := v.(int64); n == 0 {
		return fmt.Errorf("%w: %s does not hold %q", ErrNotHeld, owner, key)
	}
	return nil
}
