package dlockrt

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/history"
	"github.com/dlock-go/dlock/internal/redistest"
)

func init() { helpers["soaker"] = helperSoaker }

// soakTTL is the soakers' lease: faults are sized against it.
const soakTTL = time.Second

// helperSoaker is one process of the soak, until the file STOP_FILE exists
// (or DEADLINE, unix ms, passes: the driver died). It runs:
//   - lockers on two hot keys: Lock, now and then Once, and now and then a
//     Multi of both keys;
//   - a locker of a key no other process takes (the uncontended path:
//     every try is granted, so a grant a slow link brings back late is
//     seen);
//   - semaphore users (limit 2): Acquire, now and then TryAcquire;
//   - fanout callers (one key per 300ms round; a quarter of the runs fail);
//   - a long holder, holding the key "long" 3s at a time (its identity
//     and token go to the oracle's key <ORACLE>:long-holder, so that the
//     driver can aim a fault at it);
//   - a closer, which takes a lock or a permit on a client of its own and
//     closes that client while holding it;
//   - on a standalone server, a lost reply now and then (its own fault,
//     recorded as a window).
//
// Its connections to Redis go through a redistest.Link that the driver
// sets (cut, slowed) by publishing on the oracle's channel
// <ORACLE>:link:<ID>; each state is acknowledged in <ORACLE>:link-ack:<ID>.
// Every operation is recorded in the history file HISTORY as process p<ID>
// (see internal/history). A holder believes it holds from the acquire's
// return until it calls Release (or Close) or sees Done closed. Every call
// that returns later than its deadline + 1s counts as late:<ID> in the
// oracle's stats, and so does a Close after which a lease's Done is still
// open (close-not-final:<ID>); at the end the process counts its leftover
// subscriptions there. Env: LOCK_ADDR, ORACLE_ADDR, ORACLE, ID, STOP_FILE,
// DEADLINE, HISTORY, and SENTINELS or CLUSTER (addresses, comma-separated)
// instead of LOCK_ADDR; LOCK_ACQUIRE_SCRIPT, the file of an older build's
// lock_acquire to take locks with instead of this build's.
func helperSoaker() int {
	s, err := newSoaker()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var wg sync.WaitGroup
	wg.Go(s.obeyLink)
	if s.dropper != nil {
		wg.Go(s.loseReplies)
	}
	for range 2 {
		wg.Go(s.locks)
		wg.Go(s.semaphores)
		wg.Go(s.fanouts)
	}
	wg.Go(s.longHolder)
	wg.Go(s.ownLocker)
	wg.Go(s.closer)
	wg.Wait()
	return s.finish()
}

type soaker struct {
	id, name string
	rdb      redis.UniversalClient
	newRdb   func() redis.UniversalClient // another client on the same link
	ordb     *redis.Client                // the oracle: never faulted
	c        *Client
	sem      *Semaphore
	rec      *history.Recorder
	link     *redistest.Link
	dropper  *redistest.ReplyDropper // standalone only
	stats    string
	stop     string
	deadline time.Time
	linkSub  *redis.PubSub
}

func newSoaker() (*soaker, error) {
	env := os.Getenv
	s := &soaker{id: env("ID"), name: env("ORACLE"), stop: env("STOP_FILE")}
	if path := env("LOCK_ACQUIRE_SCRIPT"); path != "" {
		// An older build's lock_acquire, side by side with this one's (a
		// rolling deploy): this process takes its locks with it.
		src, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		scriptLockAcquire = redis.NewScript(string(src))
	}
	ms, _ := strconv.ParseInt(env("DEADLINE"), 10, 64)
	s.deadline = time.UnixMilli(ms)
	s.ordb = redis.NewClient(&redis.Options{Addr: env("ORACLE_ADDR")})
	s.stats = oracle{name: s.name}.keys("")[2]
	// Half the processes let go-redis retry (a lost reply's retry then
	// meets the script's own earlier run), half do not.
	retries := -1
	if n, _ := strconv.Atoi(s.id); n%2 == 1 {
		retries = 0 // go-redis's default: 3
	}
	switch {
	case env("SENTINELS") != "":
		s.link = redistest.NewLink(nil)
		s.newRdb = func() redis.UniversalClient {
			return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: redistest.MasterName,
				SentinelAddrs: strings.Split(env("SENTINELS"), ","), Dialer: s.link.Dial})
		}
	case env("CLUSTER") != "":
		s.link = redistest.NewLink(nil)
		s.newRdb = func() redis.UniversalClient {
			return redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(env("CLUSTER"), ","), Dialer: s.link.Dial})
		}
	default:
		s.link = redistest.NewLink(nil)
		s.dropper = redistest.NewReplyDropperOver(s.link.Dial)
		s.newRdb = func() redis.UniversalClient {
			return redis.NewClient(&redis.Options{Addr: env("LOCK_ADDR"), MaxRetries: retries, Dialer: s.dropper.Dial})
		}
	}
	s.rdb = s.newRdb()
	var err error
	if s.c, err = New(s.rdb, s.options()); err != nil {
		return nil, err
	}
	s.sem = s.c.Semaphore("sem", 2)
	if s.rec, err = history.Create(env("HISTORY"), "p"+s.id); err != nil {
		return nil, err
	}
	// Subscribed before the driver may aim a link fault here.
	s.linkSub = s.ordb.Subscribe(context.Background(), s.name+":link:"+s.id)
	if _, err := s.linkSub.Receive(context.Background()); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *soaker) options() *Options { return &Options{Prefix: s.name, TTL: soakTTL} }

