package dlockrt

import (
	"bytes"
	"context"
	"errors"
	"math"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dlock-go/dlock/internal/redistest"
)

type inner struct {
	Name string
	Tags []string
}

type roundTrip struct {
	When     time.Time
	Blob     []byte
	EmptyB   []byte
	Big      int64
	Small    int64
	Huge     uint64
	Float    float64
	NilMap   map[string]int
	EmptyMap map[string]int
	Map      map[string]inner
	Ptr      *inner
	NilPtr   *inner
	Nested   []inner
	Dur      time.Duration
}

// P8: values cross the wire faithfully; the leader's caller and a remote
// caller decode the same bytes into deep-equal values.
func TestFanoutOf_roundTripsLocalAndRemote(t *testing.T) {
	want := roundTrip{
		When:     time.Date(2026, 11, 27, 12, 0, 0, 123456789, time.UTC),
		Blob:     []byte{0, 1, 2, 255},
		EmptyB:   []byte{},
		Big:      math.MaxInt64,
		Small:    math.MinInt64,
		Huge:     math.MaxUint64,
		Float:    math.Pi,
		EmptyMap: map[string]int{},
		Map:      map[string]inner{"a": {Name: "x", Tags: []string{"t"}}, "b": {}},
		Ptr:      &inner{Name: "p"},
		Nested:   []inner{{Name: "n1"}, {Name: "n2", Tags: []string{}}},
		Dur:      90 * time.Second,
	}
	leader := newClient(t, newRedis(t), nil)
	remote := newClient(t, newRedis(t), nil)
	k := key(t, "k")
	started, finish := make(chan struct{}), make(chan struct{})
	var got [2]roundTrip
	var errs [2]error
	var wg sync.WaitGroup
	wg.Go(func() {
		got[0], errs[0] = FanoutOf(t.Context(), leader, k, func(context.Context) (roundTrip, error) {
			close(started)
			recvGo(t, finish, time.Minute, "the test to let the job finish")
			return want, nil
		})
	})
	recv(t, started, 10*time.Second, "the leader's job to start")
	wg.Go(func() {
		got[1], errs[1] = FanoutOf(t.Context(), remote, k, func(context.Context) (roundTrip, error) {
			t.Error("remote ran the job")
			return roundTrip{}, nil
		})
	})
	close(finish)
	waitGroup(t, &wg, 30*time.Second, "the local and remote callers")
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	if !reflect.DeepEqual(got[0], got[1]) {
		t.Fatalf("local and remote results differ:\n%+v\n%+v", got[0], got[1])
	}
	g := got[0]
	if !g.When.Equal(want.When) || !bytes.Equal(g.Blob, want.Blob) || g.Big != want.Big || g.Small != want.Small ||
		g.Huge != want.Huge || g.Float != want.Float || g.NilMap != nil || g.EmptyMap == nil ||
		!reflect.DeepEqual(g.Map, want.Map) || g.Ptr.Name != "p" || g.NilPtr != nil || g.Dur != want.Dur ||
		!reflect.DeepEqual(g.Nested, want.Nested) {
		t.Fatalf("FanoutOf = %+v; want %+v", g, want)
	}
}

// P8: a result over the size limit fails loudly at the leader and at every
// waiter, never as a timeout.
func TestFanout_resultTooLargeFailsEverywhere(t *testing.T) {
	cs := tenClients(t, &Options{MaxResultSize: 1024})
	k := key(t, "k")
	started, finish := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() {
			_, err := c.Fanout(t.Context(), k, func(context.Context) ([]byte, error) {
				close(started)
				recvGo(t, finish, time.Minute, "the test to let the job finish")
				return make([]byte, 1025), nil
			})
			if !errors.Is(err, ErrResultTooLarge) {
				t.Errorf("caller %d: Fanout = %v; want ErrResultTooLarge", i, err)
			}
		})
		if i == 0 {
			recv(t, started, 10*time.Second, "the leader's job to start")
		}
	}
	waitFanSubscribers(t, k, 9) // the error reaches the callers of its run only
	close(finish)
	waitGroup(t, &wg, 30*time.Second, "the callers' results")
}

