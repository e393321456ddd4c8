package dlockotel

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/dlock-go/dlock/dlocktest"
)

// The gauges read what the client holds at collection time.
func TestGauges_readTheClientsSnapshot(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	c := dlocktest.NewClient(t)
	reg, err := Gauges(mp, c)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Unregister()
	gauge := func(name string, attr attribute.KeyValue) int64 {
		t.Helper()
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if m.Name != name {
					continue
				}
				for _, dp := range m.Data.(metricdata.Gauge[int64]).DataPoints {
					if v, ok := dp.Attributes.Value(attr.Key); !ok && attr.Key == "" || ok && v == attr.Value {
						return dp.Value
					}
				}
			}
		}
		t.Fatalf("no %s %v", name, attr)
		return 0
	}
	lockKind := attribute.String("kind", "lock")
	if n := gauge("dlock.leases.held", lockKind); n != 0 {
		t.Fatalf("held locks before any = %d", n)
	}
	l, err := c.Lock(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	if n := gauge("dlock.leases.held", lockKind); n != 1 {
		t.Fatalf("held locks while one is held = %d", n)
	}
	if n := gauge("dlock.lock.waiters", attribute.KeyValue{}); n != 0 {
		t.Fatalf("waiters = %d", n)
	}
	l.Release(context.Background())
	if n := gauge("dlock.leases.held", lockKind); n != 0 {
		t.Fatalf("held locks after the release = %d", n)
	}

	// Two callers queue behind a permit: both are counted, and the deeper
	// look found both.
	p, err := c.Semaphore("s", 1).Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := c.Semaphore("s", 1).Acquire(ctx)
			done <- err
		}()
		waitFor(t, "a waiter to queue", func() bool {
			return gauge("dlock.semaphore.waiters", attribute.KeyValue{}) >= 1
		})
	}
	waitFor(t, "both waiters to queue", func() bool {
		return gauge("dlock.semaphore.waiters", attribute.KeyValue{}) == 2 && gauge("dlock.semaphore.queue.depth", attribute.KeyValue{}) == 2
	})
	cancel()
	for range 2 {
		recv(t, done, 5*time.Second, "the waiters to leave")
	}
	p.Release(context.Background())
	if n, d := gauge("dlock.semaphore.waiters", attribute.KeyValue{}), gauge("dlock.semaphore.queue.depth", attribute.KeyValue{}); n != 0 || d != 0 {
		t.Fatalf("semaphore waiters %d, queue depth %d after they left; want 0, 0", n, d)
	}
}