func (s *soaker) running() bool {
	_, err := os.Stat(s.stop)
	return os.IsNotExist(err) && time.Now().Before(s.deadline)
}

// timed runs a blocking call (what) under a deadline of limit, and counts
// it as late when it returns more than a second after; each late call is
// also described in the oracle's list <stats>:late, for the report.
func (s *soaker) timed(what string, limit time.Duration, f func(ctx context.Context)) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	start := time.Now()
	f(ctx)
	if took := time.Since(start); took > limit+time.Second {
		s.ordb.HIncrBy(context.Background(), s.stats, "late:"+s.id, 1)
		s.ordb.RPush(context.Background(), s.stats+":late", fmt.Sprintf("p%s %s began %s, returned after %v (deadline %v)",
			s.id, what, start.Format("15:04:05.000"), took.Round(time.Millisecond), limit))
	}
}

// obeyLink sets the link as the driver says: "<seq> <state>", state
// healthy or any of cut, cut-requests, slow-replies <ms>; and acknowledges
// it.
func (s *soaker) obeyLink() {
	ch := s.linkSub.Channel()
	for s.running() {
		var m *redis.Message
		select {
		case m = <-ch:
		case <-time.After(100 * time.Millisecond):
			continue
		}
		seq, state, _ := strings.Cut(m.Payload, " ")
		var ls redistest.LinkState
		for f := strings.Fields(state); len(f) > 0; f = f[1:] {
			switch f[0] {
			case "cut":
				ls.CutRequests, ls.CutReplies = true, true
			case "cut-requests":
				ls.CutRequests = true
			case "slow-replies":
				if len(f) > 1 {
					n, _ := strconv.Atoi(f[1])
					ls.DelayReplies = time.Duration(n) * time.Millisecond
					f = f[1:]
				}
			}
		}
		s.link.Set(ls)
		s.ordb.Set(context.Background(), s.name+":link-ack:"+s.id, seq, time.Minute)
	}
	s.link.Set(redistest.LinkState{})
	s.linkSub.Close()
}

// loseReplies loses, now and then, one script's reply after the server
// ran it.
func (s *soaker) loseReplies() {
	for s.running() {
		time.Sleep(time.Duration(500+rand.IntN(1000)) * time.Millisecond)
		for len(s.dropper.Dropped()) > 0 {
			<-s.dropper.Dropped() // a loss that ended as the last window closed
		}
		w := s.rec.Call(history.Event{Kind: history.Fault, Op: "a script's reply lost (server ran it)", Effect: history.None, Target: "p" + s.id})
		s.dropper.Arm("evalsha")
		select {
		case <-s.dropper.Dropped():
		case <-time.After(time.Second):
			// Disarmed, a loss still pending (a reply held up by a slow
			// link) is cancelled too: none happens after the window.
			s.dropper.Arm("")
		}
		s.rec.Return(w, history.Event{})
	}
}

// acquired records the return of an acquire.
func (s *soaker) acquired(op int64, token int64, err error) bool {
	return s.acquiredAt(op, token, err, history.Now())
}

// acquiredAt records the return of an acquire at t (a multi-lock's keys share one).
func (s *soaker) acquiredAt(op int64, token int64, err error, t int64) bool {
	if err != nil {
		s.rec.ReturnAt(op, history.Event{Err: err.Error()}, t)
		return false
	}
	s.rec.ReturnAt(op, history.Event{Token: token}, t)
	return true
}

func (s *soaker) acquire(kind, key string, limit int) int64 {
	return s.rec.Call(history.Event{Kind: kind, Op: history.Acquire, Key: key, Limit: limit, TTL: soakTTL.Milliseconds()})
}

