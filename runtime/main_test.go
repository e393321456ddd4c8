package dlockrt

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/redistest"
)

// The package's tests share one standalone server (each test uses its own
// keys), started the first time a test needs it, so that the examples
// (which run on dlocktest's in-process server) need no redis-server; tests
// that kill, pause or restart a server start their own, and the Cluster too
// is started the first time a test needs it.
var (
	tm             redistest.Main
	standaloneOnce sync.Once
	standalone     *redistest.Server
	clusterOnce    sync.Once
	cluster        *redistest.Cluster
)

// standaloneAddr returns the shared standalone server's address, starting
// it on first use.
func standaloneAddr(t testing.TB) string {
	t.Helper()
	redistest.Binary(t, "redis-server")
	standaloneOnce.Do(func() { standalone = redistest.StartServer(&tm) })
	return standalone.Addr()
}

func TestMain(m *testing.M) {
	if role := os.Getenv(helperEnv); role != "" {
		os.Exit(runHelper(role))
	}
	redis.SetLogger(quietLogger{}) // tests kill servers on purpose; go-redis would log every redial
	code := m.Run()
	tm.Close()
	os.Exit(code)
}

// sharedCluster returns the package's Cluster (three primaries with a
// replica each), starting it on first use.
func sharedCluster(t testing.TB) *redistest.Cluster {
	t.Helper()
	redistest.Binary(t, "redis-server")
	clusterOnce.Do(func() { cluster = redistest.StartCluster(&tm, true) })
	return cluster
}

// newRedis returns a client of the shared standalone server.
func newRedis(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: standaloneAddr(t)})
	t.Cleanup(func() { c.Close() })
	return c
}

// newClient returns a dlock client on rdb, closed with the test. Unless o
// says otherwise (StartupRefuse), it skips the start-up check: the tests
// that are about it use New.
func newClient(t testing.TB, rdb redis.UniversalClient, o *Options) *Client {
	t.Helper()
	var opts Options
	if o != nil {
		opts = *o
	}
	if opts.Startup == StartupWarn {
		opts.Startup = StartupSkip
	}
	c, err := New(rdb, &opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newClientStarted is newClient with the start-up check Options.Startup
// asks for (by default, in the background, logging each problem).
func newClientStarted(t testing.TB, rdb redis.UniversalClient, o *Options) *Client {
	t.Helper()
	c, err := New(rdb, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// runID makes keys unique to one run of the test binary (-count=N runs
// tests again against the same server).
var runID = strconv.FormatInt(time.Now().UnixNano()%1e9, 36)

var (
	keySeq  atomic.Int64
	testIDs sync.Map // testing.TB -> string: one id per test invocation
)

// key returns a key unique to the test invocation: the same suffix gives
// the same key within one test, and a fresh one when -count runs it again.
func key(t testing.TB, suffix string) string {
	id, _ := testIDs.LoadOrStore(t, runID+"."+strconv.FormatInt(keySeq.Add(1), 10))
	return strings.ReplaceAll(t.Name(), "/", ".") + ":" + id.(string) + ":" + suffix
}

// bg is a context for cleanup and inspection that outlives the test's.
func bg() context.Context { return context.Background() }

// elapsed returns how long f took, for promises of the form "no later
// than".
func elapsed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// The tests' waits are bounded: a receive, a send, a WaitGroup or a child
// process that takes longer than its bound (several times what it
// normally takes, and well under the -timeout of make test) fails the
// test, naming what it awaited.

// recv returns what ch delivers within d. When d passes first, it fails
// the test, naming what it awaited. Only the test's goroutine may call it.
func recv[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
	}
	t.Fatalf("timed out after %v waiting for %s", d, what)
	var zero T
	return zero
}

// setHook sets a test hook for the rest of the test. Set it before making
// the clients whose goroutines run it: cleanups run last in, first out, so
// those clients are closed, and their goroutines done, before it is unset.
func setHook[F any](t testing.TB, hook *F, f F) {
	*hook = f
	t.Cleanup(func() {
		var none F
		*hook = none
	})
}

// recvGo is recv for the goroutines a test starts, which must not call
// t.Fatalf: when d passes first, it reports the timeout with t.Errorf;
// when the test ends first (its Context is done), it reports nothing.
// Either way it returns ok false.
func recvGo[T any](t testing.TB, ch <-chan T, d time.Duration, what string) (v T, ok bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v = <-ch:
		return v, true
	case <-t.Context().Done():
	case <-timer.C:
		t.Errorf("timed out after %v waiting for %s", d, what)
	}
	return v, false
}

// send sends v on ch within d. When d passes first, it fails the test,
// naming what it awaited. Only the test's goroutine may call it.
func send[T any](t testing.TB, ch chan<- T, v T, d time.Duration, what string) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case ch <- v:
		return
	case <-timer.C:
	}
	t.Fatalf("timed out after %v waiting for %s", d, what)
}

// sendGo is send for the goroutines a test starts and for the test hooks
// the code under test calls: when d passes first, it reports the timeout
// with t.Errorf; when the test ends first, it gives up silently. It
// reports whether v was sent.
func sendGo[T any](t testing.TB, ch chan<- T, v T, d time.Duration, what string) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case ch <- v:
		return true
	case <-t.Context().Done():
	case <-timer.C:
		t.Errorf("timed out after %v waiting for %s", d, what)
	}
	return false
}

// waitGroup waits for wg within d. When d passes first, it fails the test,
// naming what it awaited, and leaves the goroutines running. Only the
// test's goroutine may call it.
func waitGroup(t testing.TB, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	recv(t, waitGroupDone(wg), d, what)
}

// waitGroupDone returns a channel that is closed once wg's counter is
// zero, for recv and recvGo to bound a wait on wg.
func waitGroupDone(wg *sync.WaitGroup) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	return done
}
