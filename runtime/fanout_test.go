package dlockrt

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
)

// tenClients returns ten dlock clients of the shared server, each with its
// own connections (like ten processes).
func tenClients(t *testing.T, o *Options) []*Client {
	var cs []*Client
	for range 10 {
		cs = append(cs, newClient(t, newRedis(t), o))
	}
	return cs
}

type pushOutcome struct {
	b   []byte
	err error
}

// Port of the Node package's push test: one leader runs the job, every
// caller's onDone gets its result, the other nine get ErrNotAcquired.
func TestPush_tenClientsOneRun(t *testing.T) {
	k := key(t, "k")
	outcomes := make(chan pushOutcome, 10)
	var jobs []*Job
	notAcquired := 0
	for _, c := range tenClients(t, nil) {
		j, err := c.Push(t.Context(), k, func(b []byte, err error) { outcomes <- pushOutcome{b, err} })
		switch {
		case err == nil:
			jobs = append(jobs, j)
		case errors.Is(err, ErrNotAcquired):
			notAcquired++
		default:
			t.Fatalf("Push = %v", err)
		}
	}
	if len(jobs) != 1 || notAcquired != 9 {
		t.Fatalf("leaders, not acquired = %d, %d; want 1, 9", len(jobs), notAcquired)
	}
	if err := jobs[0].Complete(t.Context(), []byte("result"), nil); err != nil {
		t.Fatalf("Complete = %v", err)
	}
	for range 10 {
		o := recv(t, outcomes, 10*time.Second, "the callers' onDone")
		if o.err != nil || string(o.b) != "result" {
			t.Fatalf("onDone(%q, %v); want (result, nil)", o.b, o.err)
		}
	}
}

// Port: three keys over ten clients (4/3/3) run three times.
func TestFanout_threeKeysThreeRuns(t *testing.T) {
	var runs atomic.Int32
	var wg sync.WaitGroup
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	for i, c := range tenClients(t, nil) {
		k := key(t, strconv.Itoa(i%3))
		wg.Go(func() {
			b, err := c.Fanout(t.Context(), k, func(context.Context) ([]byte, error) {
				runs.Add(1)
				started <- struct{}{}
				recvGo(t, release, time.Minute, "the test to let the jobs finish")
				return []byte(k), nil
			})
			if err != nil || string(b) != k {
				t.Errorf("Fanout(%s) = %q, %v; want %q", k, b, err, k)
			}
		})
	}
	for range 3 {
		recv(t, started, 10*time.Second, "a job of each key to start") // late joiners get the running job's result, or its cached one
	}
	close(release)
	waitGroup(t, &wg, 30*time.Second, "the callers' results")
	if n := runs.Load(); n != 3 {
		t.Fatalf("runs = %d; want 3", n)
	}
}

// Port: no completion, so every caller gets the timeout error after the
// timeout.
func TestPush_noCompletionTimesOut(t *testing.T) {
	k := key(t, "k")
	outcomes := make(chan pushOutcome, 10)
	start := time.Now()
	timeout := 300 * time.Millisecond
	for _, c := range tenClients(t, nil) {
		_, err := c.Push(t.Context(), k, func(b []byte, err error) { outcomes <- pushOutcome{b, err} }, WithTimeout(timeout))
		if err != nil && !errors.Is(err, ErrNotAcquired) {
			t.Fatalf("Push = %v", err)
		}
	}
	for range 10 {
		o := recv(t, outcomes, 10*time.Second, "the callers' onDone at their timeout")
		if !errors.Is(o.err, ErrTimeout) {
			t.Fatalf("onDone(%q, %v); want ErrTimeout", o.b, o.err)
		}
	}
	if d := time.Since(start); d < timeout {
		t.Fatalf("timed out after %v; want >= %v", d, timeout)
	}
}

var errJob = errors.New("job failed")