// P16: garbage on the channel and in the result key during a live fanout is
// dropped; the callers still get the real result.
func TestFanout_garbageIsIgnored(t *testing.T) {
	rdb := newRedis(t)
	leader := newClient(t, newRedis(t), nil)
	waiter := newClient(t, newRedis(t), nil)
	k := key(t, "k")
	tag := mustTag(t, leader, k)
	started, finish := make(chan struct{}), make(chan struct{})
	done := make(chan error, 2)
	go func() {
		b, err := leader.Fanout(t.Context(), k, func(context.Context) ([]byte, error) {
			close(started)
			recvGo(t, finish, time.Minute, "the test to let the job finish")
			return []byte("real"), nil
		})
		if err == nil && string(b) != "real" {
			err = errors.New("leader got " + string(b))
		}
		done <- err
	}()
	recv(t, started, 10*time.Second, "the leader's job to start")
	go func() {
		b, err := waiter.Fanout(t.Context(), k, func(context.Context) ([]byte, error) { return []byte("wrong"), nil })
		if err == nil && string(b) != "real" {
			err = errors.New("waiter got " + string(b))
		}
		done <- err
	}()
	ch := fanChannel(tag)
	redistest.WaitFor(t, 5*time.Second, "the waiter's subscription", func(ctx context.Context) bool {
		n, err := rdb.PubSubShardNumSub(ctx, ch).Result()
		return err == nil && n[ch] == 1
	})
	garbage := append([]string{"", "garbage", "\x95\x01\x00\xc4", "\x95\x02\x00\xc4\x00\xa0\xa0", "\x95\x01\x05\xc4\x00\xa0\xa0", "released",
		// Well-formed envelopes of generations nobody waits on.
		string(envelope{gen: "another-generation", status: statusOK, payload: []byte("forged")}.encode()),
		string(envelope{gen: "", status: statusOK, payload: []byte("forged")}.encode()),
		string(failure("another-generation", errors.New("forged")).encode()),
	}, lengthPrefixAttacks...)
	for _, g := range garbage {
		if err := rdb.SPublish(bg(), ch, g).Err(); err != nil {
			t.Fatal(err)
		}
	}
	close(finish)
	for range 2 {
		if err := recv(t, done, 30*time.Second, "the leader's and the waiter's Fanout"); err != nil {
			t.Fatalf("Fanout with garbage around = %v", err)
		}
	}
}

// lengthPrefixAttacks are envelopes whose declared lengths (of the payload,
// the generation, the message, the array) far exceed their bytes.
var lengthPrefixAttacks = []string{
	"\x95\x01\x00\xc6\x7f\xff\xff\xff",                  // the v1 envelope of the report: 2 GiB payload
	"\x96\x02\xa1g\x00\xc6\x7f\xff\xff\xff",             // v2, 2 GiB payload
	"\x96\x02\xdb\xff\xff\xff\xff",                      // a 4 GiB generation
	"\x96\x02\xa1g\x01\xc4\x00\xa0\xdb\x7f\xff\xff\xff", // a 2 GiB message
	"\xdc\xff\xff",         // 65535 elements
	"\xdd\xff\xff\xff\xff", // array32
}

func FuzzDecodeEnvelope(f *testing.F) {
	const max = 1 << 10
	f.Add([]byte(envelope{gen: "g", status: statusOK, payload: []byte("x")}.encode()))
	f.Add(failure("g", errors.New("boom")).encode())
	f.Add([]byte("released"))
	f.Add([]byte{0x95, 0x01, 0x00, 0xc4})
	f.Add(envelope{gen: "g", status: statusOK, payload: make([]byte, max)}.encode())   // at the limit
	f.Add(envelope{gen: "g", status: statusOK, payload: make([]byte, max+1)}.encode()) // one byte over
	for _, a := range lengthPrefixAttacks {
		f.Add([]byte(a))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEnvelope(string(b), max)
		if err != nil {
			return
		}
		// P21: what it decodes is no larger than its input, and the
		// payload no larger than the limit.
		if n := len(e.payload) + len(e.gen) + len(e.code) + len(e.message); n > len(b) || len(e.payload) > max {
			t.Fatalf("decode of %d bytes gave %d bytes (payload %d, limit %d)", len(b), n, len(e.payload), max)
		}
		// What decodes re-encodes to the same outcome.
		e2, err := decodeEnvelope(string(e.encode()), max)
		if err != nil || !reflect.DeepEqual(e, e2) {
			t.Fatalf("re-decode of %x = %+v, %v; want %+v", b, e2, err, e)
		}
	})
}

// P21: a payload one byte over MaxResultSize is refused (a leader with a
// larger limit, or a forged message), however small the whole message.
func TestDecodeEnvelope_payloadOverTheLimitIsRefused(t *testing.T) {
	const max = 1 << 10
	for _, n := range []int{max - 1, max, max + 1, max + 100} {
		e := envelope{gen: "g", status: statusOK, payload: bytes.Repeat([]byte("x"), n)}
		got, err := decodeEnvelope(string(e.encode()), max)
		if over := n > max; over != (err != nil) || (err == nil && len(got.payload) != n) {
			t.Errorf("decode of a %d-byte payload (limit %d) = %d bytes, %v; want an error exactly when over the limit", n, max, len(got.payload), err)
		}
	}
}

