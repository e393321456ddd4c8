package dlockrt

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
)

// tracingObserver is a FlightTracer that gives each flight a traceparent
// of its own trace id and records every caller's FanoutReturned.
type tracingObserver struct {
	BaseObserver
	traceID string // 32 hex digits

	mu      sync.Mutex
	flights int
	ends    map[string]int // EndFlight calls per flight (its traceparent)
	endings []FlightEndEvent
	calls   []tracedCall
	done    []context.Context // FanoutDone's contexts
}

func (o *tracingObserver) EndFlight(ctx context.Context, e FlightEndEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ends == nil {
		o.ends = map[string]int{}
	}
	o.ends[ctx.Value(flightKey{}).(string)]++
	o.endings = append(o.endings, e)
}

// ended reports whether every flight started has ended, and fails the
// test when one ended twice.
func (o *tracingObserver) ended(t *testing.T) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for tp, n := range o.ends {
		if n != 1 {
			t.Errorf("flight %s ended %d times", tp, n)
		}
	}
	return len(o.ends) == o.flights
}

type tracedCall struct {
	caller any // the caller's context value of callerKey
	e      FanoutCallEvent
}

type callerKey struct{}

type flightKey struct{}

func (o *tracingObserver) StartFlight(ctx context.Context, e FlightEvent) (context.Context, string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.flights++
	tp := fmt.Sprintf("00-%s-%016x-01", o.traceID, o.flights)
	return context.WithValue(ctx, flightKey{}, tp), tp
}

func (o *tracingObserver) FanoutReturned(ctx context.Context, e FanoutCallEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, tracedCall{ctx.Value(callerKey{}), e})
}

func (o *tracingObserver) FanoutDone(ctx context.Context, e FanoutEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.done = append(o.done, ctx)
}

func (o *tracingObserver) returned() []tracedCall {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]tracedCall(nil), o.calls...)
}

// P35: every caller, in every process, learns the trace context of the
// flight that ran the job it got the outcome of (each in its own context),
// the job runs in its flight's context, and Inspect shows the leader's
// trace; a client without a FlightTracer shares the key with one, its ids
// carrying no trace context.
func TestFanout_callersLearnTheRunsTrace(t *testing.T) {
	rdb := newRedis(t)
	oa := &tracingObserver{traceID: strings.Repeat("a", 32)}
	ob := &tracingObserver{traceID: strings.Repeat("b", 32)}
	a := newClient(t, rdb, &Options{Observer: oa})
	b := newClient(t, rdb, &Options{Observer: ob})
	plain := newClient(t, rdb, nil)
	k := key(t, "f")
	leaderTrace := "00-" + oa.traceID + "-0000000000000001-01"

	started, finish := make(chan context.Context, 1), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		ctx := context.WithValue(t.Context(), callerKey{}, "a1")
		v, err := a.Fanout(ctx, k, func(ctx context.Context) ([]byte, error) {
			started <- ctx
			recvGo(t, finish, time.Minute, "the test to let the job finish")
			return []byte("v"), nil
		})
		if err != nil || string(v) != "v" {
			t.Errorf("leader = %q, %v", v, err)
		}
	})
	jobCtx := recv(t, started, 10*time.Second, "the leader's job to start")
	if jobCtx.Value(callerKey{}) != "a1" || jobCtx.Value(flightKey{}) != leaderTrace {
		t.Errorf("the job's context carries %v and %v; want its first caller's value and its flight's trace",
			jobCtx.Value(callerKey{}), jobCtx.Value(flightKey{}))
	}
	st, err := plain.Inspect(t.Context(), k)
	if err != nil || st.Fanout == nil || st.Fanout.Trace != leaderTrace || st.Fanout.Leader.PID == 0 {
		t.Fatalf("Inspect during the run = %+v, %v; want led by a's flight, trace %s", st.Fanout, err, leaderTrace)
	}
	for _, who := range []string{"b1", "b2"} {
		wg.Go(func() {
			ctx := context.WithValue(t.Context(), callerKey{}, who)
			if v, err := b.Fanout(ctx, k, func(context.Context) ([]byte, error) { return []byte("b ran"), nil }); err != nil || string(v) != "v" {
				t.Errorf("follower %s = %q, %v", who, v, err)
			}
		})
	}
	redistest.WaitFor(t, 5*time.Second, "both of b's callers to wait", func(context.Context) bool {
		s := b.Snapshot()
		return len(s.Flights) == 1 && s.Flights[0].State == "waiting" && s.Flights[0].Callers == 2
	})
	close(finish)
	waitGroup(t, &wg, 30*time.Second, "the callers")

	got := map[any]FanoutCallEvent{}
	for _, c := range append(oa.returned(), ob.returned()...) {
		got[c.caller] = c.e
	}
	want := map[any]bool{"a1": true, "b1": false, "b2": false} // caller: its outcome came from its own process
	if len(got) != len(want) {
		t.Fatalf("FanoutReturned for %v; want one for each of a1, b1, b2", got)
	}
	for who, leader := range want {
		e := got[who]
		if e.Key != k || e.Run != leaderTrace || e.Leader != leader || e.Err != nil || e.Start.IsZero() {
			t.Errorf("%s's FanoutReturned = %+v; want key %s, run %s, leader %v, no error", who, e, k, leaderTrace, leader)
		}
	}
	if len(ob.done) != 1 || ob.done[0].Value(flightKey{}) != "00-"+ob.traceID+"-0000000000000001-01" {
		t.Errorf("b's FanoutDone contexts %v; want its one flight's", ob.done)
	}

	// A client without a FlightTracer leads: its generation carries no
	// trace, and a traced follower learns none.
	k2 := key(t, "plain")
	started2, finish2 := make(chan struct{}), make(chan struct{})
	wg.Go(func() {
		plain.Fanout(t.Context(), k2, func(context.Context) ([]byte, error) {
			close(started2)
			recvGo(t, finish2, time.Minute, "the test to let the job finish")
			return []byte("p"), nil
		})
	})
	recv(t, started2, 10*time.Second, "the plain leader's job to start")
	st, err = plain.Inspect(t.Context(), k2)
	if err != nil || st.Fanout == nil || st.Fanout.Trace != "" || strings.Count(st.Fanout.Generation, "|") != 4 {
		t.Fatalf("Inspect of a plain leader = %+v, %v; want an id of 5 parts, no trace", st.Fanout, err)
	}
	wg.Go(func() {
		ctx := context.WithValue(t.Context(), callerKey{}, "b3")
		if v, err := b.Fanout(ctx, k2, func(context.Context) ([]byte, error) { return []byte("b ran"), nil }); err != nil || string(v) != "p" {
			t.Errorf("b's follower of a plain leader = %q, %v", v, err)
		}
	})
	redistest.WaitFor(t, 5*time.Second, "b's caller to wait", func(context.Context) bool {
		s := b.Snapshot()
		return len(s.Flights) == 1 && s.Flights[0].State == "waiting"
	})
	close(finish2)
	waitGroup(t, &wg, 30*time.Second, "the callers")
	for _, c := range ob.returned() {
		if c.caller == "b3" && (c.e.Run != "" || c.e.Err != nil) {
			t.Errorf("b3's FanoutReturned = %+v; want no run trace (the leader traces nothing)", c.e)
		}
	}
}

