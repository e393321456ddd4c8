package dlockrt_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	dlockrt "github.com/dlock-go/dlock/runtime"
)

func ExampleNew() {
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("REDIS_ADDR")})
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

func ExampleClient_Once() {
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("REDIS_ADDR")})
	defer rdb.Close()
	c, _ := dlockrt.New(rdb, nil)
	defer c.Close()
	ctx := context.Background()

	l, err := c.Once(ctx, "example:reindex")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Release(ctx)

	// A second attempt, from anywhere in the fleet, fails at once.
	_, err = c.Once(ctx, "example:reindex")
	fmt.Println(errors.Is(err, dlockrt.ErrNotAcquired))
	// Output: true
}

func ExampleClient_Lock() {
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("REDIS_ADDR")})
	defer rdb.Close()
	c, _ := dlockrt.New(rdb, nil)
	defer c.Close()
	ctx := context.Background()

	first, _ := c.Once(ctx, "example:account:7")
	go func() {
		time.Sleep(10 * time.Millisecond) // some work
		first.Release(ctx)
	}()

	// Lock waits for the release (announced over pub/sub), up to its context.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, err := c.Lock(wctx, "example:account:7")
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
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("REDIS_ADDR")})
	defer rdb.Close()
	c, _ := dlockrt.New(rdb, nil)
	defer c.Close()
	ctx := context.Background()

	m, err := c.Multi(ctx, "example:acct:1", "example:acct:2")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Release(ctx)

	_, err = c.Multi(ctx, "example:acct:2", "example:acct:3")
	var me *dlockrt.MultiLockError
	if errors.As(err, &me) {
		fmt.Println("held by others:", me.Keys)
	}
	// Output: held by others: [example:acct:2]
}
