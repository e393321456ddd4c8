// Package dlockotel exports dlock's events as OpenTelemetry metrics and
// spans:
//
//	obs := dlockotel.New(otel.GetMeterProvider(), otel.GetTracerProvider())
//	c, err := dlockrt.New(rdb, &dlockrt.Options{Observer: obs})
//
// Spans (with a nil TracerProvider, none), in the caller's trace:
//
//	dlock.acquire  from the call to the grant; a call that gave up because
//	               others held the key ends it with an error status
//	dlock.hold     from the grant to the release, or to the loss of the
//	               lease (error status, with the reason)
//	dlock.fanout   one caller of Fanout (or one Push), from its call to
//	               its return, in that caller's trace; attribute
//	               "dlock.fanout.role" (leader: its outcome came from this
//	               process's run); error status when it returned an error;
//	               a link to the dlock.flight span that ran the job, in
//	               whichever process that was
//	dlock.flight   one flight of this process (the callers of one key that
//	               share one wait or one run), from its first local caller's
//	               call to the delivery of the outcome (or, when every caller
//	               left first, to the end of the flight: error status), as a
//	               child of that caller's span; the job runs in it, so its
//	               spans are the flight's children; attributes
//	               "dlock.fanout.role" and "dlock.fanout.callers"; error
//	               status when the outcome is an error
//
// The dlock.flight span's context (W3C traceparent) travels in the id of
// every generation the flight leads: in Redis and in the outcome every
// waiter receives. So a waiter's dlock.fanout span links to the run it
// waited for across processes; `dlock inspect` prints it as the leader's
// trace. Processes of dlock before 0.4, and without a TracerProvider,
// carry no trace context (their waiters' spans have no link).
//
// Every span has attribute "dlock.kind" (lock, multi, semaphore, fanout).
// Keys and results are never attributes.
//
// Instruments (attribute "kind": lock, multi, semaphore, fanout; keys are
// never attributes, since they may carry user data):
//
//	dlock.acquire.wait   histogram, s   time from the call to the grant
//	dlock.hold           histogram, s   time from the grant to the release
//	dlock.contention     counter        calls that gave up because the key was held
//	dlock.lease.extends  counter        lease renewals
//	dlock.lease.lost     counter        leases lost before their release
//	dlock.fanout.runs    counter        fanout flights, with "role": leader or follower
//	dlock.fanout.callers histogram      callers of this process that shared one flight
//	dlock.fanout.errors  counter        flights whose outcome was an error, with "role"
//	                                    (follower: an error that came from another process)
//	dlock.semaphore.queue histogram     queue length a semaphore waiter found
//	dlock.dropped        counter        malformed or oversize messages and values read
//	                                    from Redis, ignored
//
// Gauges(mp, client) adds what a client holds and waits for now:
// dlock.leases.held (with "kind"), dlock.flights (with "state"),
// dlock.lock.waiters, dlock.semaphore.waiters and
// dlock.semaphore.queue.depth.
//
// It lives in a module of its own, so that dlock's users who do not use
// OpenTelemetry do not inherit it.
package dlockotel

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	dlockrt "github.com/dlock-go/dlock/runtime"
)

type observer struct {
	dlockrt.BaseObserver                        // events added later are no-ops
	tracer                         trace.Tracer // nil: no spans
	wait, hold                     metric.Float64Histogram
	contention, extends, lost, err metric.Int64Counter
	runs, dropped                  metric.Int64Counter
	fanoutCallers, queue           metric.Int64Histogram
}

// New returns a dlockrt.Observer that records into mp's meter and tp's
// tracer, both named "github.com/dlock-go/dlock"; tp may be nil. Instruments
// that cannot be created are replaced by no-ops (OpenTelemetry reports such
// errors to its handler).
func New(mp metric.MeterProvider, tp trace.TracerProvider) dlockrt.Observer {
	m := mp.Meter(scope)
	o := &observer{}
	if tp != nil {
		o.tracer = tp.Tracer(scope)
	}
	o.wait, _ = m.Float64Histogram("dlock.acquire.wait", metric.WithUnit("s"), metric.WithDescription("Time from the call to the grant."))
	o.hold, _ = m.Float64Histogram("dlock.hold", metric.WithUnit("s"), metric.WithDescription("Time from the grant to the release."))
	o.contention, _ = m.Int64Counter("dlock.contention", metric.WithDescription("Calls that gave up because the key was held."))
	o.extends, _ = m.Int64Counter("dlock.lease.extends", metric.WithDescription("Lease renewals."))
	o.lost, _ = m.Int64Counter("dlock.lease.lost", metric.WithDescription("Leases lost before their release."))
	o.runs, _ = m.Int64Counter("dlock.fanout.runs", metric.WithDescription("Fanout flights, by role."))
	o.dropped, _ = m.Int64Counter("dlock.dropped", metric.WithDescription("Malformed or oversize messages and values read from Redis, ignored."))
	o.fanoutCallers, _ = m.Int64Histogram("dlock.fanout.callers", metric.WithDescription("Callers of this process that shared one flight."))
	o.queue, _ = m.Int64Histogram("dlock.semaphore.queue", metric.WithDescription("Queue length a semaphore waiter found."))
	o.err, _ = m.Int64Counter("dlock.fanout.errors", metric.WithDescription("Flights whose outcome was an error."))
	return o
}

