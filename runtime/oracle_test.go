package dlockrt

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The oracle checks mutual exclusion and fencing from outside the locks:
// every critical section calls enter with its key and token and leave at its
// end; the oracle (Redis, updated atomically) counts sections, overlaps (two
// sections of one key at once) and stale tokens (a token not larger than
// the last one seen for the key). A section that never leaves (its process
// was killed) stops counting a little before its lock's lease would end.
var (
	oracleEnter = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) > 0 then redis.call('HINCRBY', KEYS[3], 'overlaps', 1) end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) <= last then
  redis.call('HINCRBY', KEYS[3], 'stale', 1)
else
  redis.call('SET', KEYS[2], ARGV[1])
end
redis.call('HINCRBY', KEYS[3], 'sections', 1)
return 1`)
	oracleLeave = redis.NewScript(`return redis.call('ZREM', KEYS[1], ARGV[1])`)
)

type oracle struct {
	rdb  *redis.Client
	name string
	ttl  time.Duration // how long an unfinished section counts; default 800ms
}

func (o oracle) keys(k string) []string {
	p := "oracle:{" + o.name + "}:"
	return []string{p + "inside:" + k, p + "last:" + k, p + "stats"}
}

// enter records the start of a section; pass its result to leave.
func (o oracle) enter(ctx context.Context, k string, token int64) (string, error) {
	ttl := o.ttl
	if ttl == 0 {
		ttl = 800 * time.Millisecond
	}
	id := randomID()
	return id, oracleEnter.Run(ctx, o.rdb, o.keys(k), strconv.FormatInt(token, 10), id, ttl.Milliseconds()).Err()
}

func (o oracle) leave(ctx context.Context, k, id string) error {
	return oracleLeave.Run(ctx, o.rdb, o.keys(k)[:1], id).Err()
}

// stats returns sections, overlaps and stale tokens.
func (o oracle) stats(ctx context.Context) (sections, overlaps, stale int64, err error) {
	m, err := o.rdb.HGetAll(ctx, o.keys("")[2]).Result()
	if err != nil {
		return 0, 0, 0, err
	}
	sections, _ = strconv.ParseInt(m["sections"], 10, 64)
	overlaps, _ = strconv.ParseInt(m["overlaps"], 10, 64)
	stale, _ = strconv.ParseInt(m["stale"], 10, 64)
	return sections, overlaps, stale, nil
}