// Port: the job fails, so every caller gets its error with its message.
func TestFanout_jobErrorReachesEveryone(t *testing.T) {
	RegisterError("test.job_failed", errJob)
	k := key(t, "k")
	var wg sync.WaitGroup
	var runs atomic.Int32
	gate := make(chan struct{})
	started := make(chan struct{}, 10)
	for _, c := range tenClients(t, nil) {
		wg.Go(func() {
			_, err := c.Fanout(t.Context(), k, func(context.Context) ([]byte, error) {
				runs.Add(1)
				started <- struct{}{}
				recvGo(t, gate, time.Minute, "the test to let the job fail")
				return nil, errJob
			})
			var re *RemoteError
			if !errors.As(err, &re) || re.Message != "job failed" || !errors.Is(err, errJob) {
				t.Errorf("Fanout = %v; want a RemoteError matching errJob", err)
			}
		})
	}
	recv(t, started, 10*time.Second, "the job to start")
	// An error reaches the callers of its run only: let all nine others
	// join it (subscribe to the key's channel) before it ends.
	waitFanSubscribers(t, k, 9)
	close(gate)
	waitGroup(t, &wg, 30*time.Second, "the callers' results")
	if runs.Load() != 1 {
		t.Fatalf("runs = %d; want 1", runs.Load())
	}
}

// Port: fanout times out even while its lock is never acquired (a foreign
// holder keeps the leader's key).
func TestFanout_timesOutWhileLockNeverAcquired(t *testing.T) {
	rdb := newRedis(t)
	cs := tenClients(t, nil)
	k := key(t, "k")
	rdb.Set(bg(), fanKey(mustTag(t, cs[0], k)), "foreign", time.Minute)
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			_, err := c.Fanout(t.Context(), k, func(context.Context) ([]byte, error) {
				t.Error("job ran while the lock was held")
				return nil, nil
			}, WithTimeout(300*time.Millisecond))
			if !errors.Is(err, ErrTimeout) {
				t.Errorf("Fanout = %v; want ErrTimeout", err)
			}
		})
	}
	waitGroup(t, &wg, 10*time.Second, "the callers' timeouts")
}

// The job's context ends, with ErrLost as its cause, when the leader's lease
// is lost (here: another holder overwrote it); not when a caller leaves.
func TestFanout_jobContextEndsWhenLeaseLost(t *testing.T) {
	rdb := newRedis(t)
	c := newClient(t, newRedis(t), &Options{TTL: 150 * time.Millisecond})
	k := key(t, "k")
	started := make(chan struct{})
	cause := make(chan error, 1)
	go c.Fanout(t.Context(), k, func(ctx context.Context) ([]byte, error) {
		close(started)
		<-ctx.Done()
		cause <- context.Cause(ctx)
		return nil, ctx.Err()
	}, WithTimeout(time.Minute))
	recv(t, started, 10*time.Second, "the job to start")
	rdb.Set(bg(), fanKey(mustTag(t, c, k)), "usurper", time.Minute)
	if err := recv(t, cause, 10*time.Second, "the job's context to end"); !errors.Is(err, ErrLost) {
		t.Fatalf("job context cause = %v; want ErrLost", err)
	}
}

// An unregistered error crosses the wire as a *RemoteError with its message
// and no code.
func TestFanout_unregisteredErrorKeepsMessage(t *testing.T) {
	c := newClient(t, newRedis(t), nil)
	_, err := c.Fanout(t.Context(), key(t, "k"), func(context.Context) ([]byte, error) {
		return nil, errors.New("disk on fire")
	})
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != "" || re.Message != "disk on fire" {
		t.Fatalf("Fanout = %#v; want RemoteError{Code: \"\", Message: \"disk on fire\"}", err)
	}
}

// Bad input is refused at the call.
func TestFanout_badInput(t *testing.T) {
	c := newClient(t, newRedis(t), nil)
	job := func(context.Context) ([]byte, error) { return nil, nil }
	for name, err := range map[string]error{
		"empty key":    second(c.Fanout(t.Context(), "", job)),
		"nil job":      second(c.Fanout(t.Context(), "k", nil)),
		"zero timeout": second(c.Fanout(t.Context(), "k", job, WithTimeout(0))),
		"nil onDone":   second(c.Push(t.Context(), "k", nil)),
	} {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v; want ErrInvalid", name, err)
		}
	}
	var j *Job
	if err := j.Complete(t.Context(), nil, nil); !errors.Is(err, ErrNotHeld) {
		t.Errorf("nil Job Complete = %v; want ErrNotHeld", err)
	}
}

// waitFanSubscribers waits until n clients wait on key's fanout channel
// of the shared server.
func waitFanSubscribers(t *testing.T, key string, n int64) {
	t.Helper()
	rdb := newRedis(t)
	c := newClient(t, rdb, nil)
	ch := fanChannel(mustTag(t, c, key))
	redistest.WaitFor(t, 5*time.Second, "the fanout's waiters to subscribe", func(ctx context.Context) bool {
		m, err := rdb.PubSubShardNumSub(ctx, ch).Result()
		return err == nil && m[ch] == n
	})
}

