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
	redistest.WaitFor(t, 5*time.Second, "the waiter in line", func(context.Context) bool {
		return slices.ContainsFunc(c.Snapshot().Waiting, func(w WaitInfo) bool { return w.Key == lk && w.Waiters == 1 })
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

	cancel()
	if err := recv(t, waited, 5*time.Second, "the waiter to leave"); err == nil {
		t.Fatal("the waiter got the lock its own client holds")
	}
	close(finish)
	if err := recv(t, fanned, 5*time.Second, "the fanout"); err != nil {
		t.Fatal(err)
	}
	l.Release(bg())
	p.Release(bg())
	if s := c.Snapshot(); len(s.Leases) != 0 || len(s.Flights) != 0 || len(s.Waiting) != 0 {
		t.Fatalf("Snapshot after everything ended = %+v; want empty", s)
	}
}
