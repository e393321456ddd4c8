// Command quickstart shows dlock's generated wrappers at work across real
// processes: it starts four worker processes (itself, re-executed) that call
// BuildReport for the same three days at the same moment, and Cleanup once
// each, then prints how many calls there were, how many times the job ran,
// what every caller got, and which process ran the once-only job.
//
//	go run ./examples/quickstart                 # an embedded in-process server
//	REDIS_URL=redis://localhost:6379/0 go run ./examples/quickstart
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/dlocktest"
	dlockrt "github.com/dlock-go/dlock/runtime"
)

const (
	workers    = 4
	goroutines = 5
)

var days = []string{"mon", "tue", "wed"}

func main() {
	if os.Getenv("QUICKSTART_WORKER") != "" {
		if err := worker(); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		return
	}
	if err := parent(); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func parent() error {
	url := os.Getenv("REDIS_URL")
	if url == "" {
		srv, err := dlocktest.Start()
		if err != nil {
			return err
		}
		defer srv.Close()
		url = "redis://" + srv.Addr()
		fmt.Printf("REDIS_URL is not set: using an embedded in-process Redis-compatible server at %s.\n", srv.Addr())
	} else {
		fmt.Println("Using Redis at REDIS_URL.")
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		return err
	}
	client := redis.NewClient(opts)
	defer client.Close()
	run := "quickstart-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	start := time.Now().Add(time.Second)

	fmt.Printf("Starting %d worker processes; each calls BuildReport(day) from %d goroutines for %v, then Cleanup().\n\n",
		workers, goroutines, days)
	var mu sync.Mutex
	got := map[string]map[string]int{} // day -> report -> callers
	var cleaned, skipped []string
	calls := 0
	var wg sync.WaitGroup
	for w := range workers {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "QUICKSTART_WORKER="+strconv.Itoa(w+1), "QUICKSTART_URL="+url,
			"QUICKSTART_PREFIX="+run, "QUICKSTART_START="+strconv.FormatInt(start.UnixMilli(), 10))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		wg.Go(func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				f := strings.SplitN(sc.Text(), "\t", 3)
				mu.Lock()
				switch f[0] {
				case "report":
					calls++
					if got[f[1]] == nil {
						got[f[1]] = map[string]int{}
					}
					got[f[1]][f[2]]++
				case "cleanup-ran":
					cleaned = append(cleaned, "worker "+f[1])
				case "cleanup-skipped":
					skipped = append(skipped, "worker "+f[1])
				}
				mu.Unlock()
			}
			cmd.Wait()
		})
	}
	wg.Wait()

	ctx := context.Background()
	ok := calls == workers*goroutines*len(days) && len(cleaned) == 1
	fmt.Printf("BuildReport: %d calls from %d processes.\n", calls, workers)
	for _, day := range days {
		n, _ := client.Get(ctx, run+":executions:"+day).Int()
		defer client.Del(ctx, run+":executions:"+day) // the quickstart cleans up after itself
		ok = ok && n == 1 && len(got[day]) == 1
		fmt.Printf("  %s: the job ran %d time(s); ", day, n)
		var results []string
		for r, k := range got[day] {
			results = append(results, fmt.Sprintf("%d callers got %s", k, r))
		}
		sort.Strings(results)
		fmt.Println(strings.Join(results, "; "))
	}
	fmt.Printf("\nCleanup: ran in %d process (%s); %d got ErrNotAcquired (%s).\n",
		len(cleaned), strings.Join(cleaned, ", "), len(skipped), strings.Join(skipped, ", "))
	if !ok {
		return errors.New("unexpected outcome: see above")
	}
	return inspectCleanup(ctx, client, run)
}

// inspectCleanup prints what Redis holds for Cleanup's key now, as
// `dlock inspect` would (the generated CleanupKey names the key): the lock
// is free, and keeps its last fencing token and who released it.
func inspectCleanup(ctx context.Context, rdb *redis.Client, prefix string) error {
	c, err := dlockrt.New(rdb, &dlockrt.Options{Prefix: prefix, Startup: dlockrt.StartupSkip})
	if err != nil {
		return err
	}
	defer c.Close()
	key, err := CleanupKey()
	if err != nil {
		return err
	}
	st, err := c.Inspect(ctx, key)
	if err != nil {
		return err
	}
	if st.Lock == nil || st.Lock.Held || !strings.HasPrefix(st.Lock.Holder.Name, "quickstart-worker-") {
		return fmt.Errorf("inspect %s: %+v; want the lock released by a worker", key, st.Lock)
	}
	fmt.Printf("\ndlock inspect %s:\n  lock free, released by %s; its last token %d is kept, so the next is larger\n",
		key, st.Lock.Holder, st.Lock.Token)
	return nil
}

// worker is one process: it calls the generated wrappers at the start time.
func worker() error {
	opts, err := redis.ParseURL(os.Getenv("QUICKSTART_URL"))
	if err != nil {
		return err
	}
	rdb = redis.NewClient(opts)
	defer rdb.Close()
	prefix = os.Getenv("QUICKSTART_PREFIX")
	c, err := dlockrt.New(rdb, &dlockrt.Options{Prefix: prefix, Name: "quickstart-worker-" + os.Getenv("QUICKSTART_WORKER")})
	if err != nil {
		return err
	}
	defer c.Close()
	dlockrt.SetDefault(c)
	ms, _ := strconv.ParseInt(os.Getenv("QUICKSTART_START"), 10, 64)
	time.Sleep(time.Until(time.UnixMilli(ms))) // every process starts at once
	ctx := context.Background()
	id := os.Getenv("QUICKSTART_WORKER")
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, day := range days {
		for range goroutines {
			wg.Go(func() {
				r, err := BuildReport(ctx, day)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					fmt.Printf("report\t%s\terror: %v\n", day, err)
					return
				}
				fmt.Printf("report\t%s\t%+v\n", day, r)
			})
		}
	}
	wg.Go(func() {
		err := Cleanup(ctx)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			fmt.Printf("cleanup-ran\t%s\n", id)
		case errors.Is(err, dlockrt.ErrNotAcquired):
			fmt.Printf("cleanup-skipped\t%s\n", id)
		default:
			fmt.Fprintln(os.Stderr, "cleanup:", err)
		}
	})
	wg.Wait()
	return nil
}