// A caller that joins within ResultTTL after a run completed gets that
// run's result, without running the job again (P6).
func TestFanout_joinerAfterTheRunGetsItsResult(t *testing.T) {
	a, b := newClient(t, newRedis(t), nil), newClient(t, newRedis(t), nil)
	k := key(t, "k")
	if v, err := a.Fanout(t.Context(), k, func(context.Context) ([]byte, error) { return []byte("v"), nil }); err != nil || string(v) != "v" {
		t.Fatalf("first run = %q, %v", v, err)
	}
	v, err := b.Fanout(t.Context(), k, func(context.Context) ([]byte, error) { return []byte("b ran"), nil })
	if err != nil || string(v) != "v" {
		t.Fatalf("a caller just after the run = %q, %v; want its result \"v\"", v, err)
	}
}

// P5: a waiter in another process hears the outcome when it is published,
// not when the leader's 10s lease would have ended.
func TestFanout_waitersHearTheOutcomeAtOnce(t *testing.T) {
	a, b := newClient(t, newRedis(t), nil), newClient(t, newRedis(t), nil)
	k := key(t, "k")
	started, gate := make(chan struct{}), make(chan struct{})
	go a.Fanout(t.Context(), k, func(context.Context) ([]byte, error) {
		close(started)
		recvGo(t, gate, time.Minute, "the waiter to subscribe")
		return []byte("v"), nil
	})
	recv(t, started, 10*time.Second, "the leader's job to start")
	type outcome struct {
		v   []byte
		err error
		at  time.Time
	}
	got := make(chan outcome, 1)
	go func() {
		v, err := b.Fanout(t.Context(), k, func(context.Context) ([]byte, error) { return []byte("b ran"), nil })
		got <- outcome{v, err, time.Now()}
	}()
	waitFanSubscribers(t, k, 1)
	completed := time.Now()
	close(gate)
	o := recv(t, got, 15*time.Second, "the waiter's outcome")
	if o.err != nil || string(o.v) != "v" || o.at.Sub(completed) > 2*time.Second {
		t.Fatalf("waiter = %q, %v, %v after the completion; want \"v\" at once", o.v, o.err, o.at.Sub(completed))
	}
}

// flightCallers counts the callers attached to c's flight of key.
func flightCallers(c *Client, key string) int {
	c.fmu.Lock()
	f := c.flights[key]
	c.fmu.Unlock()
	if f == nil {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.callers)
}

// P9: when one of two callers waiting in a process leaves (its context
// cancelled), the flight goes on waiting for the other.
func TestFanout_oneWaiterLeavingLeavesTheOthersWaiting(t *testing.T) {
	a, b := newClient(t, newRedis(t), nil), newClient(t, newRedis(t), nil)
	k := key(t, "k")
	started, gate := make(chan struct{}), make(chan struct{})
	go a.Fanout(t.Context(), k, func(context.Context) ([]byte, error) {
		close(started)
		recvGo(t, gate, time.Minute, "the caller to leave")
		return []byte("v"), nil
	})
	recv(t, started, 10*time.Second, "the leader's job to start")
	job := func(context.Context) ([]byte, error) { return []byte("b ran"), nil }
	leaving, leave := context.WithCancel(t.Context())
	left, stayed := make(chan error, 1), make(chan pushOutcome, 1)
	go func() { _, err := b.Fanout(leaving, k, job); left <- err }()
	go func() {
		v, err := b.Fanout(t.Context(), k, job, WithTimeout(5*time.Second))
		stayed <- pushOutcome{v, err}
	}()
	waitFanSubscribers(t, k, 1)
	redistest.WaitFor(t, 5*time.Second, "both callers to attach", func(context.Context) bool { return flightCallers(b, k) == 2 })
	leave()
	if err := recv(t, left, 5*time.Second, "the leaving caller"); !errors.Is(err, context.Canceled) {
		t.Fatalf("leaving caller = %v; want context.Canceled", err)
	}
	close(gate)
	if o := recv(t, stayed, 10*time.Second, "the caller that stayed"); o.err != nil || string(o.b) != "v" {
		t.Fatalf("caller that stayed = %q, %v; want the leader's \"v\"", o.b, o.err)
	}
}

