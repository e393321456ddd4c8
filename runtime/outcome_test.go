package dlockrt

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/redistest"
)

// P18: leader A's lease is lost mid-job (its key deleted, as a failover
// that lost the write would). A's job ignores its context and finishes
// late with "old"; B took over and runs generation 2, which C joined.
// Nobody receives A's late outcome or an error caused by A's loss: A's
// caller, B's and C's all get generation 2's "new".
func TestFanout_outcomeBelongsToItsRun(t *testing.T) {
	rdb := newRedis(t)
	o := &Options{TTL: 300 * time.Millisecond}
	a, b, c := newClient(t, newRedis(t), o), newClient(t, newRedis(t), o), newClient(t, newRedis(t), o)
	k := key(t, "k")
	aStarted, aFinish, bStarted, bFinish := make(chan struct{}), make(chan struct{}), make(chan struct{}), make(chan struct{})
	var runs atomic.Int32
	job := func(ctx context.Context) ([]byte, error) {
		switch runs.Add(1) {
		case 1: // A's run: lost, then finishes late
			close(aStarted)
			recvGo(t, aFinish, time.Minute, "the test to let A's job finish")
			return []byte("old"), nil
		case 2: // generation 2, wherever it runs
			close(bStarted)
			recvGo(t, bFinish, time.Minute, "the test to let generation 2's job finish")
			return []byte("new"), nil
		}
		return []byte("third run"), nil
	}
	type result struct {
		who string
		b   []byte
		err error
	}
	out := make(chan result, 3)
	call := func(who string, cl *Client) {
		v, err := cl.Fanout(t.Context(), k, job, WithTimeout(10*time.Second))
		out <- result{who, v, err}
	}
	go call("A", a)
	recv(t, aStarted, 10*time.Second, "A's job to start")
	go call("B", b)
	waitFanSubscribers(t, k, 1)
	rdb.Del(bg(), fanKey(mustTag(t, a, k))) // A's lease is lost
	// generation 2 runs (in A's process or B's)
	recv(t, bStarted, 10*time.Second, "generation 2's job to start")
	go call("C", c)
	waitFanSubscribers(t, k, 2)
	close(aFinish) // A's job returns its late outcome now
	time.Sleep(50 * time.Millisecond)
	close(bFinish)
	for range 3 {
		r := recv(t, out, 20*time.Second, "the callers' results")
		if r.err != nil || string(r.b) != "new" {
			t.Errorf("caller %s got %q, %v; want generation 2's \"new\"", r.who, r.b, r.err)
		}
	}
	if n := runs.Load(); n != 2 {
		t.Errorf("runs = %d; want 2 (A's lost one, and generation 2)", n)
	}
}

// P18: the loser's cancellation is never the key's outcome: a leader whose
// lease is lost returns context.Cause from its job; its waiters take over
// and get a real result.
func TestFanout_lostLeaderCancellationIsNotPublished(t *testing.T) {
	rdb := newRedis(t)
	o := &Options{TTL: 300 * time.Millisecond}
	a, b := newClient(t, newRedis(t), o), newClient(t, newRedis(t), o)
	k := key(t, "k")
	started := make(chan struct{})
	var runs atomic.Int32
	job := func(ctx context.Context) ([]byte, error) {
		if runs.Add(1) == 1 {
			close(started)
			<-ctx.Done()
			return nil, context.Cause(ctx)
		}
		return []byte("real"), nil
	}
	errs := make(chan error, 2)
	for _, cl := range []*Client{a, b} {
		go func() {
			v, err := cl.Fanout(t.Context(), k, job)
			if err == nil && string(v) != "real" {
				err = errors.New("got " + string(v))
			}
			errs <- err
		}()
		if cl == a {
			recv(t, started, 10*time.Second, "the leader's job to start")
		}
	}
	waitFanSubscribers(t, k, 1)
	rdb.Del(bg(), fanKey(mustTag(t, a, k)))
	for range 2 {
		if err := recv(t, errs, 30*time.Second, "the callers' results after the leader's loss"); err != nil {
			t.Errorf("Fanout after the leader's loss = %v; want the real result", err)
		}
	}
}

