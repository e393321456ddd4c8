package dlockrt

import (
	"context"
	"encoding/json"
	"html"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
)

// Snapshot and Handler show what this client holds (a lock, a permit, a
// fanout lead), its flights (with their state and callers) and its callers
// waiting for a lock; the HTML escapes keys.
func TestSnapshot_showsLeasesFlightsAndWaiters(t *testing.T) {
	rdb := newRedis(t)
	c := newClient(t, rdb, &Options{Name: "svc"})
	lk, sk, fk := key(t, "<lock>"), key(t, "sem"), key(t, "fan")
	l, err := c.Lock(bg(), lk)
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Semaphore(sk, 1).Acquire(bg())
	if err != nil {
		t.Fatal(err)
	}
	running, finish := make(chan struct{}), make(chan struct{})
	fanned := make(chan error, 1)
	go func() {
		_, err := c.Fanout(bg(), fk, func(context.Context) ([]byte, error) {
			close(running)
			<-finish
			return []byte("x"), nil
		})
		fanned <- err
	}()
	recv(t, running, 5*time.Second, "the fanout job to start")
	ctx, cancel := context.WithCancel(bg())
	defer cancel()
	waited := make(chan error, 1)
	go func() {
		_, err := c.Lock(ctx, lk)
		waited <- err
	}()
	other := newClient(t, rdb, nil)
	queued := make(chan error, 2)
	for _, q := range []*Client{c, other} {
		go func() {
			p, err := q.Semaphore(sk, 1).Acquire(ctx)
			if err == nil {
				p.Release(bg())
			}
			queued <- err
		}()
		redistest.WaitFor(t, 5*time.Second, "the permit's waiter to queue", func(context.Context) bool {
			return len(q.Snapshot().Queued) == 1
		})
	}
	redistest.WaitFor(t, 5*time.Second, "the waiter in line", func(context.Context) bool {
		return slices.ContainsFunc(c.Snapshot().Waiting, func(w WaitInfo) bool { return w.Key == lk && w.Waiters == 1 })
	})
	// c's waiter found itself alone in the queue; it looks again at least
	// every third of its place's lease, and then finds other's behind it.
	redistest.WaitFor(t, 10*time.Second, "c's waiter to see the queue's depth", func(context.Context) bool {
		q := c.Snapshot().Queued
		return len(q) == 1 && q[0].Key == sk && q[0].Waiters == 1 && q[0].Depth == 2
	})
	s := c.Snapshot()
	kinds := map[string]Kind{}
	for _, li := range s.Leases {
		kinds[li.Key] = li.Kind
		if li.Left <= 0 || li.Since.IsZero() {
			t.Errorf("lease %+v: want time left and a grant time", li)
		}
	}
	if kinds[lk] != KindLock || kinds[sk] != KindSemaphore || kinds[fk] != KindFanout || s.Name != "svc" {
		t.Fatalf("Snapshot leases %+v (name %q); want the lock, the permit and the fanout lead of svc", s.Leases, s.Name)
	}
	if len(s.Flights) != 1 || s.Flights[0].Key != fk || s.Flights[0].State != "leading" || s.Flights[0].Callers != 1 {
		t.Fatalf("Snapshot flights %+v; want one leading with one caller", s.Flights)
	}

	rec := httptest.NewRecorder()
	Handler(c).ServeHTTP(rec, httptest.NewRequest("GET", "/debug/dlock?json", nil))
	var got Snapshot
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || len(got.Leases) != 3 || len(got.Waiting) != 1 {
		t.Fatalf("JSON page: %v\n%s", err, rec.Body)
	}
	rec = httptest.NewRecorder()
	Handler(c).ServeHTTP(rec, httptest.NewRequest("GET", "/debug/dlock", nil))
	page := rec.Body.String()
	if !strings.Contains(page, html.EscapeString(lk)) || strings.Contains(page, "<lock>") || !strings.Contains(page, "leading") {
		t.Fatalf("HTML page lacks the escaped lock key or the flight:\n%s", page)
	}

	if !strings.Contains(page, "Queued for permits (1)") {
		t.Fatalf("HTML page lacks the queued permit:\n%s", page)
	}

	cancel()
	if err := recv(t, waited, 5*time.Second, "the waiter to leave"); err == nil {
		t.Fatal("the waiter got the lock its own client holds")
	}
	for range 2 {
		if err := recv(t, queued, 5*time.Second, "the permit's waiters to leave"); err == nil {
			t.Fatal("a waiter got the permit c holds")
		}
	}
	close(finish)
	if err := recv(t, fanned, 5*time.Second, "the fanout"); err != nil {
		t.Fatal(err)
	}
	l.Release(bg())
	p.Release(bg())
	if s := c.Snapshot(); len(s.Leases) != 0 || len(s.Flights) != 0 || len(s.Waiting) != 0 || len(s.Queued) != 0 {
		t.Fatalf("Snapshot after everything ended = %+v; want empty", s)
	}
}
