package dlockrt

import (
	"context"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// The oracle checks mutual exclusion and fencing from outside the locks:
// every critical section calls enter with its key and token and leave at its
// end; the oracle (a Redis hash, updated atomically) counts sections,
// overlaps (two sections of one key at once) and stale tokens (a token not
// larger than the last one seen for the key).
var (
	oracleEnter = redis.NewScript(`
if redis.call('INCR', KEYS[1]) > 1 then redis.call('HINCRBY', KEYS[3], 'overlaps', 1) end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) <= last then
  redis.call('HINCRBY', KEYS[3], 'stale', 1)
else
  redis.call('SET', KEYS[2], ARGV[1])
end
redis.call('HINCRBY', KEYS[3], 'sections', 1)
return 1`)
	oracleLeave = redis.NewScript(`return redis.call('DECR', KEYS[1])`)
)

type oracle struct {
	rdb  *redis.Client
	name string
}

func (o oracle) keys(k string) []string {
	p := "oracle:{" + o.name + "}:"
	return []string{p + "inside:" + k, p + "last:" + k, p + "stats"}
}

func (o oracle) enter(ctx context.Context, k string, token int64) error {
	return oracleEnter.Run(ctx, o.rdb, o.keys(k), strconv.FormatInt(token, 10)).Err()
}

func (o oracle) leave(ctx context.Context, k string) error {
	return oracleLeave.Run(ctx, o.rdb, o.keys(k)[:1]).Err()
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
