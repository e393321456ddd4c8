package dlockotel

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	dlockrt "github.com/dlock-go/dlock/runtime"
)

// Gauges registers observable gauges of what client c holds and waits for
// now (read from c.Snapshot at each collection, so they cost nothing
// between collections):
//
//	dlock.leases.held     leases held, with "kind" (lock, multi, semaphore, fanout)
//	dlock.flights         fanout flights in progress, with "state" (joining,
//	                      waiting, leading, stepping down)
//	dlock.lock.waiters    callers waiting for a lock in this process
//	dlock.semaphore.waiters  callers of this process queued for a permit
//	dlock.semaphore.queue.depth  the longest semaphore queue (all processes'
//	                      waiters) one of them found at its last look; 0 when
//	                      none waits
//
// Unregister the returned registration when the client closes.
func Gauges(mp metric.MeterProvider, c *dlockrt.Client) (metric.Registration, error) {
	m := mp.Meter(scope)
	held, err := m.Int64ObservableGauge("dlock.leases.held", metric.WithDescription("Leases this client holds now."))
	if err != nil {
		return nil, err
	}
	flights, err := m.Int64ObservableGauge("dlock.flights", metric.WithDescription("Fanout flights of this client in progress."))
	if err != nil {
		return nil, err
	}
	waiters, err := m.Int64ObservableGauge("dlock.lock.waiters", metric.WithDescription("Callers of this client waiting for a lock."))
	if err != nil {
		return nil, err
	}
	semWaiters, err := m.Int64ObservableGauge("dlock.semaphore.waiters", metric.WithDescription("Callers of this client queued for a permit."))
	if err != nil {
		return nil, err
	}
	depth, err := m.Int64ObservableGauge("dlock.semaphore.queue.depth", metric.WithDescription("The longest semaphore queue a waiter of this client found."))
	if err != nil {
		return nil, err
	}
	return m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := c.Snapshot()
		kinds := map[dlockrt.Kind]int64{dlockrt.KindLock: 0, dlockrt.KindMulti: 0, dlockrt.KindSemaphore: 0, dlockrt.KindFanout: 0}
		for _, l := range s.Leases {
			kinds[l.Kind]++
		}
		for k, n := range kinds {
			o.ObserveInt64(held, n, metric.WithAttributes(attribute.String("kind", string(k))))
		}
		states := map[string]int64{"joining": 0, "waiting": 0, "leading": 0, "stepping down": 0}
		for _, f := range s.Flights {
			states[f.State]++
		}
		for st, n := range states {
			o.ObserveInt64(flights, n, metric.WithAttributes(attribute.String("state", st)))
		}
		var w int64
		for _, k := range s.Waiting {
			w += int64(k.Waiters)
		}
		o.ObserveInt64(waiters, w)
		var qw, deepest int64
		for _, q := range s.Queued {
			qw += int64(q.Waiters)
			deepest = max(deepest, int64(q.Depth))
		}
		o.ObserveInt64(semWaiters, qw)
		o.ObserveInt64(depth, deepest)
		return nil
	}, held, flights, waiters, semWaiters, depth)
}
