package dlockrt

import (
	"context"
	"errors"
	"fmt"
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

// P18: a job's error reaches the callers of its run only. A caller that
// joins after the run completed (within ResultTTL, when a result would
// still be read back) runs the job again instead of taking the old error.
func TestFanout_errorReachesOnlyTheCallersOfItsRun(t *testing.T) {
	a, w, b := newClient(t, newRedis(t), nil), newClient(t, newRedis(t), nil), newClient(t, newRedis(t), nil)
	k := key(t, "k")
	started, gate := make(chan struct{}), make(chan struct{})
	errs := make(chan error, 2)
	go func() {
		_, err := a.Fanout(t.Context(), k, func(context.Context) ([]byte, error) {
			close(started)
			recvGo(t, gate, time.Minute, "the test to let the job fail")
			return nil, errJob
		})
		errs <- err
	}()
	recv(t, started, 10*time.Second, "the failing job to start")
	go func() {
		_, err := w.Fanout(t.Context(), k, func(context.Context) ([]byte, error) { return []byte("w ran"), nil })
		errs <- err
	}()
	waitFanSubscribers(t, k, 1) // w waits on the failing run
	close(gate)
	for range 2 {
		var re *RemoteError
		if err := recv(t, errs, 10*time.Second, "the run's callers"); !errors.As(err, &re) || re.Message != errJob.Error() {
			t.Fatalf("a caller of the failing run got %v; want its error", err)
		}
	}
	v, err := b.Fanout(t.Context(), k, func(context.Context) ([]byte, error) { return []byte("fresh"), nil })
	if err != nil || string(v) != "fresh" {
		t.Fatalf("a caller after the failed run = %q, %v; want its own run's \"fresh\"", v, err)
	}
}

// P5 for fanout: an outcome published between a waiter's first join and
// its subscription is not missed. The waiter joins again once subscribed
// and finds it in the key: a result, or the error of the run it waited on.
func TestFanout_outcomeBetweenJoinAndSubscribeReachesTheWaiter(t *testing.T) {
	for _, failing := range []bool{false, true} {
		t.Run(map[bool]string{false: "result", true: "error"}[failing], func(t *testing.T) {
			a, b := newClient(t, newRedis(t), nil), newClient(t, newRedis(t), nil)
			k := key(t, "k")
			started, gate, returned := make(chan struct{}), make(chan struct{}), make(chan struct{})
			go func() {
				defer close(returned)
				a.Fanout(t.Context(), k, func(context.Context) ([]byte, error) {
					close(started)
					recvGo(t, gate, time.Minute, "the waiter's first join")
					if failing {
						return nil, errJob
					}
					return []byte("v"), nil
				})
			}()
			recv(t, started, 10*time.Second, "the leader's job to start")
			testHookFanoutWait = func(key string) {
				if key == k { // b joined, found a leading, and has not subscribed yet
					close(gate)
					recvGo(t, returned, 10*time.Second, "the leader's run to complete")
				}
			}
			t.Cleanup(func() { testHookFanoutWait = nil })
			var v []byte
			var err error
			d := elapsed(func() {
				v, err = b.Fanout(t.Context(), k, func(context.Context) ([]byte, error) { return []byte("b ran"), nil },
					WithTimeout(5*time.Second))
			})
			var re *RemoteError
			switch {
			case failing && (!errors.As(err, &re) || re.Message != errJob.Error()):
				t.Fatalf("waiter = %q, %v; want the error of the run it waited on", v, err)
			case !failing && (err != nil || string(v) != "v"):
				t.Fatalf("waiter = %q, %v; want the leader's \"v\"", v, err)
			case d > 2*time.Second:
				t.Fatalf("waiter took %v; want it at once, from the key", d)
			}
		})
	}
}

// P18 in Redis itself: a leader that completes after another generation
// took its key over (its lease lost in Redis, before its watchdog
// noticed) publishes and stores nothing; fanout_complete checks the
// generation, not only the Go side.
func TestFanout_completeAfterATakeoverPublishesNothing(t *testing.T) {
	rdb := newRedis(t)
	a := newClient(t, newRedis(t), nil) // a 10s lease: no renewal for 3s
	k := key(t, "k")
	job, err := a.Push(t.Context(), k, func([]byte, error) {})
	if err != nil {
		t.Fatal(err)
	}
	tag := mustTag(t, a, k)
	if err := rdb.Set(bg(), fanKey(tag), "0 another-generation", 10*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	ps := rdb.SSubscribe(bg(), fanChannel(tag))
	defer ps.Close()
	if _, err := ps.Receive(t.Context()); err != nil { // the confirmation
		t.Fatal(err)
	}
	if err := job.Complete(t.Context(), []byte("late"), nil); !errors.Is(err, ErrLost) {
		t.Fatalf("Complete after a takeover = %v; want ErrLost", err)
	}
	if v, _ := rdb.Get(bg(), fanKey(tag)).Result(); v != "0 another-generation" {
		t.Fatalf("the key after the loser's Complete = %q; want the new generation's", v)
	}
	rdb.SPublish(bg(), fanChannel(tag), "marker")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if m, err := ps.ReceiveMessage(ctx); err != nil || m.Payload != "marker" {
		t.Fatalf("first message after the loser's Complete = %v, %v; want only the marker published after it", m, err)
	}
}

// A job error that wraps a registered error matches it in every process.
func TestFanout_wrappedRegisteredErrorMatchesRemotely(t *testing.T) {
	RegisterError("test.job_failed", errJob)
	a, b := newClient(t, newRedis(t), nil), newClient(t, newRedis(t), nil)
	k := key(t, "k")
	started, gate := make(chan struct{}), make(chan struct{})
	go a.Fanout(t.Context(), k, func(context.Context) ([]byte, error) {
		close(started)
		recvGo(t, gate, time.Minute, "the waiter to join")
		return nil, fmt.Errorf("loading user 7: %w", errJob)
	})
	recv(t, started, 10*time.Second, "the job to start")
	got := make(chan error, 1)
	go func() {
		_, err := b.Fanout(t.Context(), k, func(context.Context) ([]byte, error) { return nil, nil })
		got <- err
	}()
	waitFanSubscribers(t, k, 1)
	close(gate)
	if err := recv(t, got, 10*time.Second, "the waiter's outcome"); !errors.Is(err, errJob) {
		t.Fatalf("remote caller = %v; want it to match the registered error the job's error wraps", err)
	}
}

// P18: a waiter takes only the outcome of the generation it waits on: a
// well-formed envelope of another generation (forged, or from a run that
// no longer leads) published on the key's channel is not taken.
func TestFanout_envelopeOfAnotherGenerationIsNotTaken(t *testing.T) {
	rdb := newRedis(t)
	a, b := newClient(t, newRedis(t), nil), newClient(t, newRedis(t), nil)
	k := key(t, "k")
	started, gate := make(chan struct{}), make(chan struct{})
	go a.Fanout(t.Context(), k, func(context.Context) ([]byte, error) {
		close(started)
		recvGo(t, gate, time.Minute, "the forged envelope")
		return []byte("real"), nil
	})
	recv(t, started, 10*time.Second, "the leader's job to start")
	got := make(chan pushOutcome, 1)
	go func() {
		v, err := b.Fanout(t.Context(), k, func(context.Context) ([]byte, error) { return []byte("b ran"), nil })
		got <- pushOutcome{v, err}
	}()
	waitFanSubscribers(t, k, 1)
	forged := envelope{gen: "another-generation", status: statusOK, payload: []byte("forged")}.encode()
	if err := rdb.SPublish(bg(), fanChannel(mustTag(t, a, k)), forged).Err(); err != nil {
		t.Fatal(err)
	}
	close(gate) // the real outcome is published after the forged one
	if o := recv(t, got, 10*time.Second, "the waiter"); o.err != nil || string(o.b) != "real" {
		t.Fatalf("waiter = %q, %v; want its leader's \"real\", not another generation's", o.b, o.err)
	}
}
