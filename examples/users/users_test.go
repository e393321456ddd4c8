package users

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/redistest"
	dlockrt "github.com/dlock-go/dlock/runtime"
)

// End-to-end tests of the generated wrappers against a real Redis, with
// several real processes (this test binary re-run as a child).

var srv *redistest.Server

func TestMain(m *testing.M) {
	if os.Getenv("USERS_CHILD") != "" {
		os.Exit(child())
	}
	var tm redistest.Main
	srv = redistest.StartServer(&tm)
	code := m.Run()
	tm.Close()
	os.Exit(code)
}

// setup makes a default client with prefix and the Loader that counts its
// runs in Redis under prefix:runs:<id>.
func setup(addr, prefix string) (*redis.Client, *dlockrt.Client) {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	c, err := dlockrt.New(rdb, &dlockrt.Options{Prefix: prefix})
	if err != nil {
		panic(err)
	}
	dlockrt.SetDefault(c)
	Loader = func(ctx context.Context, id int64) (User, error) {
		rdb.Incr(ctx, prefix+":runs:"+strconv.FormatInt(id, 10))
		time.Sleep(200 * time.Millisecond) // a slow database
		if id == 404 {
			return User{}, fmt.Errorf("user %d: %w", id, ErrNotFound)
		}
		return User{ID: id, Name: "ada", Tags: []string{"a", "b"}, Seen: time.Unix(1700000000, 0).UTC(),
			Friends: map[string]int64{"bob": 2, "cy": 3}}, nil
	}
	return rdb, c
}

// child calls LoadUser(ID) from 5 goroutines at START, each within a
// minute, and prints one line per call: "ok <user>" or "err <matches
// ErrNotFound> <message>".
func child() int {
	_, c := setup(os.Getenv("ADDR"), os.Getenv("PREFIX"))
	defer c.Close()
	id, _ := strconv.ParseInt(os.Getenv("ID"), 10, 64)
	start, _ := strconv.ParseInt(os.Getenv("START"), 10, 64)
	time.Sleep(time.Until(time.UnixMilli(start))) // all processes start together
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			u, err := LoadUser(ctx, id)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				fmt.Printf("err %v %s\n", errors.Is(err, ErrNotFound), err)
				return
			}
			fmt.Printf("ok %d %s %v %s %v\n", u.ID, u.Name, u.Tags, u.Seen.Format(time.RFC3339), u.Friends)
		})
	}
	wg.Wait()
	return 0
}

// runChildren runs n children (see child) and returns the lines they
// printed. A child still running after two minutes is killed, failing the
// test.
func runChildren(t *testing.T, prefix string, id int64, n int) []string {
	t.Helper()
	const limit = 2 * time.Minute
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	start := time.Now().Add(500 * time.Millisecond).UnixMilli()
	var lines []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range n {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.WaitDelay = 10 * time.Second // for the output, once the child is killed
		cmd.Env = append(os.Environ(), "USERS_CHILD=1", "ADDR="+srv.Addr(), "PREFIX="+prefix,
			"ID="+strconv.FormatInt(id, 10), "START="+strconv.FormatInt(start, 10))
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				mu.Lock()
				lines = append(lines, sc.Text())
				mu.Unlock()
			}
			if err := cmd.Wait(); ctx.Err() != nil {
				t.Errorf("timed out after %v waiting for a child to print its lines and exit", limit)
			} else if err != nil {
				t.Errorf("child: %v", err)
			}
		})
	}
	waitGroup(t, &wg, limit+time.Minute, "the children's lines")
	return lines
}

func TestLoadUser_runsOnceAcrossProcesses(t *testing.T) {
	prefix := "e2e-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	lines := runChildren(t, prefix, 7, 3)
	want := "ok 7 ada [a b] 2023-11-14T22:13:20Z map[bob:2 cy:3]"
	if len(lines) != 15 {
		t.Fatalf("got %d results; want 15: %q", len(lines), lines)
	}
	for _, l := range lines {
		if l != want {
			t.Fatalf("a caller got %q; want %q", l, want)
		}
	}
	rdb := srv.Client()
	if runs, _ := rdb.Get(t.Context(), prefix+":runs:7").Int(); runs != 1 {
		t.Fatalf("loadUser ran %d times across 3 processes x 5 callers; want 1", runs)
	}
}

func TestLoadUser_registeredErrorCrossesProcesses(t *testing.T) {
	prefix := "e2e404-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	lines := runChildren(t, prefix, 404, 3)
	if len(lines) != 15 {
		t.Fatalf("got %d results; want 15: %q", len(lines), lines)
	}
	for _, l := range lines {
		if l != "err true user 404: users: not found" {
			t.Fatalf("a caller got %q; want the registered ErrNotFound with its message", l)
		}
	}
	if runs, _ := srv.Client().Get(t.Context(), prefix+":runs:404").Int(); runs != 1 {
		t.Fatalf("loadUser ran %d times; want 1", runs)
	}
}