func (s *soaker) locks() {
	for s.running() {
		key := "k" + strconv.Itoa(rand.IntN(2))
		switch r := rand.IntN(8); {
		case r == 0: // both keys at once, all or nothing
			ops := []int64{s.acquire(history.Lock, "k0", 0), s.acquire(history.Lock, "k1", 0)}
			var m *MultiLock
			var err error
			s.timed("MultiWith k0 k1", 3*time.Second, func(ctx context.Context) {
				m, err = s.c.MultiWith(ctx, []string{"k0", "k1"}, WithRetries(10, 20*time.Millisecond))
			})
			now := history.Now()
			if err != nil {
				for _, op := range ops {
					s.acquiredAt(op, 0, err, now)
				}
				continue
			}
			for i, op := range ops {
				s.acquiredAt(op, m.Tokens()[i], nil, now)
			}
			soakHold(s.rec, history.Lock, ops, m.Done(), m.Release)
		case r == 1: // one try
			op := s.acquire(history.Lock, key, 0)
			var l *Lock
			var err error
			s.timed("Once "+key, 3*time.Second, func(ctx context.Context) { l, err = s.c.Once(ctx, key) })
			if s.acquired(op, l.Token(), err) {
				soakHold(s.rec, history.Lock, []int64{op}, l.Done(), l.Release)
			}
		default:
			op := s.acquire(history.Lock, key, 0)
			var l *Lock
			var err error
			s.timed("Lock "+key, 5*time.Second, func(ctx context.Context) { l, err = s.c.Lock(ctx, key) })
			if s.acquired(op, l.Token(), err) {
				soakHold(s.rec, history.Lock, []int64{op}, l.Done(), l.Release)
			}
		}
	}
}

func (s *soaker) semaphores() {
	for s.running() {
		op := s.acquire(history.Semaphore, "sem", 2)
		var p *Permit
		var err error
		try := rand.IntN(4) == 0
		s.timed("semaphore acquire", 5*time.Second, func(ctx context.Context) {
			if try {
				p, err = s.sem.TryAcquire(ctx)
			} else {
				p, err = s.sem.Acquire(ctx)
			}
		})
		if s.acquired(op, 0, err) {
			soakHold(s.rec, history.Semaphore, []int64{op}, p.Done(), p.Release)
		}
	}
}

func (s *soaker) fanouts() {
	for s.running() {
		round := "fan" + strconv.FormatInt(time.Now().UnixMilli()/300, 10)
		s.timed("Fanout "+round, 3*time.Second, func(ctx context.Context) {
			op := s.rec.Call(history.Event{Kind: history.Fanout, Op: history.Call, Key: round})
			b, err := s.c.Fanout(ctx, round, func(ctx context.Context) ([]byte, error) {
				since := history.Now()
				s.rec.Call(history.Event{Kind: history.Fanout, Op: history.Lead, Key: round, Since: since})
				time.Sleep(50 * time.Millisecond)
				v, failed := randomID(), rand.IntN(4) == 0
				if failed {
					v = "error " + v
				}
				s.rec.Call(history.Event{Kind: history.Fanout, Op: history.Run, Key: round, Value: v, Since: since, JobErr: failed})
				if failed {
					return nil, errors.New(v)
				}
				return []byte(v), nil
			}, WithTimeout(2*time.Second))
			var re *RemoteError
			switch {
			case err == nil:
				s.rec.Return(op, history.Event{Value: string(b)})
			case errors.As(err, &re):
				s.rec.Return(op, history.Event{Value: re.Message, JobErr: true})
			default:
				s.rec.Return(op, history.Event{Err: err.Error()})
			}
		})
	}
}

// ownLocker takes, holds briefly and releases a key of its own, by Lock
// and by Once.
func (s *soaker) ownLocker() {
	key := "own" + s.id
	for s.running() {
		op := s.acquire(history.Lock, key, 0)
		var l *Lock
		var err error
		s.timed("Once or Lock "+key, 3*time.Second, func(ctx context.Context) {
			if rand.IntN(2) == 0 {
				l, err = s.c.Once(ctx, key)
			} else {
				l, err = s.c.Lock(ctx, key)
			}
		})
		if s.acquired(op, l.Token(), err) {
			soakHold(s.rec, history.Lock, []int64{op}, l.Done(), l.Release)
		}
	}
}

