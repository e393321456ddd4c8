package dlockotel

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/dlock-go/dlock/dlocktest"
	dlockrt "github.com/dlock-go/dlock/runtime"
)

// The instruments record what the runtime does, read back with the SDK's
// in-memory reader.
func TestObserver_recordsLocksAndFanouts(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	queued := make(chan struct{}, 1)
	c := dlocktest.NewClient(t, &dlockrt.Options{Observer: signalQueued{New(mp, tp), queued}})
	ctx, parent := tp.Tracer("test").Start(t.Context(), "request")

	l, err := c.Once(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Once(ctx, "k"); !errors.Is(err, dlockrt.ErrNotAcquired) {
		t.Fatalf("second Once = %v", err)
	}
	if err := l.Extend(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	l.Release(ctx)

	started, finish := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			c.Fanout(ctx, "f", func(ctx context.Context) ([]byte, error) {
				_, job := tp.Tracer("test").Start(ctx, "job")
				job.End()
				close(started)
				recvGo(t, finish, time.Minute, "the test to let the job finish")
				return []byte("v"), nil
			})
		})
		if i == 0 {
			recv(t, started, 10*time.Second, "the leader's job to start")
		}
	}
	close(finish)
	waitGroup(t, &wg, 30*time.Second, "the Fanout callers")

	parent.End()
	var acquired, refused, held int
	var fanouts []sdktrace.ReadOnlySpan
	var flight, job sdktrace.ReadOnlySpan
	for _, sp := range spans.Ended() {
		if sp.Parent().TraceID() != parent.SpanContext().TraceID() && sp.Name() != "request" {
			t.Errorf("span %s is not in the caller's trace", sp.Name())
		}
		switch {
		case sp.Name() == "dlock.acquire" && sp.Status().Code == codes.Error:
			refused++
		case sp.Name() == "dlock.acquire":
			acquired++
		case sp.Name() == "dlock.hold":
			held++
		case sp.Name() == "dlock.fanout":
			fanouts = append(fanouts, sp)
		case sp.Name() == "dlock.flight":
			flight = sp
		case sp.Name() == "job":
			job = sp
		}
	}
	if acquired != 2 || refused != 1 || held != 1 {
		t.Errorf("dlock.acquire spans: %d acquired, %d refused; dlock.hold spans: %d; want 2, 1, 1", acquired, refused, held)
	}
	if flight == nil || job == nil {
		t.Fatalf("dlock.flight span %v, job span %v; want both", flight, job)
	}
	if a := attrs(flight); a["dlock.fanout.role"] != "leader" || a["dlock.fanout.callers"] != "3" || flight.Status().Code == codes.Error ||
		flight.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("dlock.flight span: attributes %v, status %v, parent %v; want role leader, 3 callers, no error, the request's child", a, flight.Status(), flight.Parent())
	}
	if job.Parent().SpanID() != flight.SpanContext().SpanID() {
		t.Errorf("the job's span has parent %v; want the dlock.flight span %v", job.Parent(), flight.SpanContext())
	}
	if len(fanouts) != 3 {
		t.Fatalf("%d dlock.fanout spans; want 3 (one per caller)", len(fanouts))
	}
	for _, sp := range fanouts {
		if a := attrs(sp); a["dlock.fanout.role"] != "leader" || sp.Status().Code == codes.Error ||
			!linksTo(sp, flight) {
			t.Errorf("dlock.fanout span: attributes %v, status %v, links %v; want role leader, no error, a link to the flight", a, sp.Status(), sp.Links())
		}
	}

	// A semaphore waiter queues behind a holder.
	p, err := c.Semaphore("s", 1).Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() {
		p2, err := c.Semaphore("s", 1).Acquire(ctx)
		if err == nil {
			p2.Release(ctx)
		}
		second <- err
	}()
	recv(t, queued, 10*time.Second, "the second Acquire to queue")
	p.Release(ctx)
	if err := recv(t, second, 10*time.Second, "the second Acquire after the release"); err != nil {
		t.Fatal(err)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					got[m.Name] += p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					got[m.Name] += int64(p.Count)
				}
			case metricdata.Histogram[int64]:
				for _, p := range d.DataPoints {
					got[m.Name] += p.Sum
				}
			}
		}
	}
	want := map[string]int64{
		"dlock.acquire.wait":   4, // the lock, the fanout leader's lease, two permits
		"dlock.hold":           3, // the lock and two permits (the fanout lease ends by completion)
		"dlock.contention":     1,
		"dlock.lease.extends":  1,
		"dlock.fanout.runs":    1, // one flight in this process
		"dlock.fanout.callers": 3, // shared by three callers
	}
	if n := histogramCount(rm, "dlock.semaphore.queue"); n == 0 {
		t.Errorf("dlock.semaphore.queue recorded nothing")
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s = %d; want %d (all: %v)", name, got[name], w, got)
		}
	}
}

