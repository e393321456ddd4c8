package dlockrt

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dlock-go/dlock/internal/redistest"
)

// P15 for lock waiters: every contended key costs a subscription only while
// somebody waits on it; afterwards the client holds no channel, the server
// lists none, and no goroutine is left.
func TestClient_Lock_subscriptionsReturnToZero(t *testing.T) {
	rdb := newRedis(t)
	prefix := "p15-" + strconv.Itoa(int(time.Now().UnixNano()%1e9))
	holder, err := New(rdb, &Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	waiter, err := New(rdb, &Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	n := 2000
	if testing.Short() {
		n = 200
	}
	var waiting sync.Map // key -> chan struct{} closed when its waiter waits
	testHookLockWait = func(k string) {
		if ch, ok := waiting.Load(k); ok {
			close(ch.(chan struct{}))
		}
	}
	t.Cleanup(func() { testHookLockWait = nil })
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			k := "k" + strconv.Itoa(i)
			l, err := holder.Once(t.Context(), k)
			if err != nil {
				t.Errorf("Once(%s) = %v", k, err)
				return
			}
			got := make(chan error, 1)
			waits := make(chan struct{})
			waiting.Store(k, waits)
			go func() {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				l2, err := waiter.Lock(ctx, k)
				if err == nil {
					err = l2.Release(ctx)
				}
				got <- err
			}()
			<-waits
			l.Release(t.Context())
			if err := <-got; err != nil {
				t.Errorf("Lock(%s) = %v", k, err)
			}
		})
	}
	wg.Wait()
	redistest.WaitFor(t, 5*time.Second, "the waiter's channels to be unsubscribed", func(ctx context.Context) bool {
		chans, err := rdb.PubSubShardChannels(ctx, prefix+":*").Result()
		return err == nil && len(chans) == 0 && waiter.mux.numChannels() == 0
	})
	holder.Close()
	waiter.Close()
	goleak.VerifyNone(t, goleak.IgnoreCurrent())
}
