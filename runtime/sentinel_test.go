package dlockrt

import (
	"context"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
)

// P13: a client whose subscription connection was on the old primary
// follows a Sentinel failover: a release on the new primary still wakes its
// waiter at once (not after the holder's minute-long lease).
func TestSentinel_Lock_wokenAfterFailover(t *testing.T) {
	g := redistest.StartSentinel(t)
	holder := newClient(t, g.Client(), nil)
	waiter := newClient(t, g.Client(), nil)
	waiting := make(chan struct{}, 1)
	testHookLockWait = func(string) {
		sendGo(t, waiting, struct{}{}, 30*time.Second, "the test to see the waiter wait")
	}
	t.Cleanup(func() { testHookLockWait = nil })

	// wait wakes a waiter with a release and returns how long that took.
	wait := func(k string) time.Duration {
		var l *Lock
		redistest.WaitFor(t, 20*time.Second, "the holder to take "+k, func(ctx context.Context) bool {
			var err error
			l, err = holder.Once(ctx, k, WithTTL(time.Minute))
			return err == nil
		})
		got := make(chan error, 1)
		var woke time.Time
		go func() {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			l2, err := waiter.Lock(ctx, k)
			woke = time.Now()
			if err == nil {
				l2.Release(bg())
			}
			got <- err
		}()
		recv(t, waiting, 10*time.Second, "the waiter to wait")
		// The waiter subscribes right after the hook: let it confirm.
		redistest.WaitFor(t, 5*time.Second, "the waiter's subscription", func(context.Context) bool {
			return waiter.mux.numChannels() == 1 && waiterConfirmed(waiter)
		})
		released := time.Now()
		if err := l.Release(t.Context()); err != nil {
			t.Fatalf("Release of %s = %v", k, err)
		}
		if err := recv(t, got, 30*time.Second, "the waiter's Lock("+k+") after the release"); err != nil {
			t.Fatalf("Lock(%s) = %v", k, err)
		}
		return woke.Sub(released)
	}

	wait("before") // the waiter's subscription connection is on the old primary now
	g.Failover()
	if d := wait("after"); d > 3*time.Second {
		t.Fatalf("after the failover the waiter woke %v after the release; want promptly (the lease was a minute)", d)
	}
}
