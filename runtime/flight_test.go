package dlockrt

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Every (state, event) pair of a flight: the next state, or no move. The
// table is flight's doc comment, written out again so that a change to
// one is a failure until the other agrees.
func TestFlight_transitions(t *testing.T) {
	const no = flightState(255)
	want := map[flightState]map[flightEvent]flightState{
		flightJoining:      {evWaits: flightWaiting, evLeads: flightLeading, evLateLead: flightJoining, evOutcome: flightEnded, evAbandon: no, evSteppedDown: no, evNotPublished: no, evLastGone: flightEnded},
		flightWaiting:      {evWaits: flightWaiting, evLeads: flightLeading, evLateLead: flightJoining, evOutcome: flightEnded, evAbandon: no, evSteppedDown: no, evNotPublished: no, evLastGone: flightEnded},
		flightLeading:      {evWaits: no, evLeads: no, evLateLead: no, evOutcome: flightEnded, evAbandon: flightSteppingDown, evSteppedDown: no, evNotPublished: flightJoining, evLastGone: no},
		flightSteppingDown: {evWaits: no, evLeads: no, evLateLead: no, evOutcome: flightEnded, evAbandon: no, evSteppedDown: flightJoining, evNotPublished: no, evLastGone: flightEnded},
		flightEnded:        {evWaits: no, evLeads: no, evLateLead: no, evOutcome: no, evAbandon: no, evSteppedDown: no, evNotPublished: no, evLastGone: no},
	}
	for s, evs := range want {
		for ev, next := range evs {
			got, ok := nextState(s, ev)
			if next == no {
				if ok || got != s {
					t.Errorf("nextState(%v, %d) = %v, %v; want no move", s, ev, got, ok)
				}
				continue
			}
			if !ok || got != next {
				t.Errorf("nextState(%v, %d) = %v, %v; want %v", s, ev, got, ok, next)
			}
		}
	}
}

// fakeFan is a fanoutRedis without Redis: joins answer as the test says
// (and may hold their reply), and every call is recorded.
type fakeFan struct {
	answer func(n int, gen string, mayLead bool) (joinReply, time.Duration) // the n-th join's reply, and how long it takes

	mu        sync.Mutex
	joins     int
	gaveBack  []string // generations given back (giveBack, release)
	completed []string // generations that completed
	subs      []*subscription
}

func (f *fakeFan) join(ctx context.Context, _, gen string, _ time.Duration, mayLead bool, _ string) (joinReply, error) {
	f.mu.Lock()
	f.joins++
	n := f.joins
	f.mu.Unlock()
	r, d := f.answer(n, gen, mayLead)
	select {
	case <-time.After(d):
		if ctx.Err() == nil {
			return r, nil
		}
	case <-ctx.Done():
	}
	// The caller left before the reply: as the client's join does, give
	// back what the join may have taken.
	f.giveBack(ctx, "", gen)
	return joinReply{}, unavailable(ctx.Err())
}

func (f *fakeFan) giveBack(_ context.Context, _, gen string) {
	f.mu.Lock()
	f.gaveBack = append(f.gaveBack, gen)
	f.mu.Unlock()
}

func (f *fakeFan) extend(context.Context, string, string, time.Duration) (bool, error) {
	return true, nil
}

func (f *fakeFan) release(ctx context.Context, tag, gen string) (int, int, error) {
	f.giveBack(ctx, tag, gen)
	return 1, 1, nil
}

func (f *fakeFan) complete(_ context.Context, _, gen string, _ []byte, _ bool) (bool, error) {
	f.mu.Lock()
	f.completed = append(f.completed, gen)
	f.mu.Unlock()
	return true, nil
}

func (f *fakeFan) subscribe(context.Context, string) (*subscription, error) {
	s := &subscription{C: make(chan notice, 4)}
	f.mu.Lock()
	f.subs = append(f.subs, s)
	f.mu.Unlock()
	return s, nil
}

func (f *fakeFan) counts() (joins, gaveBack, completed int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.joins, len(f.gaveBack), len(f.completed)
}

// fakeClient is a client whose fanouts talk to fan, not Redis.
func fakeClient(t *testing.T, fan *fakeFan, o *Options) *Client {
	t.Helper()
	if o == nil {
		o = &Options{}
	}
	o.Eviction = EvictionIgnore
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialed
	t.Cleanup(func() { rdb.Close() })
	c := newClient(t, rdb, o)
	c.fan = fan
	return c
}

