package dlockrt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/internal/slot"
)

func init() { helpers["multistall"] = helperMultiStall }

// helperMultiStall takes a multi-lock on KEYS (comma-separated) of the
// Cluster at CLUSTER with a lease of 1s, prints "partial" once its first
// slot's group is taken, and stops there until it is killed (or
// helperLife passes).
func helperMultiStall() int {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(os.Getenv("CLUSTER"), ",")})
	c, err := New(rdb, &Options{Prefix: os.Getenv("PREFIX"), TTL: time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	testHookGroupTaken = func(int) {
		fmt.Println("partial")
		os.Exit(awaitKill("multistall"))
	}
	_, err = c.Multi(context.Background(), strings.Split(os.Getenv("KEYS"), ",")...)
	fmt.Fprintln(os.Stderr, "multistall: Multi returned", err)
	return 1
}

// P11: a process killed in the middle of a multi-lock on a Cluster (one
// slot's keys taken, the next not yet) leaves those keys only until their
// lease ends; then the whole set can be taken.
func TestCluster_Multi_killedMidAcquireLeavesKeysOnlyForTheirTTL(t *testing.T) {
	cl := sharedCluster(t)
	cc := cl.Client()
	prefix := "p11" + runID
	c := newClient(t, cc, &Options{Prefix: prefix})
	// Two keys in different slots: the multi-lock takes them in two steps.
	keys := []string{"a"}
	for i := 0; len(keys) < 2; i++ {
		k := fmt.Sprintf("b%d", i)
		if slot.Of(mustTag(t, c, k)) != slot.Of(mustTag(t, c, keys[0])) {
			keys = append(keys, k)
		}
	}
	cmd := startHelperSaying(t, "multistall", "partial", "CLUSTER="+strings.Join(cl.Addrs(), ","),
		"PREFIX="+prefix, "KEYS="+strings.Join(keys, ","))
	if err := cmd.kill(); err != nil {
		t.Fatal(err)
	}
	cmd.wait(t, 10*time.Second)
	killed := time.Now()

	// Exactly one of the two keys is held, with a lease of at most 1s.
	var held []string
	for _, k := range keys {
		pttl, err := cc.PTTL(t.Context(), lockKey(mustTag(t, c, k))).Result()
		if err != nil {
			t.Fatal(err)
		}
		if pttl > 0 {
			held = append(held, k)
			if pttl > time.Second {
				t.Errorf("key %s left with a lease of %v; want at most 1s", k, pttl)
			}
		}
	}
	if len(held) != 1 {
		t.Fatalf("keys held after the kill: %v; want exactly the first slot's", held)
	}
	var me *MultiLockError
	if _, err := c.MultiWith(t.Context(), keys, WithRetries(0, 0)); !errors.As(err, &me) || len(me.Keys) != 1 || me.Keys[0] != held[0] {
		t.Fatalf("Multi while the partial hold lasts = %v; want a MultiLockError naming %s", err, held[0])
	}
	// Gone when the lease ends: the whole set is free again.
	redistest.WaitFor(t, 3*time.Second, "the partial hold to end", func(ctx context.Context) bool {
		n, err := cc.Exists(ctx, lockKey(mustTag(t, c, held[0]))).Result()
		return err == nil && n == 0
	})
	if gone := time.Since(killed); gone > time.Second+500*time.Millisecond {
		t.Errorf("partial hold lasted %v after the kill; want at most its 1s lease", gone)
	}
	m, err := c.Multi(t.Context(), keys...)
	if err != nil {
		t.Fatalf("Multi after the lease ended = %v", err)
	}
	m.Release(t.Context())
}
