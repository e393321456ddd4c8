package dlockrt

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/history"
	"github.com/dlock-go/dlock/internal/redistest"
)

func init() { helpers["soaker"] = helperSoaker }

// helperSoaker is one process of the soak: lockers (two hot keys),
// semaphore users (limit 2) and fanout callers (one key per 300ms round; a
// quarter of the runs fail), until the file STOP_FILE exists; on a standalone server it also
// loses a script's reply now and then (its own fault, recorded as a
// window), each operation recorded in the
// history file HISTORY as process ID (see internal/history). A holder
// believes it holds from the acquire's return until it calls Release or
// sees Done closed. Every call that returns later than its deadline + 1s
// is counted as late:<ID> in the stats on ORACLE_ADDR; at the end the
// process counts its leftover subscriptions there. It also stops at
// DEADLINE (unix ms), in case the driver died. Env: LOCK_ADDR,
// ORACLE_ADDR, ORACLE, ID, STOP_FILE, DEADLINE, HISTORY, and SENTINELS or
// CLUSTER (addresses, comma-separated) instead of LOCK_ADDR.
func helperSoaker() int {
	env := os.Getenv
	// Half the processes let go-redis retry (a lost reply's retry then
	// meets the script's own earlier run), half do not.
	retries := -1
	if n, _ := strconv.Atoi(env("ID")); n%2 == 1 {
		retries = 0 // go-redis's default: 3
	}
	dropper := redistest.NewReplyDropper()
	var rdb redis.UniversalClient = redis.NewClient(&redis.Options{Addr: env("LOCK_ADDR"), MaxRetries: retries, Dialer: dropper.Dial})
	if s := env("SENTINELS"); s != "" {
		rdb = redis.NewFailoverClient(&redis.FailoverOptions{MasterName: redistest.MasterName, SentinelAddrs: strings.Split(s, ",")})
	}
	if s := env("CLUSTER"); s != "" {
		rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(s, ",")})
	}
	ordb := redis.NewClient(&redis.Options{Addr: env("ORACLE_ADDR")})
	name, id := env("ORACLE"), env("ID")
	c, err := New(rdb, &Options{Prefix: name, TTL: time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rec, err := history.Create(env("HISTORY"), "p"+id)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	stats := oracle{name: name}.keys("")[2]
	ms, _ := strconv.ParseInt(env("DEADLINE"), 10, 64)
	deadline := time.UnixMilli(ms) // in case the driver died
	running := func() bool {
		_, err := os.Stat(env("STOP_FILE"))
		return os.IsNotExist(err) && time.Now().Before(deadline)
	}
	// timed runs a blocking call under a deadline of limit.
	timed := func(limit time.Duration, f func(ctx context.Context)) {
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		defer cancel()
		start := time.Now()
		f(ctx)
		if time.Since(start) > limit+time.Second {
			ordb.HIncrBy(context.Background(), stats, "late:"+id, 1)
		}
	}
	sem := c.Semaphore("sem", 2)
	var wg sync.WaitGroup
	if env("LOCK_ADDR") != "" {
		wg.Go(func() { // lost replies: now and then, one script's reply is lost after the server ran it
			for running() {
				time.Sleep(time.Duration(500+rand.IntN(1000)) * time.Millisecond)
				w := rec.Call(history.Event{Kind: history.Fault, Op: "a script's reply lost (server ran it)", Effect: history.None})
				dropper.Arm("evalsha")
				select {
				case <-dropper.Dropped():
				case <-time.After(time.Second):
					dropper.Arm("")
				}
				rec.Return(w, history.Event{})
			}
		})
	}
	for range 2 {
		wg.Go(func() { // locks
			for running() {
				key := "k" + strconv.Itoa(rand.IntN(2))
				op := rec.Call(history.Event{Kind: history.Lock, Op: history.Acquire, Key: key})
				var l *Lock
				var err error
				timed(3*time.Second, func(ctx context.Context) { l, err = c.Lock(ctx, key) })
				if err != nil {
					rec.Return(op, history.Event{Err: err.Error()})
					continue
				}
				rec.Return(op, history.Event{Token: l.Token()})
				soakHold(rec, history.Lock, op, l.Done(), l.Release)
			}
		})
		wg.Go(func() { // semaphores
			for running() {
				op := rec.Call(history.Event{Kind: history.Semaphore, Op: history.Acquire, Key: "sem", Limit: 2})
				var p *Permit
				var err error
				timed(3*time.Second, func(ctx context.Context) { p, err = sem.Acquire(ctx) })
				if err != nil {
					rec.Return(op, history.Event{Err: err.Error()})
					continue
				}
				rec.Return(op, history.Event{})
				soakHold(rec, history.Semaphore, op, p.Done(), p.Release)
			}
		})
		wg.Go(func() { // fanouts
			for running() {
				round := "fan" + strconv.FormatInt(time.Now().UnixMilli()/300, 10)
				timed(3*time.Second, func(ctx context.Context) {
					op := rec.Call(history.Event{Kind: history.Fanout, Op: history.Call, Key: round})
					b, err := c.Fanout(ctx, round, func(ctx context.Context) ([]byte, error) {
						since := history.Now()
						rec.Call(history.Event{Kind: history.Fanout, Op: history.Lead, Key: round, Since: since})
						time.Sleep(50 * time.Millisecond)
						v := newOwnerID()
						if rand.IntN(4) == 0 {
							v = "error " + v
						}
						rec.Call(history.Event{Kind: history.Fanout, Op: history.Run, Key: round, Value: v, Since: since})
						if strings.HasPrefix(v, "error ") {
							return nil, errors.New(v)
						}
						return []byte(v), nil
					}, WithTimeout(2*time.Second))
					var re *RemoteError
					switch {
					case err == nil:
						rec.Return(op, history.Event{Value: string(b)})
					case errors.As(err, &re):
						rec.Return(op, history.Event{Value: re.Message})
					default:
						rec.Return(op, history.Event{Err: err.Error()})
					}
				})
			}
		})
	}
	wg.Wait()
	settled := time.Now().Add(3 * time.Second)
	for c.mux.numChannels() > 0 && time.Now().Before(settled) {
		time.Sleep(10 * time.Millisecond) // the writer unsubscribes in the background
	}
	ordb.HIncrBy(context.Background(), stats, "leftover", int64(c.mux.numChannels()))
	c.Close()
	if err := rec.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// soakHold is a holder's critical section: 0-4ms, or one time in twenty
// 0.3-1.5s (across the watchdog's renewals and the faults). It stops
// believing when it sees done closed (recorded as Lost) or when it calls
// release.
func soakHold(rec *history.Recorder, kind string, lease int64, done <-chan struct{}, release func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	d := time.Duration(rand.IntN(5)) * time.Millisecond
	if rand.IntN(20) == 0 {
		d = time.Duration(300+rand.IntN(1200)) * time.Millisecond
	}
	select {
	case <-done:
	case <-time.After(d):
	}
	select {
	case <-done:
		rec.Call(history.Event{Kind: kind, Op: history.Lost, Lease: lease})
		release(ctx)
		return
	default:
	}
	op := rec.Call(history.Event{Kind: kind, Op: history.Release, Lease: lease})
	if err := release(ctx); err != nil {
		rec.Return(op, history.Event{Err: err.Error()})
		return
	}
	rec.Return(op, history.Event{})
}

// soakFault is one step of a fault schedule: effect says what it may do
// to the promises (history.Reset: lose acknowledged writes or drop keys
// early; history.None: nothing, if dlock is right).
type soakFault struct {
	name   string
	effect string
	do     func()
}

// The soak: three processes run locks, semaphores and fanouts on hot keys
// through a TCP proxy while a fault schedule runs: SIGKILL of a process
// (restarted), SIGSTOP of a process past its leases, CLIENT KILL TYPE
// pubsub, the network cut both ways and one way, slowed, the server
// restarted without persistence, and the server's clock jumped forward
// past the leases and back. The checked history is the report (see
// soakReport). make test runs each fault once (about 15s); make soak runs
// the schedule for DLOCK_SOAK.
func TestSoak(t *testing.T) {
	srv := redistest.StartFakeClockServer(t)
	proxy := redistest.StartProxy(t, srv.Addr())
	admin := srv.Client()
	for5 := func(f func()) func() {
		return func() { f(); time.Sleep(500 * time.Millisecond); proxy.Restore() }
	}
	faults := []soakFault{
		{"CLIENT KILL TYPE pubsub", history.None, func() { admin.Do(context.Background(), "CLIENT", "KILL", "TYPE", "pubsub") }},
		{"network cut 500ms", history.None, func() { for5(proxy.Cut)(); proxy.DropAll() }},
		{"requests lost 500ms (one way)", history.None, for5(func() { proxy.CutOneWay(true) })},
		{"replies lost 500ms (one way)", history.None, for5(func() { proxy.CutOneWay(false) })},
		{"network delayed 20ms for 500ms", history.None, for5(func() { proxy.Delay(20 * time.Millisecond) })},
		{"redis-server restart without persistence", history.Reset, srv.Restart},
		{"server clock jumps 2s forward", history.Reset, func() { srv.JumpClock(2 * time.Second) }},
		// Until the clock is past its old readings again, a key that
		// expires and is taken afresh gets a smaller token.
		{"server clock jumps 2s back", history.ClockBack, func() { srv.JumpClock(-2 * time.Second); time.Sleep(2 * time.Second) }},
	}
	runSoak(t, "standalone", soakDuration(t), []string{"LOCK_ADDR=" + proxy.Addr()}, faults)
}

// The soak on a Sentinel group: a split brain (the primary cut off from
// its replica and the Sentinels while clients still reach it; the
// Sentinels promote the replica, and the old primary's writes are lost
// when it rejoins as a replica), and forced failovers. make test runs each
// fault once (about 35s: a split brain and its healing take 20s).
func TestSoak_sentinelFailovers(t *testing.T) {
	g := redistest.StartSentinel(t)
	faults := []soakFault{
		// Each window lasts a second more: clients may still reach the
		// demoted server for a moment.
		{"Sentinel split brain (primary cut from replica and Sentinels)", history.Reset, func() { g.SplitBrain(); g.Heal(); time.Sleep(time.Second) }},
		{"Sentinel failover", history.Reset, func() { g.Failover(); time.Sleep(time.Second) }},
	}
	runSoak(t, "Sentinel", soakDuration(t), []string{"SENTINELS=" + strings.Join(g.SentinelAddrs(), ",")}, faults)
}

// soakDuration is DLOCK_SOAK (make soak), or 0 (make test): then every
// fault of the schedule runs once.
func soakDuration(t *testing.T) time.Duration {
	v := os.Getenv("DLOCK_SOAK")
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("DLOCK_SOAK=%q: %v", v, err)
	}
	return d
}

// runSoak runs three soaker processes (env says where Redis is) while it
// injects the given faults, kill -9 and SIGSTOP in turn, each recorded as
// a window of the history: every fault once when dur is 0, else again and
// again for dur. Then it stops the processes and checks the history.
func runSoak(t *testing.T, setup string, dur time.Duration, env []string, extra []soakFault) {
	name := "soak-" + strconv.Itoa(rand.IntN(1e9))
	dir := t.TempDir()
	stopFile := filepath.Join(dir, "stop")
	// The soakers stop by themselves 10 minutes after the schedule's end
	// if the driver never tells them to (it died).
	deadline := strconv.FormatInt(time.Now().Add(dur+10*time.Minute).UnixMilli(), 10)
	start := func(id int) *child {
		return startHelper(t, "soaker", append(env, "ORACLE_ADDR="+standaloneAddr(t), "HISTORY="+filepath.Join(dir, strconv.Itoa(id)+".jsonl"),
			"ORACLE="+name, "ID="+strconv.Itoa(id), "STOP_FILE="+stopFile, "DEADLINE="+deadline)...)
	}
	drv, err := history.Create(filepath.Join(dir, "driver.jsonl"), "driver")
	if err != nil {
		t.Fatal(err)
	}
	window := func(name, effect string, target int, f func()) {
		tgt := ""
		if target >= 0 {
			tgt = "p" + strconv.Itoa(target)
		}
		w := drv.Call(history.Event{Kind: history.Fault, Op: name, Effect: effect, Target: tgt})
		f()
		drv.Return(w, history.Event{})
	}
	began := time.Now()
	procs := map[int]*child{}
	ids := map[int]int{}
	for id := range 3 {
		procs[id], ids[id] = start(id), id
	}
	paused := map[string]bool{}
	count := map[string]int{}
	faults := append(extra,
		soakFault{"kill -9 a client process", history.Kill, nil},
		soakFault{"SIGSTOP a holder 1.5s (past its 1s TTL)", history.Pause, nil})
	var killed []*child
	for step := 0; step < len(faults) || time.Since(began) < dur; step++ {
		time.Sleep(700 * time.Millisecond) // the load runs between faults
		f := faults[step%len(faults)]
		switch f.effect {
		case history.Kill: // and start another in its place
			victim, id := procs[step%3], ids[step%3]
			procs[step%3], ids[step%3] = start(10+step), 10+step
			window(f.name, f.effect, id, func() { victim.kill() })
			killed = append(killed, victim)
		case history.Pause:
			p, id := procs[(step+1)%3], ids[(step+1)%3]
			window(f.name, f.effect, id, func() {
				p.signal(syscall.SIGSTOP)
				time.Sleep(1500 * time.Millisecond)
				p.signal(syscall.SIGCONT)
			})
			paused["late:"+strconv.Itoa(id)] = true
		default:
			window(f.name, f.effect, -1, f.do)
		}
		count[f.name]++
	}
	time.Sleep(time.Second) // the load after the last fault
	if err := os.WriteFile(stopFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range procs { // each stops within a call and a hold of seeing the file
		p.wait(t, 2*time.Minute)
	}
	for _, p := range killed {
		p.wait(t, 10*time.Second)
	}
	if err := drv.Close(); err != nil {
		t.Fatal(err)
	}
	soakReport(t, setup, name, dir, time.Since(began), count, paused)
}

// soakReport checks the history (internal/history: porcupine against
// the lock, semaphore and fanout models; violations inside the documented
// windows — a process paused past its lease, a restart, failover or split
// brain that lost acknowledged writes, a clock jump past the leases, a
// clock gone back (for tokens) — are counted and
// excused, any other fails the test, with porcupine's visualization of it
// written to a file the failure names) and what must hold whatever the
// faults: nobody alive waits past its deadline, nothing is left
// subscribed, and work goes on. With DLOCK_SOAK_REPORT set, the table is
// appended to that file (make soak prints it).
func soakReport(t *testing.T, setup, name, dir string, dur time.Duration, faults map[string]int, paused map[string]bool) {
	ctx := context.Background()
	rep, err := history.Check(dir, history.Options{Name: strings.ReplaceAll(t.Name(), "/", "_") + "-"})
	if err != nil {
		t.Fatal(err)
	}
	all, _ := newRedis(t).HGetAll(ctx, oracle{name: name}.keys("")[2]).Result()
	late := 0
	for k, v := range all {
		if strings.HasPrefix(k, "late:") && !paused[k] {
			n, _ := strconv.Atoi(v)
			late += n
		}
	}
	leftover, _ := strconv.Atoi(all["leftover"])
	work := map[string]int{}
	for _, r := range rep.Rows {
		work[strings.Fields(r.Promise)[0]] += r.Ops
	}
	table := rep.Markdown(setup)
	t.Logf("%s, %v, faults %v\n%s", t.Name(), dur, faults, table)
	if path := os.Getenv("DLOCK_SOAK_REPORT"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := f.Stat(); st.Size() > 0 {
			_, table, _ = strings.Cut(strings.SplitN(table, "\n", 2)[1], "\n") // rows only
		}
		f.WriteString(table)
		f.Close()
	}
	if len(rep.Failures) > 0 {
		kept := filepath.Join(os.TempDir(), name+"-history")
		if err := os.CopyFS(kept, os.DirFS(dir)); err != nil {
			kept = fmt.Sprintf("(not kept: %v)", err)
		}
		t.Errorf("the history (kept in %s) breaks a promise outside the documented windows:\n%s", kept, strings.Join(rep.Failures, "\n"))
	}
	if late != 0 || leftover != 0 || work["lock:"] == 0 || work["semaphore:"] == 0 || work["fanout:"] == 0 {
		t.Errorf("soak found: %d late calls, %d leftover subscriptions; operations %v", late, leftover, work)
	}
}