// P9: the first local caller's context ending mid-join does not fail the
// callers that attached meanwhile.
func TestFanout_firstCallersContextDoesNotEndTheJoin(t *testing.T) {
	p := redistest.StartProxy(t, standaloneAddr(t))
	c := newClient(t, redisAt(t, p.Addr()), nil)
	k := key(t, "k")
	// Load the scripts, then make every round trip slow.
	if _, err := c.Fanout(t.Context(), key(t, "warm"), func(context.Context) ([]byte, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	p.Delay(150 * time.Millisecond)
	job := func(context.Context) ([]byte, error) { return []byte("v"), nil }
	short, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	first := make(chan error, 1)
	go func() { _, err := c.Fanout(short, k, job); first <- err }()
	time.Sleep(10 * time.Millisecond) // the second caller attaches to the first's flight
	v, err := c.Fanout(t.Context(), k, job)
	if err != nil || string(v) != "v" {
		t.Fatalf("second caller = %q, %v; want \"v\" (the first caller's context must not end the join)", v, err)
	}
	if err := recv(t, first, 10*time.Second, "the first caller's Fanout to return"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first caller = %v; want its own deadline", err)
	}
}

// P9: when the first caller's WithTimeout ends the job, the leader steps
// down and the flight's other callers join again at once: they are not
// stranded until their own (longer) timeouts.
func TestFanout_stepDownRejoinsTheOtherCallers(t *testing.T) {
	c := newClient(t, newRedis(t), nil)
	k := key(t, "k")
	var runs atomic.Int32
	started := make(chan struct{})
	job := func(ctx context.Context) ([]byte, error) {
		if runs.Add(1) == 1 {
			close(started)
			<-ctx.Done()
			return nil, context.Cause(ctx)
		}
		return []byte("v"), nil
	}
	first := make(chan error, 1)
	go func() { _, err := c.Fanout(t.Context(), k, job, WithTimeout(300*time.Millisecond)); first <- err }()
	recv(t, started, 10*time.Second, "the first caller's job to start")
	var v []byte
	var err error
	d := elapsed(func() { v, err = c.Fanout(t.Context(), k, job, WithTimeout(10*time.Second)) })
	if err != nil || string(v) != "v" {
		t.Fatalf("second caller = %q, %v; want \"v\" from a run after the step-down", v, err)
	}
	if d > 2*time.Second {
		t.Fatalf("second caller waited %v; want it to rejoin at the step-down (~300ms)", d)
	}
	if err := recv(t, first, 10*time.Second, "the first caller's Fanout to return"); !errors.Is(err, ErrTimeout) {
		t.Fatalf("first caller = %v; want ErrTimeout", err)
	}
}

// redisAt returns a go-redis client of addr, closed with the test.
func redisAt(t *testing.T, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
}

// A Push leader whose Extend finds its lease taken (another process took
// over) steps down at once: the flight's other local callers get the new
// generation's outcome, not a timeout.
func TestPush_extendFindingTheLeaseTakenStepsDown(t *testing.T) {
	rdb := newRedis(t)
	a, b := newClient(t, newRedis(t), nil), newClient(t, newRedis(t), nil)
	k := key(t, "k")
	job, err := a.Push(t.Context(), k, func([]byte, error) {})
	if err != nil {
		t.Fatal(err)
	}
	local := make(chan string, 1)
	go func() {
		v, err := a.Fanout(t.Context(), k, func(context.Context) ([]byte, error) { return []byte("local rerun"), nil }, WithTimeout(10*time.Second))
		if err != nil {
			local <- err.Error()
			return
		}
		local <- string(v)
	}()
	rdb.Del(bg(), fanKey(mustTag(t, a, k))) // the leader's lease is lost
	if v, err := b.Fanout(t.Context(), k, func(context.Context) ([]byte, error) { return []byte("remote"), nil }); err != nil || string(v) != "remote" {
		t.Fatalf("the other process = %q, %v", v, err)
	}
	if err := job.Extend(t.Context(), time.Second); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Extend after the takeover = %v; want ErrNotHeld", err)
	}
	select {
	case <-job.Context().Done():
	case <-time.After(2 * time.Second):
		t.Fatal("the job's context is still live after its lease was found taken")
	}
	select {
	case v := <-local:
		if v != "remote" && v != "local rerun" {
			t.Fatalf("local caller = %q; want the takeover's result or a rerun", v)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the local caller is stranded after its leader stepped down")
	}
}
