package profiles_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/dlocktest"
	"github.com/dlock-go/dlock/examples/profiles"
	dlockrt "github.com/dlock-go/dlock/runtime"
)

// A generated wrapper: five concurrent callers, one run of the function.
func ExampleLoadProfile() {
	srv, _ := dlocktest.Start() // an in-process Redis; use yours in production
	defer srv.Close()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	c, _ := dlockrt.New(rdb, nil)
	defer c.Close()
	dlockrt.SetDefault(c) // what package-level wrappers use

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup // every call returns by ctx's deadline, so Wait does too
	for range 5 {
		wg.Go(func() {
			if _, err := profiles.LoadProfile(ctx, "ada"); err != nil {
				fmt.Println(err)
			}
		})
	}
	wg.Wait()
	p, _ := profiles.LoadProfile(ctx, "ada") // within ResultTTL: the stored result
	fmt.Printf("%+v, loads: %d\n", p, profiles.Loads.Load())
	// Output: {Name:ada Visits:3}, loads: 1
}
