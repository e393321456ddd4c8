// Package dlockotel exports dlock's events as OpenTelemetry metrics:
//
//	c, err := dlockrt.New(rdb, &dlockrt.Options{Observer: dlockotel.New(otel.GetMeterProvider())})
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
//	dlock.fanout.errors  counter        flights whose outcome was an error
//
// It lives in a module of its own, so that dlock's users who do not use
// OpenTelemetry do not inherit it.
package dlockotel

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	dlockrt "github.com/dlock-go/dlock/runtime"
)

type observer struct {
	wait, hold                     metric.Float64Histogram
	contention, extends, lost, err metric.Int64Counter
	runs                           metric.Int64Counter
	fanoutCallers                  metric.Int64Histogram
}

// New returns a dlockrt.Observer that records into mp's meter
// "github.com/dlock-go/dlock". Instruments that cannot be created are
// replaced by no-ops (OpenTelemetry reports such errors to its handler).
func New(mp metric.MeterProvider) dlockrt.Observer {
	m := mp.Meter("github.com/dlock-go/dlock")
	o := &observer{}
	o.wait, _ = m.Float64Histogram("dlock.acquire.wait", metric.WithUnit("s"), metric.WithDescription("Time from the call to the grant."))
	o.hold, _ = m.Float64Histogram("dlock.hold", metric.WithUnit("s"), metric.WithDescription("Time from the grant to the release."))
	o.contention, _ = m.Int64Counter("dlock.contention", metric.WithDescription("Calls that gave up because the key was held."))
	o.extends, _ = m.Int64Counter("dlock.lease.extends", metric.WithDescription("Lease renewals."))
	o.lost, _ = m.Int64Counter("dlock.lease.lost", metric.WithDescription("Leases lost before their release."))
	o.runs, _ = m.Int64Counter("dlock.fanout.runs", metric.WithDescription("Fanout flights, by role."))
	o.fanoutCallers, _ = m.Int64Histogram("dlock.fanout.callers", metric.WithDescription("Callers of this process that shared one flight."))
	o.err, _ = m.Int64Counter("dlock.fanout.errors", metric.WithDescription("Flights whose outcome was an error."))
	return o
}

func kind(k string) metric.MeasurementOption {
	return metric.WithAttributes(attribute.String("kind", k))
}

var ctx = context.Background()

func (o *observer) Acquired(k, _ string, wait time.Duration) {
	o.wait.Record(ctx, wait.Seconds(), kind(k))
}
func (o *observer) NotAcquired(k, _ string) { o.contention.Add(ctx, 1, kind(k)) }
func (o *observer) Released(k, _ string, held time.Duration) {
	o.hold.Record(ctx, held.Seconds(), kind(k))
}
func (o *observer) Extended(k, _ string)      { o.extends.Add(ctx, 1, kind(k)) }
func (o *observer) Lost(k, _ string, _ error) { o.lost.Add(ctx, 1, kind(k)) }

func (o *observer) FanoutDone(_ string, leader bool, callers int, err error) {
	role := "follower"
	if leader {
		role = "leader"
	}
	o.runs.Add(ctx, 1, metric.WithAttributes(attribute.String("role", role)))
	o.fanoutCallers.Record(ctx, int64(callers))
	if err != nil {
		o.err.Add(ctx, 1)
	}
}
