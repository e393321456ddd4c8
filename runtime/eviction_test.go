package dlockrt

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/redistest"
)

// CheckEviction says when the server may evict dlock's keys.
func TestClient_CheckEviction(t *testing.T) {
	srv := redistest.StartServer(t)
	admin := srv.Client()
	c := newClient(t, srv.Client(), nil)
	if err := c.CheckEviction(t.Context()); err != nil {
		t.Fatalf("CheckEviction without maxmemory = %v; want nil", err)
	}
	for _, policy := range []string{"allkeys-lru", "volatile-ttl"} {
		evicting(t, admin, "100mb", policy)
		if err := c.CheckEviction(t.Context()); !errors.Is(err, ErrEvictable) {
			t.Fatalf("CheckEviction with %s = %v; want ErrEvictable", policy, err)
		}
	}
	admin.ConfigSet(t.Context(), "maxmemory-policy", "noeviction")
	if err := c.CheckEviction(t.Context()); err != nil {
		t.Fatalf("CheckEviction with noeviction = %v; want nil", err)
	}
}

func evicting(t *testing.T, admin *redis.Client, maxmemory, policy string) {
	t.Helper()
	if err := admin.ConfigSet(t.Context(), "maxmemory", maxmemory).Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.ConfigSet(t.Context(), "maxmemory-policy", policy).Err(); err != nil {
		t.Fatal(err)
	}
}

// chanHandler hands log records to a test. It never blocks: a record that
// finds the channel full is dropped (a handler that blocked would hang
// whoever logs, and the log package's mutex with it when it is the
// default).
type chanHandler struct{ ch chan slog.Record }

func (h chanHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h chanHandler) Handle(_ context.Context, r slog.Record) error {
	select {
	case h.ch <- r:
	default:
	}
	return nil
}
func (h chanHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h chanHandler) WithGroup(string) slog.Handler      { return h }

// At New, Options.Eviction decides: warn in the background (default),
// refuse, or ignore.
func TestNew_Eviction(t *testing.T) {
	srv := redistest.StartServer(t)
	evicting(t, srv.Client(), "100mb", "allkeys-lru")

	if c, err := New(srv.Client(), &Options{Eviction: EvictionRefuse}); !errors.Is(err, ErrEvictable) || c != nil {
		t.Fatalf("New(EvictionRefuse) on an evicting server = %v, %v; want ErrEvictable", c, err)
	}

	logs := make(chan slog.Record, 10)
	c := newClientStarted(t, srv.Client(), &Options{Logger: slog.New(chanHandler{logs})})
	select {
	case r := <-logs:
		if r.Level != slog.LevelWarn || !strings.Contains(r.Message, "evict") {
			t.Fatalf("New logged %v %q; want a warning about eviction", r.Level, r.Message)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("New with the default Options.Eviction logged nothing about an evicting server")
	}
	c.Close()

	quiet := make(chan slog.Record, 10)
	c = newClientStarted(t, srv.Client(), &Options{Logger: slog.New(chanHandler{quiet}), Eviction: EvictionIgnore})
	c.Close() // waits for anything New started
	if len(quiet) != 0 {
		t.Fatalf("New(EvictionIgnore) logged %q", (<-quiet).Message)
	}

	srv.Client().ConfigSet(t.Context(), "maxmemory-policy", "noeviction")
	c = newClientStarted(t, srv.Client(), &Options{Logger: slog.New(chanHandler{quiet}), Eviction: EvictionRefuse})
	c.Close()
	if len(quiet) != 0 {
		t.Fatalf("New on a noeviction server logged %q", (<-quiet).Message)
	}

	// Refusing needs an answer: Redis down is ErrUnavailable, not a pass.
	srv.Kill()
	if _, err := New(srv.Client(), &Options{Eviction: EvictionRefuse, OpTimeout: time.Second}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("New(EvictionRefuse) with Redis down = %v; want ErrUnavailable", err)
	}
	if _, err := New(srv.Client(), &Options{Eviction: 7}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("New(Eviction: 7) = %v; want ErrInvalid", err)
	}
}

// Why: under a volatile-* policy, memory pressure evicts a held lock's key
// (it has a TTL; the user's data may not). Another client then acquires
// while the holder still believes it holds: mutual exclusion is lost with
// no error until the holder's next renewal reports the loss. (Fencing
// tokens, taken from the server's clock, still grow.)
func TestLock_evictedWhileHeld(t *testing.T) {
	srv := redistest.StartServer(t)
	admin := srv.Client()
	c := newClient(t, srv.Client(), &Options{TTL: 3 * time.Second})
	other := newClient(t, srv.Client(), nil)
	k := key(t, "evicted")
	l, err := c.Lock(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	used, err := admin.Info(t.Context(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	var usedBytes int64
	for _, line := range strings.Split(used, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			usedBytes, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	evicting(t, admin, strconv.FormatInt(usedBytes+64<<10, 10), "volatile-ttl")
	filler := strings.Repeat("x", 16<<10)
	full := time.Now().Add(30 * time.Second) // a few writes of 16 KiB, normally
	for i := 0; ; i++ {
		if err := admin.Set(t.Context(), "filler:"+strconv.Itoa(i), filler, 0).Err(); err != nil {
			break // OOM: nothing evictable is left
		}
		if time.Now().After(full) {
			t.Fatalf("timed out after 30s waiting for the server to run out of memory (%d fillers written)", i+1)
		}
	}
	select {
	case <-l.Done():
		t.Fatal("the holder was told before the key was taken; the test shows nothing")
	default:
	}
	admin.ConfigSet(t.Context(), "maxmemory", "0")
	l2, err := other.Once(t.Context(), k)
	if err != nil {
		t.Fatalf("Once after the eviction = %v; want the key free (it was evicted)", err)
	}
	// Tokens come from the server's clock: fencing still refuses the
	// evicted holder's writes.
	if l2.Token() <= l.Token() {
		t.Fatalf("token after the eviction %d <= the evicted holder's %d", l2.Token(), l.Token())
	}
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the evicted holder was never told it lost the lock")
	}
	if !errors.Is(l.Err(), ErrLost) {
		t.Fatalf("evicted holder's Err = %v; want ErrLost", l.Err())
	}
}
