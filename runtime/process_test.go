package dlockrt

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/redistest"
)

// child is a helper process: the test binary re-run in a role.
type child struct {
	role   string
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has exited; err is set then
	err    error         // what cmd.Wait returned
}

// newChild prepares the test binary to run in role, with env ("NAME=value")
// added; its stdout is for the caller to set.
func newChild(role string, env []string) *child {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+role), env...)
	cmd.Stderr = os.Stderr
	return &child{role: role, cmd: cmd, exited: make(chan struct{})}
}

// start starts the child and arranges for it to be killed when the test
// ends; the cleanup waits up to 10s for it to go.
func (c *child) start(t *testing.T) {
	t.Helper()
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start helper %s: %v", c.role, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		c.kill()
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("timed out after 10s waiting for helper %s to exit after SIGKILL", c.role)
		}
	})
}

// kill sends the child SIGKILL.
func (c *child) kill() error { return c.cmd.Process.Kill() }

// signal sends the child sig.
func (c *child) signal(sig os.Signal) error { return c.cmd.Process.Signal(sig) }

// wait returns what cmd.Wait returned once the child has exited. When d
// passes first, it fails the test, naming the child's role (the cleanup
// kills the child). Only the test's goroutine may call it.
func (c *child) wait(t testing.TB, d time.Duration) error {
	t.Helper()
	recv(t, c.exited, d, "helper "+c.role+" to exit")
	return c.err
}

// startHelper re-runs the test binary as a child process in role, with env
// ("NAME=value") added. The child is killed when the test ends.
func startHelper(t *testing.T, role string, env ...string) *child {
	t.Helper()
	c := newChild(role, env)
	c.cmd.Stdout = os.Stderr
	c.start(t)
	return c
}

// startHelperSaying is startHelper for a child that prints a line when it
// reaches the point a test waits for: it returns once the child said want,
// and fails the test when the child says anything else or says nothing
// within 30s.
func startHelperSaying(t *testing.T, role, want string, env ...string) *child {
	t.Helper()
	c := newChild(role, env)
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.start(t)
	type said struct {
		line string
		err  error
	}
	lines := make(chan said, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		lines <- said{line, err}
	}()
	if s := recv(t, lines, 30*time.Second, "helper "+role+" to say "+want); s.err != nil || strings.TrimSpace(s.line) != want {
		t.Fatalf("helper %s said %q, %v; want %s", role, s.line, s.err, want)
	}
	return c
}

func init() {
	helpers["lockers"] = helperLockers
}

