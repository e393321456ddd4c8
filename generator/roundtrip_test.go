package generator

import (
	"testing"

	"github.com/dlock-go/dlock/internal/gentest"
)

// roundTripPkg is a package whose fanout returns values of every kind the
// generator accepts, drawn at random from a seed.
const roundTripPkg = `package rt

import (
	"context"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

type Inner struct {
	Name string
	N    int16
}

// Custom encodes itself with pointer receivers, as msgpack's docs show.
type Custom struct{ A, B int }

func (c *Custom) EncodeMsgpack(enc *msgpack.Encoder) error { return enc.EncodeMulti(c.A, c.B) }
func (c *Custom) DecodeMsgpack(dec *msgpack.Decoder) error { return dec.DecodeMulti(&c.A, &c.B) }

type Embeds struct {
	time.Time
	*Inner
	Note string
}

type Kind string

// Guarded holds a lock, which carries nothing: its codecs go by pointer.
type Guarded struct {
	mu    sync.Mutex
	N     int
	Inner Inner
}

// Cache embeds a mutex beside its data: the data is carried.
type Cache struct {
	sync.RWMutex
	Vals []int
}

// Account is a lock of its own (Lock and Unlock) with data.
type Account struct {
	mu      sync.Mutex
	Balance int
}

func (a *Account) Lock()   { a.mu.Lock() }
func (a *Account) Unlock() { a.mu.Unlock() }

type Bank struct {
	Cache
	Main Account
	Name string
}

// Base encodes itself; Doc embeds it and has a pair of its own, which
// wins over the promoted one.
type Base struct{ ID int }

func (b *Base) EncodeMsgpack(enc *msgpack.Encoder) error { return enc.EncodeInt(int64(b.ID)) }
func (b *Base) DecodeMsgpack(dec *msgpack.Decoder) error {
	n, err := dec.DecodeInt()
	b.ID = n
	return err
}

type Doc struct {
	Base
	Title string
}

func (d Doc) MarshalMsgpack() ([]byte, error) { return msgpack.Marshal([]any{d.ID, d.Title}) }
func (d *Doc) UnmarshalMsgpack(b []byte) error {
	var v []any
	if err := msgpack.Unmarshal(b, &v); err != nil || len(v) != 2 {
		return fmt.Errorf("doc: %v", err)
	}
	id, _ := v[0].(int8)
	d.ID, d.Title = int(id), v[1].(string)
	return nil
}

type V struct {
	B      bool
	I      int
	I8     int8
	U64    uint64
	F32    float32
	F64    float64
	S      string
	K      Kind
	Bytes  []byte
	Empty  []byte
	T      time.Time
	TFixed time.Time
	TLocal time.Time
	D      time.Duration
	Slice  []Inner
	Nil    []string
	Arr    [3]int
	Map    map[string]*Inner
	FMap   map[float64]string
	Ptr    *Inner
	NilPtr *Inner
	Big    *big.Int
	Addr   netip.Addr
	Cust   Custom
	Emb    Embeds
	EmbNil Embeds
	PP     **int            // at a nil *int, or at a pointer
	PSlice *[]string        // at a nil slice, or at one
	PMap   *map[string]int  // at a nil map, or at one
	PBytes *[]byte          // at nil bytes
	Float  *big.Float       // 200 bits: its text would keep 64
	Rat    *big.Rat
	IP     net.IP           // empty, 4 or 16 bytes: its text would not keep them
	IPNil  net.IP
	Locked *Guarded
	Guards []Guarded
	Bank   *Bank
	Doc    Doc
}

func draw(seed int64) V {
	r := rand.New(rand.NewPCG(uint64(seed), 7))
	str := func() string {
		b := make([]byte, r.IntN(12))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return string(b)
	}
	when := time.Unix(r.Int64N(1<<33)-1<<32, r.Int64N(1e9))
	v := V{
		B: r.IntN(2) == 1, I: int(r.Int64()), I8: int8(r.IntN(256) - 128), U64: r.Uint64(),
		F32: float32(r.NormFloat64()), F64: r.NormFloat64() * 1e300, S: str(), K: Kind(str()),
		Bytes: []byte(str() + "x"), Empty: []byte{},
		T: when.UTC(), TFixed: when.In(time.FixedZone("X"+str()[:0], 3600*(r.IntN(27)-12))), TLocal: when.Local(),
		D:     time.Duration(r.Int64()),
		Arr:   [3]int{r.IntN(9), -r.IntN(9), 0},
		Map:   map[string]*Inner{str(): {Name: str(), N: int16(r.IntN(1000))}, "nil": nil},
		FMap:  map[float64]string{r.Float64(): str(), math.Inf(-1): "-inf", 0: "zero"},
		Ptr:   &Inner{Name: str()},
		Big:   new(big.Int).Lsh(big.NewInt(r.Int64()), uint(r.IntN(200))),
		Addr:  netip.AddrFrom4([4]byte{10, byte(r.IntN(256)), 0, 1}),
		Cust:  Custom{A: r.IntN(100), B: -r.IntN(100)},
		Emb:   Embeds{Time: when.UTC(), Inner: &Inner{Name: str()}, Note: str()},
		EmbNil: Embeds{Note: "no inner"},
	}
	for range r.IntN(4) {
		v.Slice = append(v.Slice, Inner{Name: str(), N: int16(r.IntN(100))})
	}
	if r.IntN(2) == 0 {
		v.PP, v.PSlice, v.PMap, v.PBytes = new(*int), new([]string), new(map[string]int), new([]byte)
	} else {
		n, sl, m := r.IntN(9), []string{str()}, map[string]int{str(): 1}
		v.PP, v.PSlice, v.PMap = &[]*int{&n}[0], &sl, &m
	}
	v.Float = new(big.Float).SetPrec(200).Quo(big.NewFloat(1), new(big.Float).SetPrec(200).SetInt64(3+r.Int64N(1000)))
	v.Locked = &Guarded{N: r.IntN(100), Inner: Inner{Name: str()}}
	for range r.IntN(3) {
		v.Guards = append(v.Guards, Guarded{N: r.IntN(100)})
	}
	v.Bank = &Bank{Cache: Cache{Vals: []int{r.IntN(9), 8}}, Main: Account{Balance: r.IntN(1000)}, Name: str()}
	v.Doc = Doc{Base: Base{ID: r.IntN(100)}, Title: "t" + str()}
	v.Rat = big.NewRat(r.Int64N(1000)-500, 1+r.Int64N(1000))
	switch r.IntN(3) {
	case 0:
		v.IP = net.IP{}
	case 1:
		v.IP = net.IPv4(10, byte(r.IntN(256)), 0, 1).To4()
	default:
		v.IP = net.ParseIP("2001:db8::1")
	}
	return v
}

//dlock:fanout key="v:{seed}"
func get(ctx context.Context, seed int64) (V, error) { return draw(seed), nil }

type Req struct{ *Inner }

//dlock:once key="r:{r.Name}"
func byReq(ctx context.Context, r Req) error { return nil }

type Node struct {
	Name string
	Next *Node
	Kids []Node
}

// chain returns a list of n nodes, or for n == 0 a cycle.
//
//dlock:fanout key="chain:{n}"
func chain(ctx context.Context, n int) (*Node, error) {
	if n == 0 {
		c := &Node{Name: "loop"}
		c.Next = c
		return c, nil
	}
	var head *Node
	for i := range n {
		head = &Node{Name: string(rune('a' + i%26)), Next: head, Kids: []Node{{Name: "kid"}}}
	}
	return head, nil
}
`

