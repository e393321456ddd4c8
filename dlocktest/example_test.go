package dlocktest_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/dlocktest"
	dlockrt "github.com/dlock-go/dlock/runtime"
)

// Start runs an in-process server; point any number of clients at it. In
// a test, dlocktest.NewClient(t) does all of this and closes it at the end.
func ExampleStart() {
	srv, err := dlocktest.Start()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	var clients []*dlockrt.Client
	for range 2 { // like two processes
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		defer rdb.Close()
		c, _ := dlockrt.New(rdb, nil)
		defer c.Close()
		clients = append(clients, c)
	}
	ctx := context.Background()
	l, _ := clients[0].Once(ctx, "job")
	_, err = clients[1].Once(ctx, "job")
	fmt.Println(errors.Is(err, dlockrt.ErrNotAcquired))
	l.Release(ctx)
	// Output: true
}
