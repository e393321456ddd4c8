package dlockotel

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
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
			c.Fanout(ctx, "f", func(context.Context) ([]byte, error) {
				close(started)
				<-finish
				return []byte("v"), nil
			})
		})
		if i == 0 {
			<-started
		}
	}
	close(finish)
	wg.Wait()

	parent.End()
	var acquired, refused int
	for _, sp := range spans.Ended() {
		if sp.Name() != "dlock.acquire" {
			continue
		}
		if sp.Parent().TraceID() != parent.SpanContext().TraceID() {
			t.Errorf("span %s is not in the caller's trace", sp.Name())
		}
		if sp.Status().Code == codes.Error {
			refused++
		} else {
			acquired++
		}
	}
	if acquired != 2 || refused != 1 {
		t.Errorf("dlock.acquire spans: %d acquired, %d refused; want 2, 1", acquired, refused)
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
	<-queued
	p.Release(ctx)
	if err := <-second; err != nil {
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

func (s signalQueued) Queued(ctx context.Context, key string, n int) {
	s.Observer.Queued(ctx, key, n)
	select {
	case s.queued <- struct{}{}:
	default:
	}
}