func TestReindex_excludesOthers(t *testing.T) {
	_, c := setup(srv.Addr(), "e2e-once")
	defer c.Close()
	started, finish := make(chan struct{}), make(chan struct{})
	var tokens []int64
	ReindexFunc = func(ctx context.Context, shard string) error {
		tok, ok := dlockrt.TokenFromContext(ctx)
		if !ok {
			return errors.New("no fencing token in the context")
		}
		tokens = append(tokens, tok)
		close(started)
		recvGo(t, finish, time.Minute, "the test to let the reindex finish")
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- Reindex(t.Context(), "s1") }()
	recv(t, started, 10*time.Second, "the first Reindex to start")
	if err := Reindex(t.Context(), "s1"); !errors.Is(err, dlockrt.ErrNotAcquired) {
		t.Fatalf("Reindex while another runs = %v; want ErrNotAcquired", err)
	}
	close(finish)
	if err := recv(t, done, 10*time.Second, "the first Reindex to return"); err != nil {
		t.Fatalf("Reindex = %v", err)
	}
	if len(tokens) != 1 || tokens[0] <= 0 {
		t.Fatalf("tokens = %v", tokens)
	}
}

func TestExport_limitsConcurrency(t *testing.T) {
	_, c := setup(srv.Addr(), "e2e-sem")
	defer c.Close()
	var in, peak atomic.Int32
	ExportFunc = func(ctx context.Context, tenant string) error {
		n := in.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond) // the rate-limited call
		in.Add(-1)
		return nil
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if err := Export(t.Context(), "acme"); err != nil {
				t.Errorf("Export = %v", err)
			}
		})
	}
	waitGroup(t, &wg, 30*time.Second, "the ten Exports")
	if p := peak.Load(); p != 2 {
		t.Fatalf("peak concurrency = %d; want 2 (the limit, reached)", p)
	}
}

func TestStoreWithDlock_satisfiesGetterAndDedups(t *testing.T) {
	_, c := setup(srv.Addr(), "e2e-store")
	defer c.Close()
	s := &Store{}
	var g Getter = NewStoreWithDlock(s, c)
	u, err := g.Get(t.Context(), 9)
	if err != nil || u.ID != 9 || u.Name != "stored" {
		t.Fatalf("Get = %+v, %v", u, err)
	}
	if s.Calls != 1 {
		t.Fatalf("Calls = %d; want 1", s.Calls)
	}
}

func TestCountActive_digestKeyAndTwoResults(t *testing.T) {
	_, c := setup(srv.Addr(), "e2e-count")
	defer c.Close()
	n, label, err := CountActive(t.Context(), time.Hour, []string{"x", "y", "z"})
	if err != nil || n != 3 || label != "since 1h0m0s" {
		t.Fatalf("CountActive = %d, %q, %v", n, label, err)
	}
}

// P23: two functions with the same key template never share results
// (LoadProfile right after LoadUser gets a Profile, not the User's bytes);
// separators inside values never merge two keys; two receivers whose key
// names the receiver never share results.
func TestKeys_areInjective(t *testing.T) {
	_, c := setup(srv.Addr(), "e2e-keys")
	defer c.Close()
	ctx := t.Context()
	// Keep each result readable (ResultTTL) while the next call joins.
	if _, err := LoadUser(ctx, 7); err != nil {
		t.Fatal(err)
	}
	p, err := LoadProfile(ctx, 7)
	if want := (Profile{Bio: "bio of 7", Followers: 7}); err != nil || p != want {
		t.Fatalf("LoadProfile(7) after LoadUser(7) = %+v, %v; want %+v", p, err, want)
	}
	for _, args := range [][2]string{{"acme:1", "2"}, {"acme", "1:2"}, {"acme%3A1", "2"}} {
		d, err := LoadDoc(ctx, args[0], args[1])
		if want := "tenant=" + args[0] + " id=" + args[1]; err != nil || d != want {
			t.Fatalf("LoadDoc%q = %q, %v; want %q", args, d, err, want)
		}
	}
	for _, tenant := range []string{"a", "b"} {
		got, err := NewTenantStoreWithDlock(&TenantStore{Tenant: tenant}, c).Get(ctx, 7)
		if want := tenant + "/7"; err != nil || got != want {
			t.Fatalf("tenant %s: Get(7) = %q, %v; want %q", tenant, got, err, want)
		}
	}
	if _, err := NewTenantStoreWithDlock(nil, c).Get(ctx, 7); !errors.Is(err, dlockrt.ErrInvalid) {
		t.Fatalf("Get on a nil store = %v; want ErrInvalid (not a panic)", err)
	}
}

// P24: errors.Is holds for a wrapped sentinel of the package, registered
// by the generated file, for the leader's caller and a follower's.
func TestLoadGone_wrappedSentinelKeepsItsIdentity(t *testing.T) {
	_, c := setup(srv.Addr(), "e2e-gone")
	defer c.Close()
	_, err := LoadGone(t.Context(), 1)
	var re *dlockrt.RemoteError
	if !errors.Is(err, ErrGone) || !errors.As(err, &re) || re.Message != "find 1: users: gone" {
		t.Fatalf("LoadGone = %v; want a RemoteError matching ErrGone", err)
	}
}

// The tests' waits are bounded: a receive or a WaitGroup that takes
// longer than its bound (several times what it normally takes) fails the
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

// waitGroup waits for wg within d. When d passes first, it fails the test,
// naming what it awaited, and leaves the goroutines running. Only the
// test's goroutine may call it.
func waitGroup(t testing.TB, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	recv(t, done, d, what)
}
