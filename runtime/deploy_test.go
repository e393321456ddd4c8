package dlockrt

import (
	"errors"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
)

// oldLockAcquire is lock_acquire as dlock 0.3 shipped it (a grant of one
// key replies {1, token}): what the older processes of a rolling deploy run
// against the same keys.
func oldLockAcquire(t testing.TB) *redis.Script {
	t.Helper()
	src, err := os.ReadFile("testdata/lock_acquire_v0.3.lua")
	if err != nil {
		t.Fatal(err)
	}
	return redis.NewScript(string(src))
}

// A rolling deploy from 0.3 to 0.4 (lock_acquire rewritten for speed: the
// same values in Redis, a shorter reply) runs both scripts against one
// key: each build sees the other's hold, and tokens keep growing whichever
// build grants them.
func TestLock_deployOldAndNewAcquireShareKeys(t *testing.T) {
	rdb := newRedis(t)
	c := newClient(t, rdb, nil)
	old := oldLockAcquire(t)
	k := key(t, "deploy")
	tag, _ := c.tag(k)
	var last int64
	oldTakes := func() string {
		t.Helper()
		owner := randomID()
		v, err := old.Run(bg(), rdb, []string{lockKey(tag)}, owner, 5000).Int64Slice()
		if err != nil || len(v) != 2 || v[0] != 1 {
			t.Fatalf("an old acquire of a free key: %v %v", v, err)
		}
		if v[1] <= last {
			t.Fatalf("an old build's token %d after %d: tokens went back", v[1], last)
		}
		last = v[1]
		return owner
	}
	oldRelease := func(owner string) {
		t.Helper()
		if n, err := scriptLockRelease.Run(bg(), rdb, []string{lockKey(tag)}, owner, 60000, lockChannel(tag)).Int64(); err != nil || n != 1 {
			t.Fatalf("an old release: %v %v", n, err)
		}
	}
	for range 3 {
		owner := oldTakes()
		if _, err := c.Once(bg(), k); !errors.Is(err, ErrNotAcquired) {
			t.Fatalf("a new Once while an old build holds = %v; want ErrNotAcquired", err)
		}
		oldRelease(owner)

		l, err := c.Once(bg(), k)
		if err != nil {
			t.Fatal(err)
		}
		if l.Token() <= last {
			t.Fatalf("a new build's token %d after %d: tokens went back", l.Token(), last)
		}
		last = l.Token()
		if v, err := old.Run(bg(), rdb, []string{lockKey(tag)}, randomID(), 5000).Int64Slice(); err != nil || v[0] != 0 {
			t.Fatalf("an old acquire while a new build holds: %v %v; want refused", v, err)
		}
		if err := l.Release(bg()); err != nil {
			t.Fatal(err)
		}
	}
}