const roundTripTest = `package rt

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock/dlocktest"
	dlockrt "github.com/dlock-go/dlock/runtime"
)

// Values come back deep-equal to what the function returned, to the
// leader's caller and to a caller in another client (another process's
// view: it decodes the bytes it received).
func TestRoundTrip(t *testing.T) {
	time.Local = time.FixedZone("EST", -5*3600) // a process whose Local is not UTC
	leader := dlocktest.NewClient(t)
	for seed := int64(1); seed <= 300; seed++ {
		want := draw(seed)
		dlockrt.SetDefault(leader)
		got, err := Get(context.Background(), seed)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
		for i := range gv.NumField() {
			if g, w := gv.Field(i).Interface(), wv.Field(i).Interface(); !reflect.DeepEqual(g, w) {
				t.Errorf("seed %d: field %s = %#v; want %#v", seed, gv.Type().Field(i).Name, g, w)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	// Recursive types: a list round-trips; a cycle is an error, not a
	// stack overflow.
	for _, n := range []int{1, 50, 5000} {
		got, err := Chain(context.Background(), n)
		if want, _ := chain(context.Background(), n); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("Chain(%d) = %v; want the list back", n, err)
		}
	}
	if _, err := Chain(context.Background(), 0); err == nil || !strings.Contains(err.Error(), "nested more than") {
		t.Fatalf("Chain(0), a cycle = %v; want an error", err)
	}
	// The …Key helper gives the key the wrapper used: its outcome is
	// there, kept for late callers.
	if _, err := Get(context.Background(), 7); err != nil {
		t.Fatal(err)
	}
	key, err := GetKey(7)
	if err != nil {
		t.Fatal(err)
	}
	st, err := leader.Inspect(context.Background(), key)
	if err != nil || st.Fanout == nil || st.Fanout.Outcome != "result" {
		t.Fatalf("Inspect(GetKey(7) = %q) = %+v, %v; want the kept result", key, st, err)
	}
	if _, err := ByReqKey(Req{}); !errors.Is(err, dlockrt.ErrInvalid) {
		t.Fatalf("ByReqKey(Req{}) = %v; want ErrInvalid", err)
	}
	// A key read through a nil embedded pointer is an error, not a panic.
	if err := ByReq(context.Background(), Req{}); !errors.Is(err, dlockrt.ErrInvalid) {
		t.Fatalf("ByReq(Req{}) = %v; want ErrInvalid", err)
	}
}
`

// P24: random values of every accepted kind (time zones, embedded structs,
// custom codecs with pointer receivers, binary and text marshalers, nil vs
// empty, NaN-free float maps) come back reflect.DeepEqual through the
// generated codecs.
func TestGenerate_valuesRoundTripDeepEqual(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a module")
	}
	dir := gentest.Module(t, map[string]string{"rt/rt.go": roundTripPkg, "rt/rt_test.go": roundTripTest})
	generateInto(t, dir)
	if out, err := gentest.Go(t, dir, "test", "-count=1", "./rt/"); err != nil {
		t.Fatalf("go test in the generated module: %v\n%s", err, out)
	}
}
