package dlockrt

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/redistest"
)

// ACLRule is the least privilege dlock needs with the default prefix: its
// keys and channels, the commands its clients send, and those its scripts
// run. The README quotes it.
const ACLRule = "on >secret resetkeys ~dlock:* resetchannels &dlock:* -@all " +
	"+evalsha +eval +ssubscribe +sunsubscribe +ping +hello +auth " +
	"+set +get +pttl +pexpire +time +spublish " +
	"+zadd +zrem +zscore +zcount +zrangebyscore +zrevrangebyscore +zremrangebyscore"

// Everything works for a user limited to dlock's keys, channels and
// commands.
func TestClient_worksWithLeastPrivilegeACL(t *testing.T) {
	srv := redistest.StartServer(t)
	admin := srv.Client()
	if err := admin.Do(t.Context(), append([]any{"ACL", "SETUSER", "dlockapp"}, toAny(strings.Fields(ACLRule))...)...).Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	var cs []*Client
	for range 2 {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "dlockapp", Password: "secret"})
		t.Cleanup(func() { rdb.Close() })
		cs = append(cs, newClient(t, rdb, nil))
	}
	ctx := t.Context()
	l := lockWakesWaiter(t, cs, admin)
	if err := l.Extend(ctx, time.Second); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Extend after release = %v; want ErrNotHeld", err)
	}
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			if b, err := c.Fanout(ctx, "f", func(context.Context) ([]byte, error) { return []byte("v"), nil }); err != nil || string(b) != "v" {
				t.Errorf("Fanout = %q, %v", b, err)
			}
		})
	}
	waitGroup(t, &wg, 30*time.Second, "the Fanout callers")
	p, err := cs[0].Semaphore("s", 1).Acquire(ctx)
	if err != nil {
		t.Fatalf("Semaphore Acquire = %v", err)
	}
	if err := p.Extend(ctx, time.Second); err != nil {
		t.Fatalf("Permit Extend = %v", err)
	}
	if err := p.Release(ctx); err != nil {
		t.Fatalf("Permit Release = %v", err)
	}
	// And the rule really is narrow: other keys are refused.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "dlockapp", Password: "secret"})
	defer rdb.Close()
	if err := rdb.Set(ctx, "other", 1, 0).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("SET outside dlock's keys = %v; want NOPERM", err)
	}
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// Everything works over TLS, configured on the go-redis client.
func TestClient_worksOverTLS(t *testing.T) {
	srv := redistest.StartTLSServer(t)
	var cs []*Client
	for range 2 {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), TLSConfig: srv.TLS})
		t.Cleanup(func() { rdb.Close() })
		cs = append(cs, newClient(t, rdb, nil))
	}
	ctx := t.Context()
	lockWakesWaiter(t, cs, srv.Client())
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			if b, err := c.Fanout(ctx, "f", func(context.Context) ([]byte, error) { return []byte("v"), nil }); err != nil || string(b) != "v" {
				t.Errorf("Fanout over TLS = %q, %v", b, err)
			}
		})
	}
	waitGroup(t, &wg, 30*time.Second, "the Fanout callers")
}

// lockWakesWaiter: cs[0] takes "k", cs[1] waits for it and is woken by the
// release (the lease is a minute). It returns the released lock.
func lockWakesWaiter(t *testing.T, cs []*Client, admin *redis.Client) *Lock {
	t.Helper()
	ctx := t.Context()
	l, err := cs[0].Once(ctx, "k", WithTTL(time.Minute))
	if err != nil {
		t.Fatalf("Once = %v", err)
	}
	got := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		l2, err := cs[1].Lock(wctx, "k")
		if err == nil {
			err = l2.Release(ctx)
		}
		got <- err
	}()
	redistest.WaitFor(t, 5*time.Second, "the waiter's subscription", func(ctx context.Context) bool {
		n, err := admin.PubSubShardNumSub(ctx, "dlock:{k}:lock:ch").Result()
		return err == nil && n["dlock:{k}:lock:ch"] == 1
	})
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release = %v", err)
	}
	if err := recv(t, got, 10*time.Second, "the waiter's Lock after the release"); err != nil {
		t.Fatalf("Lock = %v", err)
	}
	return l
}

