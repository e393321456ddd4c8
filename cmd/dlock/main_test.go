package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/redistest"
	dlockrt "github.com/dlock-go/dlock/runtime"
)

// syncBuffer is an io.Writer the test may read while the command writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// dlockCLI runs the command and returns its output and exit status.
func dlockCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errs bytes.Buffer
	code := run(context.Background(), args, &out, &errs)
	return out.String() + errs.String(), code
}

// holderClient is a program holding things: a dlock client named name.
func holderClient(t *testing.T, rdb redis.UniversalClient, name string) *dlockrt.Client {
	t.Helper()
	c, err := dlockrt.New(rdb, &dlockrt.Options{Name: name, Startup: dlockrt.StartupSkip})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// The on-call session of the README: who holds a lock and a permit, the
// keys of a space, freeing a dead holder's lock (the holder learns it lost
// it), and the mistakes a person makes at the prompt.
func TestCLI_inspectLsRelease(t *testing.T) {
	srv := redistest.StartServer(t)
	url := "redis://" + srv.Addr()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	holder := holderClient(t, rdb, "billing")
	ctx := context.Background()
	l, err := holder.Lock(ctx, "orders:42", dlockrt.WithTTL(900*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	p, err := holder.Semaphore("export:7", 2).Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(ctx)
	host, _ := os.Hostname()
	who := fmt.Sprintf("billing (pid %d on %s)", os.Getpid(), host)

	out, code := dlockCLI(t, "-redis", url, "inspect", "orders:42", "export:7", "nothing:here")
	for _, want := range []string{"orders:42\n", "lock  held by " + who, fmt.Sprintf("token %d", l.Token()),
		"semaphore  limit 2, 1 holding, 0 waiting", "holding: " + who, "nothing:here: nothing in Redis"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("inspect (exit %d) lacks %q:\n%s", code, want, out)
		}
	}
	out, code = dlockCLI(t, "-redis", url, "-json", "inspect", "orders:42")
	var states []dlockrt.KeyState
	if err := json.Unmarshal([]byte(out), &states); err != nil || code != 0 || len(states) != 1 ||
		states[0].Lock == nil || states[0].Lock.Holder.Name != "billing" || states[0].Lock.Token != l.Token() {
		t.Fatalf("inspect -json (exit %d, %v):\n%s", code, err, out)
	}
	if out, code = dlockCLI(t, "-redis", url, "ls", "orders:"); code != 0 || out != "orders:42\n" {
		t.Fatalf("ls orders: (exit %d):\n%s", code, out)
	}

	if out, code = dlockCLI(t, "-redis", url, "release", "orders:42"); code != 2 || !strings.Contains(out, "--force") {
		t.Fatalf("release without --force (exit %d):\n%s", code, out)
	}
	if out, code = dlockCLI(t, "-redis", url, "release", "--force", "orders:42"); code != 0 || !strings.Contains(out, `released "orders:42", held by `+who) {
		t.Fatalf("release --force (exit %d):\n%s", code, out)
	}
	select {
	case <-l.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("the holder was not told it lost the lock")
	}
	if !errors.Is(l.Err(), dlockrt.ErrLost) {
		t.Fatalf("holder's Err = %v; want ErrLost", l.Err())
	}
	if out, code = dlockCLI(t, "-redis", url, "release", "--force", "orders:42"); code != 1 || !strings.Contains(out, "holds no lock or permit") {
		t.Fatalf("release --force of a free key (exit %d):\n%s", code, out)
	}
	if out, code = dlockCLI(t, "-redis", url, "inspect"); code != 2 {
		t.Fatalf("inspect without a key (exit %d):\n%s", code, out)
	}
	if out, code = dlockCLI(t, "-redis", "redis://127.0.0.1:1", "-timeout", "300ms", "inspect", "k"); code != 1 || !strings.Contains(out, "unavailable") {
		t.Fatalf("inspect with Redis down (exit %d):\n%s", code, out)
	}
}

// watch prints what a key holds when that changes, and stops with its
// context (Ctrl-C).
func TestCLI_watchPrintsChanges(t *testing.T) {
	srv := redistest.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	holder := holderClient(t, rdb, "nightly")
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"-redis", "redis://" + srv.Addr(), "watch", "-every", "20ms", "job:1"}, &out, &out)
	}()
	await := func(what string) {
		t.Helper()
		redistest.WaitFor(t, 5*time.Second, what, func(context.Context) bool { return strings.Contains(out.String(), what) })
	}
	await("job:1: nothing in Redis")
	l, err := holder.Lock(context.Background(), "job:1")
	if err != nil {
		t.Fatal(err)
	}
	await("held by nightly")
	l.Release(context.Background())
	await("free, released by nightly")
	if n := strings.Count(out.String(), "-- "); n != 3 {
		t.Errorf("watch printed %d states; want 3 (one per change):\n%s", n, out.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("watch exited %d:\n%s", code, out.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not stop with its context")
	}
}

// On a Cluster, ls finds the keys of every primary, and inspect reads a
// key wherever its slot lives.
func TestCLI_cluster(t *testing.T) {
	cl := redistest.StartCluster(t, false)
	holder := holderClient(t, cl.Client(), "sharded")
	var want []string
	for i := range 8 {
		k := fmt.Sprintf("acct:%d", i)
		l, err := holder.Lock(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release(context.Background())
		want = append(want, k)
	}
	url := "redis://" + cl.Addrs()[0]
	if out, code := dlockCLI(t, "-redis", url, "-cluster", "ls", "acct:"); code != 0 || out != strings.Join(want, "\n")+"\n" {
		t.Fatalf("ls on a Cluster (exit %d):\n%s", code, out)
	}
	if out, code := dlockCLI(t, "-redis", url, "-cluster", "inspect", "acct:5"); code != 0 || !strings.Contains(out, "held by sharded") {
		t.Fatalf("inspect on a Cluster (exit %d):\n%s", code, out)
	}
}
