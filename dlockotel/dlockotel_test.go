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
	c := dlocktest.NewClient(t, &dlockrt.Options{Observer: New(mp, tp)})
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
		"dlock.acquire.wait":   2, // the lock and the fanout leader's lease
		"dlock.hold":           1, // the lock (the fanout lease ends by completion)
		"dlock.contention":     1,
		"dlock.lease.extends":  1,
		"dlock.fanout.runs":    1, // one flight in this process
		"dlock.fanout.callers": 3, // shared by three callers
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s = %d; want %d (all: %v)", name, got[name], w, got)
		}
	}
}
