package generator

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/gentest"
	"github.com/dlock-go/dlock/internal/redistest"
)

// deployMain is one build of a service during a rolling deploy: its
// result type is R, which the next build extends.
const deployMain = `package main

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	dlockrt "github.com/dlock-go/dlock/runtime"
)

var runs atomic.Int32

//dlock:fanout key="report"
func report(ctx context.Context) (R, error) {
	runs.Add(1)
	time.Sleep(500 * time.Millisecond)
	return sample(), nil
}

func main() {
	c, err := dlockrt.New(redis.NewClient(&redis.Options{Addr: os.Getenv("REDIS_ADDR")}), nil)
	if err != nil {
		panic(err)
	}
	dlockrt.SetDefault(c)
	r, err := Report(context.Background())
	if err != nil {
		fmt.Println("err", err)
		os.Exit(1)
	}
	fmt.Printf("ok %+v runs=%d\n", r, runs.Load())
}
`

// P23: two builds whose result types differ (a field added during a rolling
// deploy), running side by side against one Redis, never share a flight:
// each runs its job and decodes its own type, where sharing made every
// follower of the other build fail with ErrDecode.
func TestGenerate_rollingDeployNeverSharesAFlight(t *testing.T) {
	srv := redistest.StartServer(t)
	var bins []string
	for i, shape := range []string{
		"type R struct{ Total int }\n\nfunc sample() R { return R{Total: 1} }\n",
		"type R struct {\n\tTotal int\n\tNote  string\n}\n\nfunc sample() R { return R{Total: 2, Note: \"new\"} }\n",
	} {
		dir := gentest.Module(t, map[string]string{"svc/main.go": deployMain, "svc/r.go": "package main\n\n" + shape})
		generateInto(t, dir)
		bin := filepath.Join(t.TempDir(), "svc"+string(rune('a'+i)))
		if out, err := gentest.Go(t, dir, "build", "-o", bin, "./svc"); err != nil {
			t.Fatalf("build %d: %v\n%s", i, err, out)
		}
		bins = append(bins, bin)
	}
	// Each process runs a 500ms job or waits for another's; one still
	// running after a minute is killed (its output says so).
	const limit = time.Minute
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	var wg sync.WaitGroup
	outs := make([]string, 4)
	for i := range outs {
		wg.Go(func() {
			cmd := exec.CommandContext(ctx, bins[i%2])
			cmd.WaitDelay = 10 * time.Second // for the output, once the process is killed
			cmd.Env = append(cmd.Environ(), "REDIS_ADDR="+srv.Addr())
			out, err := cmd.CombinedOutput()
			outs[i] = strings.TrimSpace(string(out))
			if ctx.Err() != nil {
				outs[i] += fmt.Sprintf(" (timed out after %v waiting for the process to exit)", limit)
			} else if err != nil {
				outs[i] += " (" + err.Error() + ")"
			}
		})
	}
	waitGroup(t, &wg, limit+time.Minute, "the four processes")
	for i, out := range outs {
		want := "ok {Total:1} runs="
		if i%2 == 1 {
			want = "ok {Total:2 Note:new} runs="
		}
		if !strings.HasPrefix(out, want) {
			t.Errorf("build %d, process %d: %q; want %q...", i%2, i, out, want)
		}
	}
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
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}