// P16: anything but a well-formed version-2 envelope is refused.
func TestDecodeEnvelope_malformedIsRefused(t *testing.T) {
	good := envelope{gen: "g", status: statusOK, payload: []byte("v")}.encode()
	if _, err := decodeEnvelope(string(good), 1<<10); err != nil {
		t.Fatalf("decode of a good envelope = %v", err)
	}
	for name, b := range map[string]string{
		"trailing byte":  string(good) + "\x00",
		"truncated":      string(good[:len(good)-1]),
		"version 1":      "\x96\x01\xa1g\x00\xc4\x01v\xa0\xa0",
		"status 2":       "\x96\x02\xa1g\x02\xc4\x01v\xa0\xa0",
		"five fields":    "\x95\x02\xa1g\x00\xc4\x01v\xa0",
		"payload as str": "\x96\x02\xa1g\x00\xa1v\xa0\xa0",
		"empty":          "",
		"released":       "released",
	} {
		if e, err := decodeEnvelope(b, 1<<10); err == nil {
			t.Errorf("%s: decode of %x = %+v; want an error", name, b, e)
		}
	}
}

// P21: length-prefix attacks allocate nothing near what they declare.
func TestDecodeEnvelope_lengthPrefixAllocatesNothing(t *testing.T) {
	for _, a := range lengthPrefixAttacks {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := decodeEnvelope(a, 1<<20)
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Errorf("decode of %x succeeded; want an error", a)
		}
		if d := after.TotalAlloc - before.TotalAlloc; d > 64<<10 {
			t.Errorf("decode of %x allocated %d bytes; want < 64 KiB", a, d)
		}
	}
}