// P22: with a Redis user per prefix, a process of another prefix can
// neither read, write, publish to nor subscribe to this prefix's keys and
// channels.
func TestACL_anotherPrefixCannotTouchThisOne(t *testing.T) {
	srv := redistest.StartServer(t)
	admin := srv.Client()
	other := strings.ReplaceAll(ACLRule, "dlock:*", "other:*")
	if err := admin.Do(t.Context(), append([]any{"ACL", "SETUSER", "otherapp"}, toAny(strings.Fields(other))...)...).Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "otherapp", Password: "secret"})
	t.Cleanup(func() { rdb.Close() })
	mine := newClient(t, admin, nil)
	l, err := mine.Once(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	tag := mustTag(t, mine, "k")
	ctx := t.Context()
	for what, err := range map[string]error{
		"read":    rdb.Get(ctx, lockKey(tag)).Err(),
		"write":   rdb.Set(ctx, lockKey(tag), "stolen", 0).Err(),
		"delete":  rdb.Del(ctx, lockKey(tag)).Err(),
		"script":  scriptLockRelease.Run(ctx, rdb, []string{lockKey(tag)}, strings.Fields(l.set.owner+" 1000 "+lockChannel(tag))).Err(),
		"publish": rdb.SPublish(ctx, fanChannel(tag), "forged").Err(),
	} {
		if err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Errorf("%s of this prefix's key by another prefix's user = %v; want NOPERM", what, err)
		}
	}
	ps := rdb.SSubscribe(ctx, lockChannel(tag))
	defer ps.Close()
	if _, err := ps.Receive(ctx); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("subscribe to this prefix's channel by another prefix's user = %v; want NOPERM", err)
	}
	// And the lock is untouched: still ours.
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release after the other user's attempts = %v", err)
	}
	// The other user's own client works on its own prefix.
	oc := newClient(t, rdb, &Options{Prefix: "other"})
	ol, err := oc.Once(ctx, "k")
	if err != nil {
		t.Fatalf("Once under the other prefix = %v", err)
	}
	ol.Release(ctx)
}

// P33: a user without channel permissions gets ErrNoPermission from every
// call that needs a channel, under contention too: waiters (whose
// subscription is refused), releases and completions (whose scripts may
// not publish); never ErrUnavailable.
func TestACL_withoutChannelsEveryErrorIsErrNoPermission(t *testing.T) {
	srv := redistest.StartServer(t)
	rule := strings.Replace(ACLRule, "&dlock:*", "", 1)
	var cs []*Client
	for i := range 4 {
		cs = append(cs, newClient(t, aclUser(t, srv, "nochannels"+strconv.Itoa(i), rule, "secret"), &Options{Eviction: EvictionIgnore}))
	}
	var mu sync.Mutex
	var errs []error
	note := func(err error) {
		if err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	}
	var wg sync.WaitGroup
	for _, c := range cs {
		for range 3 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				defer cancel()
				l, err := c.Lock(ctx, "k")
				note(err)
				if err == nil {
					time.Sleep(5 * time.Millisecond)
					note(l.Release(ctx))
				}
				p, err := c.Semaphore("s", 1).Acquire(ctx)
				note(err)
				if err == nil {
					time.Sleep(5 * time.Millisecond)
					note(p.Release(ctx))
				}
				_, err = c.Fanout(ctx, "f", func(context.Context) ([]byte, error) {
					time.Sleep(20 * time.Millisecond)
					return []byte("v"), nil
				})
				note(err)
			})
		}
	}
	waitGroup(t, &wg, time.Minute, "the callers")
	if len(errs) == 0 {
		t.Fatal("no call failed; the user has no channel permission, so contention must meet it")
	}
	for _, err := range errs {
		if !errors.Is(err, ErrNoPermission) || errors.Is(err, ErrUnavailable) {
			t.Errorf("error %v; want ErrNoPermission (and not ErrUnavailable)", err)
		}
	}
}