// A Push caller that is not the leader cannot take over when the leader
// steps down (it has no job to run): it waits on, until its timeout, and
// never takes the key's lead.
func TestPush_followersCannotTakeOver(t *testing.T) {
	rdb := newRedis(t)
	leads := &leadCounter{}
	a, b := newClient(t, newRedis(t), nil), newClient(t, newRedis(t), &Options{Observer: leads})
	k := key(t, "k")
	aDone := make(chan error, 1)
	if _, err := a.Push(t.Context(), k, func(_ []byte, err error) { aDone <- err }, WithTimeout(300*time.Millisecond)); err != nil {
		t.Fatalf("leader's Push = %v", err)
	}
	bDone := make(chan pushOutcome, 1)
	if _, err := b.Push(t.Context(), k, func(v []byte, err error) { bDone <- pushOutcome{v, err} }, WithTimeout(2*time.Second)); !errors.Is(err, ErrNotAcquired) {
		t.Fatalf("follower's Push = %v; want ErrNotAcquired", err)
	}
	// The leader never completes: at its timeout it steps down, and the
	// follower hears of it and joins again.
	if err := recv(t, aDone, 5*time.Second, "the leader's timeout"); !errors.Is(err, ErrTimeout) {
		t.Fatalf("leader's onDone = %v; want ErrTimeout", err)
	}
	if o := recv(t, bDone, 10*time.Second, "the follower's timeout"); !errors.Is(o.err, ErrTimeout) {
		t.Fatalf("follower's onDone = %q, %v; want ErrTimeout (it cannot run the job)", o.b, o.err)
	}
	if v, _ := rdb.Get(bg(), fanKey(mustTag(t, a, k))).Result(); !strings.HasPrefix(v, "0 -") {
		t.Fatalf("the key after both left = %q; want the leader's step-down, nobody leading", v)
	}
	if n := leads.n.Load(); n != 0 {
		t.Fatalf("the follower took the lead %d times; want never", n)
	}
}

// leadCounter counts the fanout leads (leases of KindFanout) a client took.
type leadCounter struct {
	BaseObserver
	n atomic.Int32
}

func (l *leadCounter) Acquired(_ context.Context, e AcquireEvent) {
	if e.Kind == KindFanout {
		l.n.Add(1)
	}
}

// Outages are named: a follower waiting on a leader in another process
// when Redis goes away gets an ErrUnavailable error that says Redis is
// unreachable, once its flight's joins have failed for OpTimeout, not at
// its own (much longer) timeout. A caller that chose WaitThroughOutages
// waits on, and gets the outcome once Redis is back.
func TestFanout_followersAreToldWhenRedisGoesAway(t *testing.T) {
	p := redistest.StartProxy(t, standaloneAddr(t))
	a := newClient(t, newRedis(t), nil)
	b := newClient(t, redisAt(t, p.Addr()), &Options{OpTimeout: time.Second})
	k := key(t, "k")
	started, gate := make(chan struct{}), make(chan struct{})
	go a.Fanout(t.Context(), k, func(context.Context) ([]byte, error) {
		close(started)
		recvGo(t, gate, time.Minute, "the outage to pass")
		return []byte("v"), nil
	})
	recv(t, started, 10*time.Second, "the leader's job to start")
	job := func(context.Context) ([]byte, error) { return []byte("b ran"), nil }
	told, waited := make(chan error, 1), make(chan pushOutcome, 1)
	go func() { _, err := b.Fanout(t.Context(), k, job, WithTimeout(time.Minute)); told <- err }()
	go func() {
		v, err := b.Fanout(t.Context(), k, job, WithTimeout(time.Minute), WaitThroughOutages())
		waited <- pushOutcome{v, err}
	}()
	waitFanSubscribers(t, k, 1)
	redistest.WaitFor(t, 5*time.Second, "both callers to attach", func(context.Context) bool { return flightCallers(b, k) == 2 })
	p.Cut()
	p.DropAll() // Redis is gone for b: its connections reset, new ones hang
	var err error
	d := elapsed(func() { err = recv(t, told, 30*time.Second, "the follower to be told") })
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "unreachable") || d > 3*time.Second {
		t.Fatalf("follower during the outage = %v after %v; want ErrUnavailable saying Redis is unreachable, after about OpTimeout (1s)", err, d)
	}
	p.Restore()
	close(gate)
	if o := recv(t, waited, 30*time.Second, "the caller that waited through the outage"); o.err != nil || string(o.b) != "v" {
		t.Fatalf("the caller that waited through the outage = %q, %v; want the leader's \"v\"", o.b, o.err)
	}
}