const scope = "github.com/dlock-go/dlock"

func kind(k dlockrt.Kind) metric.MeasurementOption {
	return metric.WithAttributes(attribute.String("kind", string(k)))
}

// span records a finished span of the caller's trace, from start to now.
func (o *observer) span(ctx context.Context, name string, k dlockrt.Kind, start time.Time, failed string, attrs ...attribute.KeyValue) {
	if o.tracer == nil {
		return
	}
	_, sp := o.tracer.Start(ctx, name, trace.WithTimestamp(start),
		trace.WithAttributes(append(attrs, attribute.String("dlock.kind", string(k)))...))
	if failed != "" {
		sp.SetStatus(codes.Error, failed)
	}
	sp.End()
}

func (o *observer) Acquired(ctx context.Context, e dlockrt.AcquireEvent) {
	o.wait.Record(ctx, e.Wait.Seconds(), kind(e.Kind))
	o.span(ctx, "dlock.acquire", e.Kind, time.Now().Add(-e.Wait), "")
}

func (o *observer) NotAcquired(ctx context.Context, e dlockrt.NotAcquiredEvent) {
	o.contention.Add(ctx, 1, kind(e.Kind))
	o.span(ctx, "dlock.acquire", e.Kind, time.Now(), "not acquired: held by others")
}

func (o *observer) Released(ctx context.Context, e dlockrt.ReleaseEvent) {
	o.hold.Record(ctx, time.Since(e.Acquired).Seconds(), kind(e.Kind))
	o.span(ctx, "dlock.hold", e.Kind, e.Acquired, "")
}

func (o *observer) Extended(ctx context.Context, e dlockrt.ExtendEvent) {
	o.extends.Add(ctx, 1, kind(e.Kind))
}

func (o *observer) Lost(ctx context.Context, e dlockrt.LostEvent) {
	o.lost.Add(ctx, 1, kind(e.Kind))
	o.span(ctx, "dlock.hold", e.Kind, e.Acquired, "lease lost: "+e.Err.Error())
}

func (o *observer) Queued(ctx context.Context, e dlockrt.QueueEvent) {
	o.queue.Record(ctx, int64(e.Waiters))
}

func role(leader bool) string {
	if leader {
		return "leader"
	}
	return "follower"
}

// flightSpan marks a context whose span is a dlock.flight this observer
// started, for FanoutDone to end.
type flightSpan struct{}

// StartFlight starts the flight's dlock.flight span, a child of its first
// caller's, and returns its traceparent for the runtime to carry.
func (o *observer) StartFlight(ctx context.Context, e dlockrt.FlightEvent) (context.Context, string) {
	if o.tracer == nil {
		return ctx, ""
	}
	ctx, sp := o.tracer.Start(ctx, "dlock.flight", trace.WithAttributes(attribute.String("dlock.kind", string(dlockrt.KindFanout))))
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	return context.WithValue(ctx, flightSpan{}, sp), carrier.Get("traceparent")
}

// EndFlight ends the flight's dlock.flight span.
func (o *observer) EndFlight(ctx context.Context, e dlockrt.FlightEndEvent) {
	if o.tracer == nil {
		return // StartFlight started nothing; a span in ctx is another client's
	}
	sp, ok := ctx.Value(flightSpan{}).(trace.Span)
	if !ok {
		return
	}
	sp.SetAttributes(attribute.String("dlock.fanout.role", role(e.Leader)), attribute.Int("dlock.fanout.callers", e.Callers))
	switch {
	case !e.Delivered:
		sp.SetStatus(codes.Error, "ended without an outcome: every caller left")
	case e.Err != nil:
		sp.SetStatus(codes.Error, e.Err.Error())
	}
	sp.End()
}

func (o *observer) FanoutDone(ctx context.Context, e dlockrt.FanoutEvent) {
	byRole := metric.WithAttributes(attribute.String("role", role(e.Leader)))
	o.runs.Add(ctx, 1, byRole)
	o.fanoutCallers.Record(ctx, int64(e.Callers))
	if e.Err != nil {
		o.err.Add(ctx, 1, byRole)
	}
}

func (o *observer) FanoutReturned(ctx context.Context, e dlockrt.FanoutCallEvent) {
	if o.tracer == nil {
		return
	}
	opts := []trace.SpanStartOption{trace.WithTimestamp(e.Start), trace.WithAttributes(
		attribute.String("dlock.kind", string(dlockrt.KindFanout)), attribute.String("dlock.fanout.role", role(e.Leader)))}
	if run := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(),
		propagation.MapCarrier{"traceparent": e.Run})); run.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: run}))
	}
	_, sp := o.tracer.Start(ctx, "dlock.fanout", opts...)
	if e.Err != nil {
		sp.SetStatus(codes.Error, e.Err.Error())
	}
	sp.End()
}

func (o *observer) Dropped(ctx context.Context, e dlockrt.DropEvent) {
	o.dropped.Add(ctx, 1, kind(e.Kind))
}