// P15 for fanout: after many keys, subscriptions are back to zero and no
// goroutine is left.
func TestFanout_subscriptionsReturnToZero(t *testing.T) {
	rdb := newRedis(t)
	prefix := "p15f-" + strconv.Itoa(int(time.Now().UnixNano()%1e9))
	a, _ := New(newRedis(t), &Options{Prefix: prefix})
	b, _ := New(newRedis(t), &Options{Prefix: prefix})
	n := 1000
	if testing.Short() {
		n = 100
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range n {
		send(t, sem, struct{}{}, time.Minute, "one of 32 fanout pairs to finish")
		wg.Go(func() {
			defer func() { <-sem }()
			k := "k" + strconv.Itoa(i)
			started, finish := make(chan struct{}), make(chan struct{})
			var inner sync.WaitGroup
			inner.Go(func() {
				a.Fanout(t.Context(), k, func(context.Context) ([]byte, error) {
					close(started)
					recvGo(t, finish, 30*time.Second, "the pair of "+k+" to let the job finish")
					return []byte(k), nil
				})
			})
			if _, ok := recvGo(t, started, 10*time.Second, "the job of "+k+" to start"); !ok {
				return
			}
			inner.Go(func() {
				got, err := b.Fanout(t.Context(), k, func(context.Context) ([]byte, error) { return nil, errors.New("ran twice") })
				if err != nil || string(got) != k {
					t.Errorf("Fanout(%s) = %q, %v", k, got, err)
				}
			})
			close(finish)
			recvGo(t, waitGroupDone(&inner), 30*time.Second, "the pair of "+k+" to return")
		})
	}
	waitGroup(t, &wg, time.Minute, "the last fanout pairs")
	redistest.WaitFor(t, 5*time.Second, "channels to be unsubscribed", func(ctx context.Context) bool {
		chans, err := rdb.PubSubShardChannels(ctx, prefix+":*").Result()
		return err == nil && len(chans) == 0 && a.mux.numChannels() == 0 && b.mux.numChannels() == 0
	})
	a.Close()
	b.Close()
	goleak.VerifyNone(t, goleak.IgnoreCurrent())
}

// dropCounter counts Observer.Dropped events.
type dropCounter struct {
	BaseObserver
	n atomic.Int32
}

func (d *dropCounter) Dropped(context.Context, DropEvent) { d.n.Add(1) }

// P21 for the stored result: a forged value in the fanout's key claiming a
// 2 GiB payload is dropped (counted by the Observer), allocates nothing
// near that, and the caller still gets the real outcome once it is gone.
func TestFanout_forgedStoredResultIsDropped(t *testing.T) {
	rdb := newRedis(t)
	obs := &dropCounter{}
	c := newClient(t, newRedis(t), &Options{Observer: obs, TTL: 200 * time.Millisecond})
	k := key(t, "k")
	forged := "=" + lengthPrefixAttacks[1]
	if err := rdb.Set(bg(), fanKey(mustTag(t, c, k)), forged, 300*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b, err := c.Fanout(t.Context(), k, func(context.Context) ([]byte, error) { return []byte("real"), nil }, WithTimeout(5*time.Second))
	runtime.ReadMemStats(&after)
	if err != nil || string(b) != "real" {
		t.Fatalf("Fanout past a forged result = %q, %v; want \"real\"", b, err)
	}
	if obs.n.Load() == 0 {
		t.Fatal("the forged result was not reported to Observer.Dropped")
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 16<<20 {
		t.Fatalf("the join allocated %d bytes; want far less than the 2 GiB claimed", d)
	}
}

// A subscriber whose buffer garbage filled still learns that something
// came after it: the overflow collapses into a resync, so a fanout waiter
// re-joins and finds the result it would otherwise have missed.
func TestMux_overflowBecomesAResync(t *testing.T) {
	rdb := newRedis(t)
	c := newClient(t, newRedis(t), nil)
	ch1, ch2 := mustTag(t, c, key(t, "1"))+":ch", mustTag(t, c, key(t, "2"))+":ch"
	sub1, err := c.mux.subscribe(t.Context(), ch1)
	if err != nil {
		t.Fatal(err)
	}
	defer sub1.close()
	sub2, err := c.mux.subscribe(t.Context(), ch2)
	if err != nil {
		t.Fatal(err)
	}
	defer sub2.close()
	redistest.WaitFor(t, 5*time.Second, "both subscriptions", func(context.Context) bool {
		return c.mux.numChannels() == 2 && waiterConfirmed(c)
	})
	for range cap(sub1.C) {
		rdb.SPublish(bg(), ch1, "garbage")
	}
	rdb.SPublish(bg(), ch1, "the real outcome")
	rdb.SPublish(bg(), ch2, "marker") // one reader, in order: ch1's are delivered before this
	bound := time.After(10 * time.Second)
marked:
	for {
		select {
		case n := <-sub2.C:
			if n.payload == "marker" {
				break marked
			}
		case <-bound:
			t.Fatal("timed out after 10s waiting for the marker on the second channel")
		}
	}
	resynced := false
	for len(sub1.C) > 0 {
		n := recv(t, sub1.C, 10*time.Second, "a buffered notice of the first channel")
		resynced = resynced || n.resync || n.payload == "the real outcome"
	}
	if !resynced {
		t.Fatal("the message after a full buffer was dropped without a resync")
	}
}

// P12: the answer to our own SUNSUBSCRIBE that arrives after the channel
// was subscribed again is not taken for the server dropping it. The reader
// is held at that answer until the new SSUBSCRIBE is on the wire, so the
// order that a loopback link almost never shows happens every time.
func TestMux_ownUnsubscribeAnsweredAfterResubscribeIsNotADrop(t *testing.T) {
	name := "dlock:{" + key(t, "churn") + "}:ch"
	answered, resume := make(chan struct{}), make(chan struct{})
	resent := make(chan struct{}, 1)
	var once sync.Once
	setHook(t, &testHookMuxUnsubscribed, func(n string) {
		if n != name {
			return
		}
		once.Do(func() {
			close(answered)
			recvGo(t, resume, 10*time.Second, "the test to let the reader go on")
		})
	})
	setHook(t, &testHookMuxWrote, func(sub, _ []string) {
		if slices.Contains(sub, name) {
			select {
			case resent <- struct{}{}:
			default:
			}
		}
	})
	rdb := newRedis(t)
	c := newClient(t, rdb, nil)

	s1, err := c.mux.subscribe(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, resent, 10*time.Second, "the first SSUBSCRIBE")
	s1.close()
	recv(t, answered, 10*time.Second, "the answer to our SUNSUBSCRIBE")
	subbed := make(chan *subscription, 1)
	go func() {
		s2, err := c.mux.subscribe(t.Context(), name)
		if err != nil {
			t.Errorf("subscribing again: %v", err)
			close(subbed)
			return
		}
		subbed <- s2
	}()
	recv(t, resent, 10*time.Second, "the second SSUBSCRIBE, sent while its predecessor's answer waits")
	close(resume)
	s2 := recv(t, subbed, 10*time.Second, "the second subscription to be confirmed")
	if s2 == nil {
		t.FailNow()
	}
	defer s2.close()
	if err := rdb.SPublish(t.Context(), name, "hello").Err(); err != nil {
		t.Fatal(err)
	}
	if n := recv(t, s2.C, 10*time.Second, "the message on the subscribed channel"); n.payload != "hello" {
		t.Errorf("heard %+v; want hello", n)
	}
	if n := c.mux.drops.Load(); n != 0 {
		t.Errorf("%d answers to our own unsubscribes taken for the server dropping the channel", n)
	}
}
