package dlockrt_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/dlocktest"
	dlockrt "github.com/dlock-go/dlock/runtime"
)

// The examples run on dlocktest's in-process server, so they run anywhere;
// in production pass the go-redis client of your Redis 7 (standalone,
// Sentinel or Cluster).

func ExampleNew() {
	srv, _ := dlocktest.Start() // an in-process Redis; use yours in production
	defer srv.Close()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()

	c, err := dlockrt.New(rdb, &dlockrt.Options{Prefix: "example", TTL: 5 * time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	fmt.Println("ready")
	// Output: ready
}

// newExampleClient returns a client of a fresh in-process server and a
// function that closes both.
func newExampleClient() (*dlockrt.Client, func()) {
	srv, _ := dlocktest.Start()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	c, _ := dlockrt.New(rdb, nil)
	return c, func() { c.Close(); rdb.Close(); srv.Close() }
}

func ExampleClient_Once() {
	c, done := newExampleClient()
	defer done()
	ctx := context.Background()

	l, err := c.Once(ctx, "reindex")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Release(ctx)

	// A second attempt, from anywhere in the fleet, fails at once.
	_, err = c.Once(ctx, "reindex")
	fmt.Println(errors.Is(err, dlockrt.ErrNotAcquired))
	// Output: true
}

func ExampleClient_Lock() {
	c, done := newExampleClient()
	defer done()
	ctx := context.Background()

	first, _ := c.Once(ctx, "account:7")
	go func() {
		time.Sleep(10 * time.Millisecond) // some work
		first.Release(ctx)
	}()

	// Lock waits for the release (announced over pub/sub), up to its context.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, err := c.Lock(wctx, "account:7")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Release(ctx)
	fmt.Println("newer token is larger:", l.Token() > first.Token())

	// Done closes if the lease is ever lost; long jobs should watch it.
	select {
	case <-l.Done():
		fmt.Println("lost:", l.Err())
	default:
		fmt.Println("held")
	}
	// Output:
	// newer token is larger: true
	// held
}

func ExampleClient_Multi() {
	c, done := newExampleClient()
	defer done()
	ctx := context.Background()

	m, err := c.Multi(ctx, "acct:1", "acct:2")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Release(ctx)

	_, err = c.Multi(ctx, "acct:2", "acct:3")
	var me *dlockrt.MultiLockError
	if errors.As(err, &me) {
		fmt.Println("held by others:", me.Keys)
	}
	// Output: held by others: [acct:2]
}

func ExampleClient_Fanout() {
	c, done := newExampleClient()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Ten concurrent callers of one key: the job runs once, all get its bytes.
	// (Every call returns by ctx's deadline, so Wait does too.)
	var runs sync.WaitGroup
	var mu sync.Mutex
	n := 0
	results := make([]string, 10)
	for i := range results {
		runs.Go(func() {
			b, err := c.Fanout(ctx, "user:7", func(ctx context.Context) ([]byte, error) {
				mu.Lock()
				n++
				mu.Unlock()
				time.Sleep(50 * time.Millisecond) // a slow database
				return []byte("ada"), nil
			})
			if err != nil {
				b = []byte(err.Error())
			}
			results[i] = string(b)
		})
	}
	runs.Wait()
	fmt.Println(strings.Join(results[:3], " "), "...")
	fmt.Println("runs:", n)
	// Output:
	// ada ada ada ...
	// runs: 1
}

func ExampleFanoutOf() {
	c, done := newExampleClient()
	defer done()

	type User struct {
		ID   int64
		Name string
	}
	u, err := dlockrt.FanoutOf(context.Background(), c, "user:7", func(ctx context.Context) (User, error) {
		return User{ID: 7, Name: "ada"}, nil
	})
	fmt.Printf("%+v %v\n", u, err)
	// Output: {ID:7 Name:ada} <nil>
}

func ExampleClient_Push() {
	c, done := newExampleClient()
	defer done()
	ctx := context.Background()

	got := make(chan string, 1)
	job, err := c.Push(ctx, "report:2026-11", func(res []byte, err error) {
		got <- fmt.Sprintf("%s %v", res, err) // later, on another goroutine
	})
	if err != nil { // ErrNotAcquired: someone else leads; onDone still fires
		fmt.Println(err)
		return
	}
	// This caller leads: do the work, then complete it for everyone.
	job.Complete(ctx, []byte("42 rows"), nil)
	select {
	case res := <-got:
		fmt.Println(res)
	case <-time.After(10 * time.Second):
		fmt.Println("onDone did not run within 10s")
	}
	// Output: 42 rows <nil>
}

func ExampleSemaphore() {
	c, done := newExampleClient()
	defer done()
	ctx := context.Background()

	s := c.Semaphore("partner-api", 2) // at most 2 in flight, fleet-wide
	p1, _ := s.Acquire(ctx)
	p2, _ := s.Acquire(ctx)
	_, err := s.TryAcquire(ctx)
	fmt.Println("third:", errors.Is(err, dlockrt.ErrNotAcquired))

	p1.Release(ctx)
	p3, err := s.TryAcquire(ctx)
	fmt.Println("after a release:", err)
	p2.Release(ctx)
	p3.Release(ctx)
	// Output:
	// third: true
	// after a release: <nil>
}

func ExampleClient_Inspect() {
	srv, _ := dlocktest.Start()
	defer srv.Close()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	// The holder names itself; by default a client is named after its
	// executable.
	worker, _ := dlockrt.New(rdb, &dlockrt.Options{Name: "billing-worker"})
	defer worker.Close()
	oncall, _ := dlockrt.New(rdb, &dlockrt.Options{Name: "oncall"})
	defer oncall.Close()
	ctx := context.Background()

	l, _ := worker.Lock(ctx, "invoice:42", dlockrt.WithTTL(30*time.Second))
	defer l.Release(ctx)

	// Any client reads who holds it, from Redis alone.
	st, err := oncall.Inspect(ctx, "invoice:42")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("held:", st.Lock.Held)
	fmt.Println("by:", st.Lock.Holder.Name, "pid", st.Lock.Holder.PID == os.Getpid())
	fmt.Println("token:", st.Lock.Token == l.Token(), "lease under 30s:", st.Lock.TTL <= 30*time.Second)

	keys, _ := oncall.Keys(ctx, "invoice:", 0)
	fmt.Println("keys:", keys)
	// Output:
	// held: true
	// by: billing-worker pid true
	// token: true lease under 30s: true
	// keys: [invoice:42]
}
