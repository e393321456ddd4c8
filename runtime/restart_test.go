package dlockrt

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
)

// Issue 13, a Redis restart without persistence while a lock and a permit
// are held: their keys are gone, so each holder is told by its watchdog
// (Done closes with ErrLost, at its next renewal), the key can be taken
// again at once, and the new holder's fencing token is still larger (the
// token is the server's clock, not a counter that the restart reset).
func TestRestartWithoutPersistence_holdersAreToldAndTokensGrow(t *testing.T) {
	srv := redistest.StartServer(t)
	a := newClient(t, srv.Client(), nil)
	b := newClient(t, srv.Client(), nil)
	ctx := t.Context()
	ttl := 600 * time.Millisecond
	l, err := a.Once(ctx, "k", WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Semaphore("s", 1).Acquire(ctx, WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	for what, done := range map[string]<-chan struct{}{"lock": l.Done(), "permit": p.Done()} {
		select {
		case <-done:
		case <-time.After(2 * ttl):
			t.Fatalf("the %s's holder was not told within two leases that the restart lost it", what)
		}
	}
	if !errors.Is(l.Err(), ErrLost) || !errors.Is(p.Err(), ErrLost) {
		t.Fatalf("Err after the restart: lock %v, permit %v; want ErrLost", l.Err(), p.Err())
	}
	var l2 *Lock
	redistest.WaitFor(t, 5*time.Second, "the key to be taken again", func(ctx context.Context) bool {
		l2, err = b.Once(ctx, "k")
		return err == nil
	})
	if l2.Token() <= l.Token() {
		t.Fatalf("token after the restart = %d; want > %d", l2.Token(), l.Token())
	}
	if _, err := b.Semaphore("s", 1).TryAcquire(ctx); err != nil {
		t.Fatalf("TryAcquire after the restart = %v", err)
	}
}