// flightState of c's flight of key, or ended when it has none.
func stateOf(c *Client, key string) flightState {
	c.fmu.Lock()
	f := c.flights[key]
	c.fmu.Unlock()
	if f == nil {
		return flightEnded
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

var leads, waits = joinReply{state: 1}, joinReply{state: 0, pttl: 60000, leader: "another"}

// A lead whose reply came after its lease would have ended is given back,
// and the flight joins again as a new generation, which leads in time:
// one job runs, on the trusted lead.
func TestFlight_lateLeadIsGivenBackAndAskedAgain(t *testing.T) {
	ttl := 200 * time.Millisecond
	fan := &fakeFan{answer: func(n int, _ string, _ bool) (joinReply, time.Duration) {
		if n == 1 {
			return leads, ttl // the reply takes the whole lease
		}
		return leads, 0
	}}
	c := fakeClient(t, fan, &Options{TTL: ttl})
	runs := 0
	v, err := c.Fanout(t.Context(), "k", func(context.Context) ([]byte, error) { runs++; return []byte("v"), nil })
	if err != nil || string(v) != "v" || runs != 1 {
		t.Fatalf("Fanout = %q, %v after %d runs; want \"v\" from one run", v, err, runs)
	}
	if joins, gaveBack, _ := fan.counts(); joins != 2 || gaveBack != 1 {
		t.Fatalf("joins %d, leads given back %d; want 2 and the late one", joins, gaveBack)
	}
}

// Three late leads in a row fail the first join: a Push caller gets an
// ErrUnavailable error, and no job runs.
func TestFlight_threeLateLeadsFailTheFirstJoin(t *testing.T) {
	ttl := 100 * time.Millisecond
	fan := &fakeFan{answer: func(int, string, bool) (joinReply, time.Duration) { return leads, ttl }}
	c := fakeClient(t, fan, &Options{TTL: ttl})
	job, err := c.Push(t.Context(), "k", func([]byte, error) { t.Error("onDone of a Push that failed") }, WithTimeout(5*time.Second))
	if !errors.Is(err, ErrUnavailable) || job != nil {
		t.Fatalf("Push after three late leads = %v, %v; want ErrUnavailable", job, err)
	}
	if joins, gaveBack, _ := fan.counts(); joins != maxLateGrants || gaveBack != maxLateGrants {
		t.Fatalf("joins %d, given back %d; want %d each", joins, gaveBack, maxLateGrants)
	}
	if s := stateOf(c, "k"); s != flightEnded {
		t.Fatalf("flight state %v; want ended", s)
	}
}

// A leader whose job passes its timeout steps down: it gives its lease
// back and the flight's other caller joins again at once, leads, and runs
// the job.
func TestFlight_stepDownRejoinsAndTakesOver(t *testing.T) {
	fan := &fakeFan{answer: func(int, string, bool) (joinReply, time.Duration) { return leads, 0 }}
	c := fakeClient(t, fan, nil)
	started := make(chan struct{}, 2)
	var runs atomic.Int32
	job := func(ctx context.Context) ([]byte, error) {
		started <- struct{}{}
		if runs.Add(1) == 1 { // the first run never finishes in time
			<-ctx.Done()
			return nil, context.Cause(ctx)
		}
		return []byte("second"), nil
	}
	first := make(chan error, 1)
	go func() { _, err := c.Fanout(t.Context(), "k", job, WithTimeout(100*time.Millisecond)); first <- err }()
	recv(t, started, 5*time.Second, "the first run")
	if s := stateOf(c, "k"); s != flightLeading {
		t.Fatalf("flight state %v while its job runs; want leading", s)
	}
	v, err := c.Fanout(t.Context(), "k", job, WithTimeout(5*time.Second))
	if err != nil || string(v) != "second" {
		t.Fatalf("second caller = %q, %v; want the run after the step-down", v, err)
	}
	// The first caller's own timeout passed with its job's: it got
	// ErrTimeout, or the second run's outcome if that came first.
	if err := recv(t, first, 5*time.Second, "the first caller"); err != nil && !errors.Is(err, ErrTimeout) {
		t.Fatalf("first caller = %v; want ErrTimeout or the second run's outcome", err)
	}
	if joins, gaveBack, completed := fan.counts(); joins != 2 || gaveBack != 1 || completed != 1 {
		t.Fatalf("joins %d, given back %d, completed %d; want 2, 1, 1", joins, gaveBack, completed)
	}
}

// Close during a join that Redis never answers ends the flight: its
// callers get ErrClosed, within Close.
func TestFlight_closeDuringJoin(t *testing.T) {
	fan := &fakeFan{answer: func(int, string, bool) (joinReply, time.Duration) { return leads, time.Hour }}
	c := fakeClient(t, fan, &Options{OpTimeout: time.Minute})
	got := make(chan error, 1)
	go func() {
		_, err := c.Fanout(context.Background(), "k", func(context.Context) ([]byte, error) { return nil, nil })
		got <- err
	}()
	redistestWait(t, "the join to start", func() bool { j, _, _ := fan.counts(); return j == 1 })
	c.Close()
	if err := recv(t, got, 5*time.Second, "the caller after Close"); !errors.Is(err, ErrClosed) {
		t.Fatalf("caller = %v; want ErrClosed", err)
	}
	if s := stateOf(c, "k"); s != flightEnded {
		t.Fatalf("flight state %v; want ended", s)
	}
}

// A Push caller that leaves while the first join is out is detached at
// once (its onDone never runs, Push returns ErrUnavailable). When the join
// then makes the flight lead, nobody can run the job (the other caller
// attached meanwhile is a Push caller too): the lead is given back, and
// the flight joins again for its remaining caller.
func TestFlight_pushCallerLeavingDuringTheClaim(t *testing.T) {
	release := make(chan struct{})
	fan := &fakeFan{answer: func(n int, _ string, _ bool) (joinReply, time.Duration) {
		if n == 1 {
			<-release
			return leads, 0
		}
		return waits, 0
	}}
	c := fakeClient(t, fan, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	claimant := make(chan error, 1)
	go func() {
		job, err := c.Push(ctx, "k", func([]byte, error) { t.Error("onDone of the caller that left") })
		if job != nil {
			err = errors.New("got the job")
		}
		claimant <- err
	}()
	redistestWait(t, "the first join", func() bool { j, _, _ := fan.counts(); return j == 1 })
	other := make(chan pushOutcome, 1)
	if _, err := c.Push(t.Context(), "k", func(v []byte, err error) { other <- pushOutcome{v, err} }, WithTimeout(5*time.Second)); !errors.Is(err, ErrNotAcquired) {
		t.Fatalf("second Push = %v; want ErrNotAcquired (it attaches)", err)
	}
	if err := recv(t, claimant, 5*time.Second, "the first Push"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Push whose context ended during the join = %v; want ErrUnavailable", err)
	}
	close(release) // the join makes the flight lead; nobody here can run the job
	redistestWait(t, "the lead to be given back", func() bool { _, g, _ := fan.counts(); return g == 1 })
	redistestWait(t, "the flight to wait for another leader", func() bool { return stateOf(c, "k") == flightWaiting })
}

// A waiting flight whose last caller leaves ends: it stops talking to
// Redis and unsubscribes.
func TestFlight_lastCallerLeavingEndsAWaitingFlight(t *testing.T) {
	fan := &fakeFan{answer: func(int, string, bool) (joinReply, time.Duration) { return waits, 0 }}
	c := fakeClient(t, fan, nil)
	ctx, cancel := context.WithCancel(t.Context())
	got := make(chan error, 1)
	go func() {
		_, err := c.Fanout(ctx, "k", func(context.Context) ([]byte, error) { return nil, nil })
		got <- err
	}()
	redistestWait(t, "the flight to wait", func() bool { return stateOf(c, "k") == flightWaiting })
	cancel()
	if err := recv(t, got, 5*time.Second, "the caller"); !errors.Is(err, context.Canceled) {
		t.Fatalf("caller = %v; want context.Canceled", err)
	}
	redistestWait(t, "the flight to end", func() bool { return stateOf(c, "k") == flightEnded })
	joins, _, _ := fan.counts()
	time.Sleep(50 * time.Millisecond) // an ended flight joins no more
	if again, _, _ := fan.counts(); again != joins {
		t.Fatalf("joins went on after the flight ended: %d, then %d", joins, again)
	}
}

// A waiting flight takes the envelope of the generation it waits on from
// the channel; one of another generation makes it join again instead.
func TestFlight_waiterTakesOnlyItsGenerationsEnvelope(t *testing.T) {
	fan := &fakeFan{answer: func(int, string, bool) (joinReply, time.Duration) { return waits, 0 }}
	c := fakeClient(t, fan, nil)
	got := make(chan pushOutcome, 1)
	go func() {
		v, err := c.Fanout(t.Context(), "k", func(context.Context) ([]byte, error) { return nil, nil })
		got <- pushOutcome{v, err}
	}()
	redistestWait(t, "the subscription", func() bool { fan.mu.Lock(); defer fan.mu.Unlock(); return len(fan.subs) == 1 })
	sub := fan.subs[0]
	joins, _, _ := fan.counts()
	sub.C <- notice{payload: string(envelope{gen: "other", payload: []byte("not mine")}.encode())}
	redistestWait(t, "a join after another generation's envelope", func() bool { j, _, _ := fan.counts(); return j > joins })
	sub.C <- notice{payload: string(envelope{gen: "another", payload: []byte("mine")}.encode())}
	if o := recv(t, got, 5*time.Second, "the caller"); o.err != nil || string(o.b) != "mine" {
		t.Fatalf("caller = %q, %v; want the awaited generation's \"mine\"", o.b, o.err)
	}
}

// redistestWait polls cond every millisecond for up to 5s: for state that
// changes on another goroutine with no signal to wait on.
func redistestWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 5s waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