// A lease lost ends its hold span with an error, in the trace of the
// context it was acquired with; an error that came from another process's
// leader is counted as a follower's error, and its flight's span says so.
func TestObserver_recordsLossAndRemoteErrors(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	srv, err := dlocktest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	client := func(o *dlockrt.Options) *dlockrt.Client {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		t.Cleanup(func() { rdb.Close() })
		c, err := dlockrt.New(rdb, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	observed := client(&dlockrt.Options{Observer: New(mp, tp)})
	other := client(nil)
	ctx, parent := tp.Tracer("test").Start(t.Context(), "request")

	l, err := observed.Once(ctx, "k", dlockrt.WithWatchdog(false), dlockrt.WithTTL(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	recv(t, l.Done(), 10*time.Second, "the lease to be lost")

	started, finish := make(chan struct{}), make(chan struct{})
	leaderDone := make(chan struct{})
	go func() {
		defer close(leaderDone)
		other.Fanout(t.Context(), "f", func(context.Context) ([]byte, error) {
			close(started)
			recvGo(t, finish, time.Minute, "the test to let the job fail")
			return nil, errors.New("backend down")
		})
	}()
	recv(t, started, 10*time.Second, "the leader's job to start")
	followed := make(chan error, 1)
	go func() {
		_, err := observed.Fanout(ctx, "f", func(context.Context) ([]byte, error) {
			return nil, errors.New("follower ran the job")
		})
		followed <- err
	}()
	// The follower subscribes before it joins; whether its join lands
	// before or after the leader's completion, it gets the leader's error.
	waitFor(t, "the follower's subscription", func() bool { return len(srv.PubSubChannels("*")) > 0 })
	close(finish)
	recv(t, leaderDone, 30*time.Second, "the leader's Fanout to return")
	var remote *dlockrt.RemoteError
	if err := recv(t, followed, 30*time.Second, "the follower's Fanout to return"); !errors.As(err, &remote) {
		t.Fatalf("follower got %v; want a *RemoteError", err)
	}
	parent.End()

	var lost, fanout sdktrace.ReadOnlySpan
	for _, sp := range spans.Ended() {
		switch sp.Name() {
		case "dlock.hold":
			lost = sp
		case "dlock.fanout":
			fanout = sp
		}
	}
	if lost == nil || lost.Status().Code != codes.Error || lost.Parent().TraceID() != parent.SpanContext().TraceID() {
		t.Errorf("dlock.hold span of the lost lease = %v; want an error in the caller's trace", lost)
	}
	if fanout == nil || fanout.Status().Code != codes.Error || attrs(fanout)["dlock.fanout.role"] != "follower" || len(fanout.Links()) != 0 {
		t.Errorf("dlock.fanout span of the follower = %v; want an error, role follower, no link (the leader traces nothing)", fanout)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	if n := sumWith(rm, "dlock.lease.lost", "kind", "lock"); n != 1 {
		t.Errorf("dlock.lease.lost{kind=lock} = %d; want 1", n)
	}
	if n := sumWith(rm, "dlock.fanout.errors", "role", "follower"); n != 1 {
		t.Errorf("dlock.fanout.errors{role=follower} = %d; want 1", n)
	}
}

// linksTo reports whether sp's one link is to the span to.
func linksTo(sp, to sdktrace.ReadOnlySpan) bool {
	l := sp.Links()
	return len(l) == 1 && l[0].SpanContext.TraceID() == to.SpanContext().TraceID() && l[0].SpanContext.SpanID() == to.SpanContext().SpanID()
}

func attrs(sp sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, kv := range sp.Attributes() {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

// sumWith adds the points of counter name whose attribute k is v.
func sumWith(rm metricdata.ResourceMetrics, name, k, v string) int64 {
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if d, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == name {
				for _, p := range d.DataPoints {
					if got, ok := p.Attributes.Value(attribute.Key(k)); ok && got.Emit() == v {
						n += p.Value
					}
				}
			}
		}
	}
	return n
}

// waitFor waits until cond holds. When 5s pass first, it fails the test,
// naming what it awaited.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 5s waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// The tests' other waits are bounded too: a receive or a WaitGroup that
// takes longer than its bound (several times what it normally takes)
// fails the test, naming what it awaited.

// recv returns what ch delivers within d. When d passes first, it fails
// the test, naming what it awaited. Only the test's goroutine may call it.
func recv[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
	}
	t.Fatalf("timed out after %v waiting for %s", d, what)
	var zero T
	return zero
}

// recvGo is recv for the goroutines a test starts, which must not call
// t.Fatalf: when d passes first, it reports the timeout with t.Errorf;
// when the test ends first (its Context is done), it reports nothing.
// Either way it returns ok false.
func recvGo[T any](t testing.TB, ch <-chan T, d time.Duration, what string) (v T, ok bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v = <-ch:
		return v, true
	case <-t.Context().Done():
	case <-timer.C:
		t.Errorf("timed out after %v waiting for %s", d, what)
	}
	return v, false
}

// waitGroup waits for wg within d. When d passes first, it fails the test,
// naming what it awaited, and leaves the goroutines running. Only the
// test's goroutine may call it.
func waitGroup(t testing.TB, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	recv(t, done, d, what)
}

func histogramCount(rm metricdata.ResourceMetrics, name string) uint64 {
	var n uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if h, ok := m.Data.(metricdata.Histogram[int64]); ok && m.Name == name {
				for _, p := range h.DataPoints {
					n += p.Count
				}
			}
		}
	}
	return n
}

// signalQueued tells the test when a semaphore waiter has queued.
type signalQueued struct {
	dlockrt.Observer
	queued chan struct{}
}

// StartFlight and EndFlight forward to the wrapped observer: a wrapper
// that drops them drops the flights' spans and their trace context.
func (s signalQueued) StartFlight(ctx context.Context, e dlockrt.FlightEvent) (context.Context, string) {
	return s.Observer.(dlockrt.FlightTracer).StartFlight(ctx, e)
}

func (s signalQueued) EndFlight(ctx context.Context, e dlockrt.FlightEndEvent) {
	s.Observer.(dlockrt.FlightTracer).EndFlight(ctx, e)
}

func (s signalQueued) Queued(ctx context.Context, e dlockrt.QueueEvent) {
	s.Observer.Queued(ctx, e)
	select {
	case s.queued <- struct{}{}:
	default:
	}
}

// Every dlock.flight span ends, with an error status when its callers all
// left first (the job outlived its caller's timeout); a client without a
// TracerProvider, called from a traced client's job, leaves that job's
// flight span alone.
func TestObserver_flightSpansEnd(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	a := dlocktest.NewClient(t, &dlockrt.Options{Observer: New(noop.NewMeterProvider(), tp)})
	untraced := dlocktest.NewClient(t, &dlockrt.Options{Observer: New(noop.NewMeterProvider(), nil)})
	jobDone := make(chan struct{})
	_, err := a.Fanout(t.Context(), "slow", func(ctx context.Context) ([]byte, error) {
		defer close(jobDone)
		<-ctx.Done()
		return nil, ctx.Err()
	}, dlockrt.WithTimeout(100*time.Millisecond))
	if !errors.Is(err, dlockrt.ErrTimeout) {
		t.Fatalf("caller = %v; want ErrTimeout", err)
	}
	recv(t, jobDone, 10*time.Second, "the job to end")

	flightsEnded := func() (n int) {
		for _, sp := range spans.Ended() {
			if sp.Name() == "dlock.flight" {
				n++
			}
		}
		return n
	}
	waitFor(t, "the abandoned flight's span to end", func() bool { return flightsEnded() == 1 })
	inner, outer, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		_, err := a.Fanout(t.Context(), "outer", func(ctx context.Context) ([]byte, error) {
			untraced.Fanout(ctx, "inner", func(context.Context) ([]byte, error) { return nil, nil })
			close(inner)
			recvGo(t, outer, 10*time.Second, "the test to look at the outer flight's span")
			return []byte("v"), nil
		})
		done <- err
	}()
	recv(t, inner, 10*time.Second, "the untraced client's fanout in the job")
	if n := flightsEnded(); n != 1 {
		t.Errorf("%d dlock.flight spans ended while the outer job runs; want 1 (the untraced client ended the outer's)", n)
	}
	close(outer)
	if err := recv(t, done, 10*time.Second, "the outer Fanout"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both flights' spans to end", func() bool { return flightsEnded() == 2 })
	for _, sp := range spans.Ended() {
		if sp.Name() == "dlock.flight" && attrs(sp)["dlock.fanout.callers"] == "0" && sp.Status().Code != codes.Error {
			t.Errorf("the abandoned flight's span has status %v; want an error", sp.Status())
		}
	}
}
