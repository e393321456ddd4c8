package dlockrt

import (
	"context"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/slot"
)

// P27: while a key's slot is half-migrated (MIGRATING on its primary,
// IMPORTING on another, no key moved), every operation succeeds within
// OpTimeout: keys the source has are served there, keys it lacks go to the
// target by ASK. (Each lock, fanout and semaphore is one Redis key, and
// channels are never passed as keys, so no node answers TRYAGAIN.)
func TestCluster_operationsSucceedWhileSlotIsHalfMigrated(t *testing.T) {
	cl := sharedCluster(t).For(t)
	c := newClient(t, cl.Client(), &Options{OpTimeout: 2 * time.Second})
	k := key(t, "k")
	s := slot.Of(mustTag(t, c, k))
	held, err := c.Once(t.Context(), k) // its key stays on the source
	if err != nil {
		t.Fatal(err)
	}
	defer cl.HalfMigrate(s, otherPrimary(cl, s))()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s while the slot migrates = %v", what, err)
		}
	}
	step("Release (key on the source)", held.Release(ctx))
	l, err := c.Once(ctx, k) // the released key is still on the source
	step("Once", err)
	step("Extend", l.Extend(ctx, time.Second))
	step("Release", l.Release(ctx))
	m, err := c.Multi(ctx, k, key(t, "other"))
	step("Multi", err)
	step("Multi Release", m.Release(ctx))
	v, err := c.Fanout(ctx, k, func(context.Context) ([]byte, error) { return []byte("v"), nil }) // a new key: on the target
	step("Fanout", err)
	if string(v) != "v" {
		t.Fatalf("Fanout = %q", v)
	}
	sem := c.Semaphore(k, 2)
	p, err := sem.TryAcquire(ctx)
	step("TryAcquire", err)
	q, err := sem.Acquire(ctx)
	step("Acquire", err)
	step("Permit Extend", p.Extend(ctx, time.Second))
	step("Permit Release", p.Release(ctx))
	step("Permit Release", q.Release(ctx))
}

// P11 and P19 on a Cluster: a multi-lock whose caller leaves between two
// slots' groups (its context ends) leaves none of them held.
func TestCluster_Multi_callerLeavingBetweenGroupsLeavesNothingHeld(t *testing.T) {
	cl := sharedCluster(t)
	cc := cl.Client()
	c := newClient(t, cc, &Options{TTL: 10 * time.Second})
	keys := []string{key(t, "a"), key(t, "b"), key(t, "c"), key(t, "d")}
	ctx, cancel := context.WithCancel(t.Context())
	testHookGroupTaken = func(int) { cancel() }
	defer func() { testHookGroupTaken = nil }()
	if _, err := c.Multi(ctx, keys...); err == nil {
		t.Fatal("Multi succeeded although its caller left")
	}
	testHookGroupTaken = nil
	waitFree(t, newClient(t, cc, nil), keys, 2*time.Second)
}