// A caller that gives up (its timeout) is told so, with the trace of the
// run it waited for.
func TestFanout_callerGivingUpLearnsTheAwaitedTrace(t *testing.T) {
	rdb := newRedis(t)
	oa := &tracingObserver{traceID: strings.Repeat("c", 32)}
	ob := &tracingObserver{traceID: strings.Repeat("d", 32)}
	a := newClient(t, rdb, &Options{Observer: oa})
	b := newClient(t, rdb, &Options{Observer: ob})
	k := key(t, "f")
	started, finish := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		a.Fanout(t.Context(), k, func(context.Context) ([]byte, error) {
			close(started)
			recvGo(t, finish, time.Minute, "the test to let the job finish")
			return []byte("v"), nil
		})
	})
	recv(t, started, 10*time.Second, "the leader's job to start")
	_, err := b.Fanout(context.WithValue(t.Context(), callerKey{}, "b1"), k,
		func(context.Context) ([]byte, error) { return nil, nil }, WithTimeout(300*time.Millisecond))
	close(finish)
	waitGroup(t, &wg, 30*time.Second, "the leader")
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("follower = %v; want ErrTimeout", err)
	}
	calls := ob.returned()
	if len(calls) != 1 || calls[0].caller != "b1" || !errors.Is(calls[0].e.Err, ErrTimeout) ||
		calls[0].e.Run != "00-"+oa.traceID+"-0000000000000001-01" || calls[0].e.Leader {
		t.Fatalf("b's FanoutReturned = %+v; want b1's timeout, with the run of a's flight", calls)
	}
}

// A generation's id with the longest identity and a trace context fits
// the 256 bytes every envelope decoder since 0.2 allows for it, and a
// malformed traceparent is carried as none.
func TestOwnerID_traceContext(t *testing.T) {
	rdb := newRedis(t)
	c := newClient(t, rdb, &Options{Name: strings.Repeat("n", 100)})
	c.idSuffix = "|" + strings.Repeat("n", maxNameLen) + "|" + strings.Repeat("h", maxHostLen) + "|4194304|"
	tp := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	gen := c.newOwnerID() + traceField(tp)
	if len(gen) > 216 {
		t.Errorf("a generation's id is %d bytes; want at most 216", len(gen))
	}
	env, err := decodeEnvelope(string(envelope{gen: gen, payload: []byte("v")}.encode()), 1<<20)
	if err != nil || env.gen != gen {
		t.Fatalf("decode of an envelope of %s = %v; want it whole", gen, err)
	}
	id, ok := parseOwnerID(gen)
	if !ok || id.PID != 4194304 || traceOf(gen) != tp {
		t.Errorf("parseOwnerID(%s) = %+v, %v, trace %q", gen, id, ok, traceOf(gen))
	}
	for _, bad := range []string{"", "00-x", strings.ToUpper(tp), "ff" + tp[2:], tp + "|x", strings.Replace(tp, "-", "_", 1), tp[:54]} {
		if f := traceField(bad); f != "" {
			t.Errorf("traceField(%q) = %q; want none", bad, f)
		}
	}
	if traceOf(c.newOwnerID()) != "" {
		t.Errorf("an id without a trace has one")
	}
}