// helperLockers runs goroutines that take random keys with Lock for a while
// and report each critical section to the oracle. Env: LOCK_ADDR,
// ORACLE_ADDR, ORACLE, KEYS, GOROUTINES, MILLIS.
func helperLockers() int {
	env := func(k string) string { return os.Getenv(k) }
	atoi := func(k string) int { n, _ := strconv.Atoi(env(k)); return n }
	rdb := redis.NewClient(&redis.Options{Addr: env("LOCK_ADDR")})
	ordb := redis.NewClient(&redis.Options{Addr: env("ORACLE_ADDR")})
	c, err := New(rdb, &Options{Prefix: env("ORACLE"), TTL: 2 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	o := oracle{rdb: ordb, name: env("ORACLE"), ttl: 1800 * time.Millisecond}
	stop := time.Now().Add(time.Duration(atoi("MILLIS")) * time.Millisecond)
	var wg sync.WaitGroup
	for range atoi("GOROUTINES") {
		wg.Go(func() {
			for time.Now().Before(stop) {
				lockerRound(c, o, "k"+strconv.Itoa(rand.IntN(atoi("KEYS"))))
			}
		})
	}
	wg.Wait()
	return 0
}

// lockerRound takes k, runs a short critical section under the oracle and
// releases. Errors (a failover, a timeout) end the round.
func lockerRound(c *Client, o oracle, k string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	l, err := c.Lock(ctx, k)
	if err != nil {
		return err
	}
	defer l.Release(ctx)
	// The oracle has its own deadline: a lock that took long to get must
	// not make the oracle's calls fail.
	octx, ocancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer ocancel()
	id, err := o.enter(octx, k, l.Token())
	if err != nil {
		return fmt.Errorf("oracle: %w", err)
	}
	time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
	if err := o.leave(octx, k, id); err != nil {
		return fmt.Errorf("oracle: %w", err)
	}
	return nil
}

// P2: several processes with several goroutines each contend for a few keys;
// the oracle sees no overlap and no stale token.
func TestLock_mutualExclusionAcrossProcesses(t *testing.T) {
	name := "p2-" + strconv.Itoa(rand.IntN(1e9))
	var cmds []*child
	for range 4 {
		cmds = append(cmds, startHelper(t, "lockers",
			"LOCK_ADDR="+standaloneAddr(t), "ORACLE_ADDR="+standaloneAddr(t), "ORACLE="+name,
			"KEYS=3", "GOROUTINES=8", "MILLIS=2000"))
	}
	for _, cmd := range cmds {
		if err := cmd.wait(t, time.Minute); err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	sections, overlaps, stale, err := oracle{rdb: newRedis(t), name: name}.stats(bg())
	if err != nil {
		t.Fatal(err)
	}
	if sections < 100 || overlaps != 0 || stale != 0 {
		t.Fatalf("sections, overlaps, stale tokens = %d, %d, %d; want >= 100, 0, 0", sections, overlaps, stale)
	}
	t.Logf("%d critical sections over 4 processes, no overlap, no stale token", sections)
}

// P13: a Sentinel failover under load is survived: clients follow the new
// primary, nobody hangs past its context, work goes on afterwards. Double
// grants during the failover are counted and reported, not hidden.
func TestSentinel_failoverUnderLoad(t *testing.T) {
	g := redistest.StartSentinel(t)
	name := "p13-" + strconv.Itoa(rand.IntN(1e9))
	o := oracle{rdb: newRedis(t), name: name, ttl: 1800 * time.Millisecond}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var mu sync.Mutex
	var after, hung int
	var failedOver time.Time
	occ := []string{name + ":occ", name + ":semstats"}
	for range 2 {
		c := newClient(t, g.Client(), &Options{Prefix: name, TTL: 2 * time.Second})
		sem := c.Semaphore("sem", 2)
		for range 3 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					case <-t.Context().Done(): // the test failed before it stopped the load
						return
					default:
					}
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					sem.Do(ctx, func(ctx context.Context) error {
						id := randomID()
						if err := occEnter.Run(ctx, o.rdb, occ, id, 1800, 2).Err(); err != nil {
							return err
						}
						time.Sleep(time.Duration(rand.IntN(5)) * time.Millisecond)      // the work
						return o.rdb.ZRem(context.WithoutCancel(ctx), occ[0], id).Err() // recorded even if the lease ended meanwhile
					})
					cancel()
				}
			})
		}
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					case <-t.Context().Done(): // the test failed before it stopped the load
						return
					default:
					}
					start := time.Now()
					err := lockerRound(c, o, "k"+strconv.Itoa(rand.IntN(3)))
					mu.Lock()
					if time.Since(start) > 3*time.Second+500*time.Millisecond {
						hung++
					}
					if err == nil && !failedOver.IsZero() && start.After(failedOver) {
						after++
					}
					mu.Unlock()
					if err != nil && !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrNotAcquired) {
						t.Errorf("round: %v", err)
					}
				}
			})
		}
	}
	time.Sleep(500 * time.Millisecond) // load before the failover
	g.Failover()
	mu.Lock()
	failedOver = time.Now()
	mu.Unlock()
	time.Sleep(3 * time.Second) // load after it
	close(stop)
	waitGroup(t, &wg, time.Minute, "the load's goroutines to stop")
	sections, overlaps, stale, err := o.stats(bg())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sentinel failover: %d sections, %d double grants, %d stale tokens, %d after the failover", sections, overlaps, stale, after)
	semStats, _ := o.rdb.HGetAll(bg(), occ[1]).Result()
	t.Logf("sentinel failover: semaphore (limit 2) oracle: %v (over = grants past the limit, the failover risk)", semStats)
	if semStats["grants"] == "" {
		t.Errorf("no semaphore permit was granted during the failover test")
	}
	if hung != 0 {
		t.Errorf("%d rounds ran past their context", hung)
	}
	if after == 0 {
		t.Errorf("no lock was taken after the failover: clients did not follow the new primary")
	}
}
