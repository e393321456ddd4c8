package dlockrt

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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

// soakFault is one step of a fault schedule: effect says what it may do
// to the promises (history.Reset: lose acknowledged writes or drop keys
// early; history.None: nothing, if dlock is right).
type soakFault struct {
	name   string
	effect string
	do     func()
}

// The soak: three processes run locks, multi-locks, semaphores and fanouts
// on hot keys through a TCP proxy while a fault schedule runs: besides
// runSoak's own faults, CLIENT KILL TYPE pubsub, the network cut both ways
// and one way, slowed, the server restarted without persistence, and the
// server's clock jumped forward past the leases and back. The checked
// history is the report (see soakReport). make test runs each fault once;
// make soak runs the schedule for DLOCK_SOAK.
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
	runSoak(t, "standalone", soakDuration(t), []string{"LOCK_ADDR=" + proxy.Addr()}, admin, faults)
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
	runSoak(t, "Sentinel", soakDuration(t), []string{"SENTINELS=" + strings.Join(g.SentinelAddrs(), ",")}, g.Client(), faults)
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

// runSoak runs three soaker processes (env says where Redis is; admin is a
// client of it) while it injects the given faults and its own, each
// recorded as a window of the history: kill -9 and SIGSTOP of a process;
// every process cut off for longer than a lease; the holder of the key
// "long" slowed past the loss margin, then cut off from the server; one
// process's replies delayed past its lease; forged messages on dlock's
// channels. Every fault runs once when dur is 0, else again and again for
// dur. Then it stops the processes, checks the history, and checks that
// nothing is left held by nobody.
func runSoak(t *testing.T, setup string, dur time.Duration, env []string, admin redis.UniversalClient, extra []soakFault) {
	name := "soak-" + strconv.Itoa(rand.IntN(1e9))
	dir := t.TempDir()
	stopFile := filepath.Join(dir, "stop")
	// The soakers stop by themselves 10 minutes after the schedule's end
	// if the driver never tells them to (it died).
	deadline := strconv.FormatInt(time.Now().Add(dur+10*time.Minute).UnixMilli(), 10)
	// The process in slot 0 (the first, and each one started in its place)
	// takes its locks with dlock 0.3's lock_acquire, as during a rolling
	// deploy: the builds share every key, and the checker holds both to
	// the same promises.
	start := func(slot, id int) *child {
		e := append(slices.Clip(env), "ORACLE_ADDR="+standaloneAddr(t), "HISTORY="+filepath.Join(dir, strconv.Itoa(id)+".jsonl"),
			"ORACLE="+name, "ID="+strconv.Itoa(id), "STOP_FILE="+stopFile, "DEADLINE="+deadline)
		if slot == 0 {
			e = append(e, "LOCK_ACQUIRE_SCRIPT=testdata/lock_acquire_v0.3.lua")
		}
		return startHelper(t, "soaker", e...)
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
	ldr := &linkDriver{t: t, name: name, ordb: newRedis(t)}
	began := time.Now()
	procs := map[int]*child{}
	ids := map[int]int{}
	for id := range 3 {
		procs[id], ids[id] = start(id, id), id
	}
	live := func() []int {
		var out []int
		for _, id := range ids {
			out = append(out, id)
		}
		return out
	}
	paused := map[string]bool{}
	count := map[string]int{}
	const (
		kill, pause = "kill -9 a client process", "SIGSTOP a process 1.5s (past its 1s leases)"
		cutAll      = "every process cut off 1.5s (past its leases)"
		slowThenCut = "the long lock's holder: replies slowed 300ms (past the loss margin) 1.2s, then its requests cut 1.5s"
		lateGrants  = "one process's replies delayed 1.1s (past its leases) for 6s"
		forged      = "forged messages on dlock's channels"
	)
	faults := append(extra,
		soakFault{kill, history.Kill, nil},
		soakFault{pause, history.Pause, nil},
		soakFault{cutAll, history.None, nil},
		soakFault{slowThenCut, history.None, nil},
		soakFault{lateGrants, history.Late, nil},
		soakFault{forged, history.None, func() { forge(t, admin, name, 500*time.Millisecond) }})
	if v := os.Getenv("DLOCK_SOAK_FAULTS"); v != "" { // to chase one fault: make soak SOAK_FAULTS=...
		re, err := regexp.Compile(v)
		if err != nil {
			t.Fatalf("DLOCK_SOAK_FAULTS: %v", err)
		}
		faults = slices.DeleteFunc(faults, func(f soakFault) bool { return !re.MatchString(f.name) })
		if len(faults) == 0 {
			t.Fatalf("DLOCK_SOAK_FAULTS=%q matches no fault", v)
		}
	}
	var killed []*child
	lastKill := time.Time{}
	for step := 0; step < len(faults) || time.Since(began) < dur; step++ {
		time.Sleep(700 * time.Millisecond) // the load runs between faults
		f := faults[step%len(faults)]
		t.Logf("%s fault: %s", time.Now().Format("15:04:05.000"), f.name) // to place a late call
		switch f.name {
		case kill: // and start another in its place
			victim, id := procs[step%3], ids[step%3]
			procs[step%3], ids[step%3] = start(step%3, 10+step), 10+step
			window(f.name, f.effect, id, func() { victim.kill() })
			killed = append(killed, victim)
			lastKill = time.Now()
		case pause:
			p, id := procs[(step+1)%3], ids[(step+1)%3]
			// The window ends before SIGCONT: whatever the process records
			// inside it, it did before it stopped.
			w := drv.Call(history.Event{Kind: history.Fault, Op: f.name, Effect: f.effect, Target: "p" + strconv.Itoa(id)})
			p.signal(syscall.SIGSTOP)
			time.Sleep(1500 * time.Millisecond)
			drv.Return(w, history.Event{})
			p.signal(syscall.SIGCONT)
			paused["late:"+strconv.Itoa(id)] = true
		case cutAll:
			window(f.name, f.effect, -1, func() {
				ldr.set(live(), "cut")
				time.Sleep(1500 * time.Millisecond)
				ldr.set(live(), "healthy")
			})
		case slowThenCut:
			// Renewals sent a third into the lease come back 300ms later,
			// before the loss point: the holder keeps the lease on a round
			// trip six times the loss margin. Then its requests are cut
			// (replies still slow, so the last renewal's comes back as
			// late): it must stop believing a lease after its last renewal
			// reached the server, not after its reply came back, when a
			// waiter takes the key. (At 450ms a busy process's first
			// renewal now and then missed its loss point, the lease was
			// lost before the cut, and a reply-based deadline went unseen.)
			id := ldr.freshLongHolder(live())
			if id < 0 {
				t.Logf("no process took the long lock within 10s: %q skipped", f.name)
				continue
			}
			window(f.name, f.effect, id, func() {
				ldr.set([]int{id}, "slow-replies 300")
				time.Sleep(1200 * time.Millisecond)
				ldr.set([]int{id}, "cut-requests slow-replies 300")
				time.Sleep(1500 * time.Millisecond)
				ldr.set([]int{id}, "healthy")
			})
		case lateGrants:
			// The window opens once the link holds every reply and closes
			// before it heals: a grant returned 1.1s into it came in a
			// reply the server sent 1.1s before, past its lease (Late).
			id := ids[step%3]
			ldr.set([]int{id}, "slow-replies 1100")
			w := drv.Call(history.Event{Kind: history.Fault, Op: f.name, Effect: f.effect, Target: "p" + strconv.Itoa(id), Delay: 1100})
			time.Sleep(6 * time.Second)
			drv.Return(w, history.Event{})
			ldr.set([]int{id}, "healthy")
		default:
			window(f.name, f.effect, -1, f.do)
		}
		count[f.name]++
	}
	time.Sleep(2500 * time.Millisecond) // the load after the last fault, and its settling
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
	// A killed process's lease and place in a queue lapse within
	// waiterLease of its death; then nothing may be held.
	time.Sleep(time.Until(lastKill.Add(waiterLease + 500*time.Millisecond)))
	soakReport(t, setup, name, dir, time.Since(began), count, paused, heldAtRest(t, admin, name))
}

// linkDriver sets the soakers' links (see soaker.obeyLink) through the
// oracle, and waits until each has applied the state.
type linkDriver struct {
	t    *testing.T
	name string
	ordb *redis.Client
	seq  int
}

func (d *linkDriver) set(ids []int, state string) {
	d.seq++
	seq := strconv.Itoa(d.seq)
	for _, id := range ids {
		d.ordb.Publish(bg(), d.name+":link:"+strconv.Itoa(id), seq+" "+state)
	}
	for _, id := range ids {
		redistest.WaitFor(d.t, 10*time.Second, "process "+strconv.Itoa(id)+" to set its link "+state, func(ctx context.Context) bool {
			v, err := d.ordb.Get(ctx, d.name+":link-ack:"+strconv.Itoa(id)).Result()
			return err == nil && v == seq
		})
	}
}

// freshLongHolder waits until a live process takes the key "long" anew (it
// then holds it for 3s), and returns its ID; -1 when none did within 10s.
func (d *linkDriver) freshLongHolder(live []int) int {
	key := d.name + ":long-holder"
	before, _ := d.ordb.Get(bg(), key).Result()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		v, _ := d.ordb.Get(bg(), key).Result()
		if v != before && v != "" {
			if id, _ := strconv.Atoi(strings.Fields(v)[0]); slices.Contains(live, id) {
				return id
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return -1
}

// forge publishes, for d, garbage and forged envelopes on the channels of
// the soak's hot keys: the current fanout round's, the locks' and the
// semaphore's. None may reach a caller as a value, wake anyone wrongly for
// good, or crash anything.
func forge(t *testing.T, admin redis.UniversalClient, prefix string, d time.Duration) {
	payloads := []string{
		"released", "free 99999999999", "free -1", "free x", "",
		string(envelope{gen: "forged", status: statusOK, payload: []byte("forged")}.encode()),
		string(envelope{gen: "", status: statusOK, payload: []byte("forged")}.encode()),
		string(failure("forged", errors.New("forged")).encode()),
		"\x96\x02\xa1g\x00\xc6\x7f\xff\xff\xff", // a 2 GiB payload declared
		"\x93\x01\x02",
	}
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		round := "fan" + strconv.FormatInt(time.Now().UnixMilli()/300, 10)
		tag := func(k string) string { return prefix + ":{" + k + "}" }
		for _, ch := range []string{fanChannel(tag(round)), lockChannel(tag("k0")), lockChannel(tag("k1")), lockChannel(tag("long")), tag("sem") + ":sem:ch"} {
			admin.SPublish(bg(), ch, payloads[rand.IntN(len(payloads))])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// heldAtRest lists what the soak's keys still hold once every soaker has
// stopped (and closed its client) and every killed one's leases lapsed: a
// lock or fanout lease, a permit or a queued waiter. Each is held by
// nobody.
func heldAtRest(t *testing.T, admin redis.UniversalClient, prefix string) []string {
	var held []string
	var mu sync.Mutex
	look := func(ctx context.Context, c *redis.Client) error {
		now, err := c.Time(ctx).Result()
		if err != nil {
			return err
		}
		ms := float64(now.UnixMilli())
		it := c.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		for it.Next(ctx) {
			k := it.Val()
			var what string
			switch {
			case strings.HasSuffix(k, ":lock"):
				if v, _ := c.Get(ctx, k).Result(); heldValue(v) {
					what = fmt.Sprintf("%s = %q", k, v)
				}
			case strings.HasSuffix(k, ":fan"):
				if v, _ := c.Get(ctx, k).Result(); strings.HasPrefix(v, "0 ") && !strings.HasPrefix(v, "0 -") {
					what = fmt.Sprintf("%s = %q", k, v)
				}
			case strings.HasSuffix(k, ":sem"):
				zs, _ := c.ZRangeWithScores(ctx, k, 0, -1).Result()
				for _, z := range zs {
					m, _ := z.Member.(string)
					live := (strings.HasPrefix(m, "h") && z.Score > ms && z.Score < 1e13) ||
						(strings.HasPrefix(m, "l") && z.Score > 2e13+ms && z.Score < 3e13)
					if live {
						what += fmt.Sprintf("%s holds %s (score %.0f) ", k, m, z.Score)
					}
				}
			}
			if what != "" {
				mu.Lock()
				held = append(held, what)
				mu.Unlock()
			}
		}
		return it.Err()
	}
	var err error
	switch c := admin.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(bg(), look)
	case *redis.Client:
		err = look(bg(), c)
	}
	if err != nil {
		t.Errorf("looking for keys held at rest: %v", err)
	}
	return held
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
func soakReport(t *testing.T, setup, name, dir string, dur time.Duration, faults map[string]int, paused map[string]bool, heldAtRest []string) {
	ctx := context.Background()
	o := history.Options{Name: strings.ReplaceAll(t.Name(), "/", "_") + "-"}
	if setup == "Sentinel" {
		o.Settle = 3 * time.Second // clients find the new primary through the Sentinels
	}
	rep, err := history.Check(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := newRedis(t).HGetAll(ctx, oracle{name: name}.keys("")[2]).Result()
	late, notFinal := 0, 0
	for k, v := range all {
		n, _ := strconv.Atoi(v)
		switch {
		case strings.HasPrefix(k, "late:") && !paused[k]:
			late += n
		case strings.HasPrefix(k, "close-not-final:"):
			notFinal += n
		}
	}
	var lateCalls []string // what was late, in processes the driver did not stop
	for _, l := range newRedis(t).LRange(ctx, oracle{name: name}.keys("")[2]+":late", 0, -1).Val() {
		if id, _, _ := strings.Cut(strings.TrimPrefix(l, "p"), " "); !paused["late:"+id] {
			lateCalls = append(lateCalls, l)
		}
	}
	leftover, _ := strconv.Atoi(all["leftover"])
	work := map[string]int{}
	for _, r := range rep.Rows {
		work[strings.Fields(r.Promise)[0]] += r.Ops
	}
	table := rep.Markdown(setup)
	// A failure comes first, with the windows' times: a log that is cut
	// short (CI keeps its head and tail) still shows it whole.
	if len(rep.Failures) > 0 {
		t.Errorf("the history breaks a promise outside the documented windows:\n%s\n%s", strings.Join(rep.Failures, "\n"), rep.Timeline)
	}
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
	if len(rep.Failures) > 0 || os.Getenv("DLOCK_SOAK_KEEP") != "" {
		kept := filepath.Join(os.TempDir(), name+"-history")
		if err := os.CopyFS(kept, os.DirFS(dir)); err != nil {
			kept = fmt.Sprintf("(not kept: %v)", err)
		}
		t.Logf("history kept in %s", kept)
	}
	if late != 0 || leftover != 0 || notFinal != 0 || work["lock:"] == 0 || work["semaphore:"] == 0 || work["fanout:"] == 0 {
		t.Errorf("soak found: %d late calls %q, %d leftover subscriptions, %d leases believed after Close; operations %v", late, lateCalls, leftover, notFinal, work)
	}
	if len(heldAtRest) > 0 {
		t.Errorf("held by nobody once every process stopped:\n%s", strings.Join(heldAtRest, "\n"))
	}
}
