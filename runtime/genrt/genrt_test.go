package genrt

import (
	"errors"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/dlock-go/dlock/internal/mpcheck"
)

// P21: the generated codecs' decoder refuses declared lengths beyond the
// input before msgpack allocates them; valid tuples still decode.
func TestDecodeTuple_lengthPrefixAllocatesNothing(t *testing.T) {
	for _, a := range []string{"\x91\xdb\x7f\xff\xff\xff", "\x91\xc6\x7f\xff\xff\xff", "\x91\xdd\x7f\xff\xff\xff", "\x91\xdf\x0f\xff\xff\xff\x01", "\x91\xc9\x7f\xff\xff\xff\x01"} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := DecodeTuple([]byte(a), 1, func(dec *msgpack.Decoder) error {
			_, err := dec.DecodeInterface()
			return err
		})
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrDecode) {
			t.Errorf("DecodeTuple(%x) = %v; want ErrDecode", a, err)
		}
		if d := after.TotalAlloc - before.TotalAlloc; d > 64<<10 {
			t.Errorf("DecodeTuple(%x) allocated %d bytes; want < 64 KiB", a, d)
		}
	}
	b, err := EncodeTuple(3, func(enc *msgpack.Encoder) error {
		enc.EncodeString("s")
		enc.EncodeMap(map[string]any{"a": []any{1, "x", nil, 2.5}})
		return enc.Encode(time.Unix(1, 2).UTC())
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := mpcheck.Lengths(b); err != nil {
		t.Fatalf("Lengths of a valid tuple = %v", err)
	}
}

// A typed result is a tuple of exactly the wrapper's arity and nothing
// after it; anything else is ErrDecode.
func TestDecodeTuple_malformedIsRefused(t *testing.T) {
	good, err := EncodeTuple(1, func(enc *msgpack.Encoder) error { return enc.EncodeString("s") })
	if err != nil {
		t.Fatal(err)
	}
	read := func(dec *msgpack.Decoder) error { _, err := dec.DecodeString(); return err }
	if err := DecodeTuple(good, 1, read); err != nil {
		t.Fatalf("DecodeTuple of a good tuple = %v", err)
	}
	for name, b := range map[string][]byte{
		"trailing byte": append(append([]byte(nil), good...), 0),
		"wrong arity":   good,
		"not a tuple":   []byte("\xa1s"),
		"empty":         nil,
	} {
		n := 1
		if name == "wrong arity" {
			n = 2
		}
		if err := DecodeTuple(b, n, read); !errors.Is(err, ErrDecode) {
			t.Errorf("%s: DecodeTuple(%x, %d) = %v; want ErrDecode", name, b, n, err)
		}
	}
}

// MustFields passes while a struct has the fields its codecs were generated
// for and panics, naming the type and go generate, when it has others.
func TestMustFields(t *testing.T) {
	type user struct {
		Name string
		_    int
		age  int
	}
	MustFields(reflect.TypeFor[user](), "Name", "_", "age")
	for _, names := range [][]string{{"Name", "_"}, {"Name", "_", "age", "Email"}, {"Name", "age", "_"}} {
		func() {
			defer func() {
				msg, _ := recover().(string)
				if !strings.Contains(msg, "user") || !strings.Contains(msg, "run go generate") {
					t.Errorf("MustFields(%v) panicked with %q; want a message naming the type and go generate", names, msg)
				}
			}()
			MustFields(reflect.TypeFor[user](), names...)
		}()
	}
}