// longHolder holds the key "long" 3s at a time (renewed by the watchdog),
// and says so in the oracle, so that the driver can slow and cut the
// holder's link while it holds.
func (s *soaker) longHolder() {
	for s.running() {
		op := s.acquire(history.Lock, "long", 0)
		var l *Lock
		var err error
		s.timed("Lock long", 5*time.Second, func(ctx context.Context) { l, err = s.c.Lock(ctx, "long") })
		if !s.acquired(op, l.Token(), err) {
			continue
		}
		s.ordb.Set(context.Background(), s.name+":long-holder", s.id+" "+strconv.FormatInt(l.Token(), 10), time.Minute)
		hold(s.rec, history.Lock, []int64{op}, l.Done(), l.Release, 3*time.Second)
	}
}

// closer takes a lock or a permit on a client of its own and closes the
// client while holding it: Close is the release (the holder stops
// believing when it calls Close), and after Close every Done is closed.
func (s *soaker) closer() {
	for s.running() {
		time.Sleep(time.Duration(500+rand.IntN(1000)) * time.Millisecond)
		rdb := s.newRdb()
		c2, err := New(rdb, s.options())
		if err != nil {
			rdb.Close()
			continue
		}
		var op int64
		var done <-chan struct{}
		s.timed("closer's Lock or Acquire", 3*time.Second, func(ctx context.Context) {
			if rand.IntN(2) == 0 {
				key := "k" + strconv.Itoa(rand.IntN(2))
				op = s.acquire(history.Lock, key, 0)
				l, err := c2.Lock(ctx, key)
				if s.acquired(op, l.Token(), err) {
					done = l.Done()
				}
				return
			}
			op = s.acquire(history.Semaphore, "sem", 2)
			p, err := c2.Semaphore("sem", 2).Acquire(ctx)
			if s.acquired(op, 0, err) {
				done = p.Done()
			}
		})
		if done != nil {
			select {
			case <-done:
				s.rec.Call(history.Event{Op: history.Lost, Lease: op})
			case <-time.After(time.Duration(rand.IntN(200)) * time.Millisecond):
				rel := s.rec.Call(history.Event{Op: history.Release, Lease: op})
				c2.Close()
				s.rec.Return(rel, history.Event{})
				select {
				case <-done:
				default:
					s.ordb.HIncrBy(context.Background(), s.stats, "close-not-final:"+s.id, 1)
				}
			}
		}
		c2.Close()
		rdb.Close()
	}
}

// finish closes the client and the history, and counts leftover
// subscriptions in the oracle.
func (s *soaker) finish() int {
	settled := time.Now().Add(3 * time.Second)
	for s.c.mux.numChannels() > 0 && time.Now().Before(settled) {
		time.Sleep(10 * time.Millisecond) // the writer unsubscribes in the background
	}
	s.ordb.HIncrBy(context.Background(), s.stats, "leftover", int64(s.c.mux.numChannels()))
	s.c.Close()
	if err := s.rec.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// soakHold is a holder's critical section: a lock's 0-4ms, a permit's
// 5-15ms (the semaphore stays full, so that a holder that should not hold
// meets two others), or one time in twenty 0.3-1.5s (across the
// watchdog's renewals and the faults). A short one does not look at Done
// while it runs (as a real critical section would not): a lease is
// declared lost well before the server frees it, so a holder that looks
// only at the end never believes past that.
func soakHold(rec *history.Recorder, kind string, leases []int64, done <-chan struct{}, release func(context.Context) error) {
	if rand.IntN(20) == 0 {
		hold(rec, kind, leases, done, release, time.Duration(300+rand.IntN(1200))*time.Millisecond)
		return
	}
	d := time.Duration(rand.IntN(5)) * time.Millisecond
	if kind == history.Semaphore {
		d += 5*time.Millisecond + time.Duration(rand.IntN(6))*time.Millisecond
	}
	time.Sleep(d)
	hold(rec, kind, leases, done, release, 0)
}

// hold holds for d, watching done: the holder stops believing when it sees
// done closed (recorded as Lost) or when it calls release.
func hold(rec *history.Recorder, kind string, leases []int64, done <-chan struct{}, release func(context.Context) error, d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	select {
	case <-done:
	case <-time.After(d):
	}
	// A multi-lock's keys share the moment its holder stopped believing.
	select {
	case <-done:
		now := history.Now()
		for _, l := range leases {
			rec.CallAt(history.Event{Kind: kind, Op: history.Lost, Lease: l}, now)
		}
		release(ctx)
		return
	default:
	}
	var ops []int64
	now := history.Now()
	for _, l := range leases {
		ops = append(ops, rec.CallAt(history.Event{Kind: kind, Op: history.Release, Lease: l}, now))
	}
	err := release(ctx)
	for _, op := range ops {
		if err != nil {
			rec.Return(op, history.Event{Err: err.Error()})
		} else {
			rec.Return(op, history.Event{})
		}
	}
}