// Every flight a FlightTracer started is ended once, with or without an
// outcome: when its callers time out waiting for another process, when
// its job outlives its only caller, and when callers leave before Redis
// ever answered (a paused server).
func TestFlightTracer_everyFlightEndsOnce(t *testing.T) {
	waitEnded := func(t *testing.T, o *tracingObserver) {
		redistest.WaitFor(t, 10*time.Second, "every flight to end", func(context.Context) bool { return o.ended(t) })
	}
	t.Run("follower times out", func(t *testing.T) {
		rdb := newRedis(t)
		a := newClient(t, rdb, nil)
		o := &tracingObserver{traceID: strings.Repeat("1", 32)}
		b := newClient(t, rdb, &Options{Observer: o})
		k := key(t, "f")
		started, finish := make(chan struct{}), make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			a.Fanout(t.Context(), k, func(context.Context) ([]byte, error) {
				close(started)
				recvGo(t, finish, time.Minute, "the test to let the job finish")
				return []byte("v"), nil
			})
		})
		recv(t, started, 10*time.Second, "the leader's job to start")
		_, err := b.Fanout(t.Context(), k, func(context.Context) ([]byte, error) { return nil, nil }, WithTimeout(200*time.Millisecond))
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("follower = %v; want ErrTimeout", err)
		}
		waitEnded(t, o)
		close(finish)
		waitGroup(t, &wg, 30*time.Second, "the leader")
		if e := o.endings; len(e) != 1 || e[0].Delivered || e[0].Leader || e[0].Key != k {
			t.Errorf("EndFlight %+v; want one, undelivered, not leading", e)
		}
	})
	t.Run("job outlives its caller", func(t *testing.T) {
		o := &tracingObserver{traceID: strings.Repeat("2", 32)}
		c := newClient(t, newRedis(t), &Options{Observer: o})
		jobDone := make(chan struct{})
		_, err := c.Fanout(t.Context(), key(t, "f"), func(ctx context.Context) ([]byte, error) {
			defer close(jobDone)
			<-ctx.Done()
			return nil, ctx.Err()
		}, WithTimeout(200*time.Millisecond))
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("caller = %v; want ErrTimeout", err)
		}
		recv(t, jobDone, 10*time.Second, "the job to end")
		waitEnded(t, o)
		if e := o.endings; len(e) != 1 || e[0].Delivered || !e[0].Leader {
			t.Errorf("EndFlight %+v; want one, undelivered, leading", e)
		}
	})
	for _, push := range []bool{false, true} {
		t.Run(fmt.Sprintf("caller leaves before an answer, push %v", push), func(t *testing.T) {
			srv := redistest.StartServer(t)
			rdb := srv.Client()
			t.Cleanup(func() { rdb.Close() })
			o := &tracingObserver{traceID: strings.Repeat("3", 32)}
			c := newClient(t, rdb, &Options{Observer: o, OpTimeout: 300 * time.Millisecond})
			srv.Pause()
			t.Cleanup(srv.Resume)
			ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			defer cancel()
			var err error
			if push {
				_, err = c.Push(ctx, "k", func([]byte, error) { t.Errorf("onDone of a Push that returned an error") })
			} else {
				_, err = c.Fanout(ctx, "k", func(context.Context) ([]byte, error) { return nil, nil })
			}
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("call = %v; want ErrUnavailable", err)
			}
			waitEnded(t, o)
			if calls := o.returned(); !push && (len(calls) != 1 || !errors.Is(calls[0].e.Err, ErrUnavailable)) {
				t.Errorf("FanoutReturned %+v; want one, with the ErrUnavailable Fanout returned", calls)
			}
		})
	}
}

// A job's context carries its first caller's values, but not the fencing
// token of a lock that caller holds: the job holds no lock.
func TestFanout_jobHasNoCallersToken(t *testing.T) {
	c := newClient(t, newRedis(t), nil)
	l, err := c.Lock(t.Context(), key(t, "l"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(bg())
	lctx, cancel := l.Context(context.WithValue(t.Context(), callerKey{}, "c"))
	defer cancel()
	if _, ok := TokenFromContext(lctx); !ok {
		t.Fatal("the lock's context has no token")
	}
	var tokenSeen bool
	var value any
	if _, err := c.Fanout(lctx, key(t, "f"), func(ctx context.Context) ([]byte, error) {
		_, tokenSeen = TokenFromContext(ctx)
		value = ctx.Value(callerKey{})
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if tokenSeen || value != "c" {
		t.Errorf("the job's context: token %v, caller's value %v; want no token, the value", tokenSeen, value)
	}
}
