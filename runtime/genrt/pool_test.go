package genrt

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// EncodeTuple reuses its encoders (DecodeTuple does not: see its doc).
// These tests hold what reuse must never change: the bytes and values a
// call returns are its caller's, and what one call set on its encoder or
// decoder never reaches the next. (sync.Pool may hand out a fresh one, and
// under -race drops some on purpose: each case runs many times.)

const reuses = 200

func encodeString(s string) ([]byte, error) {
	return EncodeTuple(1, func(enc *msgpack.Encoder) error { return enc.EncodeString(s) })
}

func decodeString(b []byte) (string, error) {
	var s string
	err := DecodeTuple(b, 1, func(dec *msgpack.Decoder) (err error) { s, err = dec.DecodeString(); return })
	return s, err
}

func TestEncodeTuple_bytesAreTheCallers(t *testing.T) {
	first, err := encodeString("first")
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(first)
	for i := range reuses {
		b, err := encodeString("a longer value, number " + strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		for j := range b {
			b[j] = 0xc1 // the caller's to scribble on
		}
	}
	if !bytes.Equal(first, want) {
		t.Fatalf("an earlier EncodeTuple's bytes changed to %x; want %x", first, want)
	}
	if s, err := decodeString(first); err != nil || s != "first" {
		t.Fatalf("decode of the earlier bytes = %q, %v; want \"first\"", s, err)
	}
}

type pair struct{ A, B int }

func TestEncodeTuple_optionsDoNotCarryOver(t *testing.T) {
	var fresh bytes.Buffer
	enc := msgpack.NewEncoder(&fresh)
	enc.SetSortMapKeys(true)
	enc.EncodeArrayLen(1)
	if err := enc.Encode(pair{1, 2}); err != nil {
		t.Fatal(err)
	}
	for range reuses {
		if _, err := EncodeTuple(1, func(enc *msgpack.Encoder) error {
			enc.UseArrayEncodedStructs(true)
			enc.SetCustomStructTag("other")
			return enc.Encode(pair{1, 2})
		}); err != nil {
			t.Fatal(err)
		}
		b, err := EncodeTuple(1, func(enc *msgpack.Encoder) error { return enc.Encode(pair{1, 2}) })
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, fresh.Bytes()) {
			t.Fatalf("EncodeTuple after another that set options = %x; want a fresh encoder's %x", b, fresh.Bytes())
		}
	}
}

func TestDecodeTuple_optionsDoNotCarryOver(t *testing.T) {
	one, err := EncodeTuple(1, func(enc *msgpack.Encoder) error { return enc.EncodeInt(1) })
	if err != nil {
		t.Fatal(err)
	}
	for range reuses {
		var loose, plain any
		if err := DecodeTuple(one, 1, func(dec *msgpack.Decoder) (err error) {
			dec.UseLooseInterfaceDecoding(true)
			return dec.Decode(&loose)
		}); err != nil {
			t.Fatal(err)
		}
		if err := DecodeTuple(one, 1, func(dec *msgpack.Decoder) error { return dec.Decode(&plain) }); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprintf("%T", loose) != "int64" || fmt.Sprintf("%T", plain) != "int8" {
			t.Fatalf("Decode of 1 into an interface: %T with loose decoding, then %T; want int64, then a fresh decoder's int8", loose, plain)
		}
	}
}

func TestDecodeTuple_valuesOutliveTheDecoder(t *testing.T) {
	enc := func(s string, b []byte) []byte {
		out, err := EncodeTuple(2, func(enc *msgpack.Encoder) error {
			if err := enc.EncodeString(s); err != nil {
				return err
			}
			return enc.EncodeBytes(b)
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	dec := func(in []byte) (s string, b []byte) {
		if err := DecodeTuple(in, 2, func(dec *msgpack.Decoder) (err error) {
			if s, err = dec.DecodeString(); err != nil {
				return err
			}
			b, err = dec.DecodeBytes()
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return s, b
	}
	s, b := dec(enc("kept string", []byte("kept bytes")))
	for i := range reuses {
		dec(enc("overwriting string "+strconv.Itoa(i), []byte("overwriting bytes "+strconv.Itoa(i))))
	}
	if s != "kept string" || string(b) != "kept bytes" {
		t.Fatalf("values of an earlier DecodeTuple changed to %q, %q", s, b)
	}
}

// retained is an extension type whose UnmarshalMsgpack keeps the slice
// msgpack hands it (msgpack's own buffer), as a careless codec might.
type retained []byte

func (r *retained) MarshalMsgpack() ([]byte, error) { return []byte(*r), nil }
func (r *retained) UnmarshalMsgpack(b []byte) error { *r = b; return nil }

func init() { msgpack.RegisterExt(77, (*retained)(nil)) }

// A value that an extension type kept from one DecodeTuple is not
// overwritten by the next (a reused decoder would hand the next call the
// same buffer).
func TestDecodeTuple_extensionValuesOutliveTheDecoder(t *testing.T) {
	round := func(s string) retained {
		v := retained(s)
		b, err := EncodeTuple(1, func(enc *msgpack.Encoder) error { return enc.Encode(&v) })
		if err != nil {
			t.Fatal(err)
		}
		var got retained
		if err := DecodeTuple(b, 1, func(dec *msgpack.Decoder) error { return dec.Decode(&got) }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	first := round("alice-session")
	for range reuses {
		if got := round("mallory-token"); string(got) != "mallory-token" {
			t.Fatalf("round trip of an extension value = %q", got)
		}
	}
	if string(first) != "alice-session" {
		t.Fatalf("an extension value of an earlier DecodeTuple changed to %q", first)
	}
}

// A decode that fails midway (its reader left mid-value) leaves nothing
// behind for the next.
func TestDecodeTuple_afterAFailedDecode(t *testing.T) {
	bad, err := EncodeTuple(2, func(enc *msgpack.Encoder) error {
		enc.EncodeString("not a number")
		return enc.EncodeString("rest")
	})
	if err != nil {
		t.Fatal(err)
	}
	good, err := encodeString("good")
	if err != nil {
		t.Fatal(err)
	}
	for range reuses {
		err := DecodeTuple(bad, 2, func(dec *msgpack.Decoder) error { _, err := dec.DecodeInt64(); return err })
		if !errors.Is(err, ErrDecode) {
			t.Fatalf("DecodeTuple of a string as a number = %v; want ErrDecode", err)
		}
		if s, err := decodeString(good); err != nil || s != "good" {
			t.Fatalf("DecodeTuple after a failed one = %q, %v; want \"good\"", s, err)
		}
	}
}

// Many goroutines encode and decode at once; each gets its own value back.
func TestTuple_concurrentCallsKeepTheirValues(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range reuses {
				want := strconv.Itoa(g) + "/" + strconv.Itoa(i)
				b, err := encodeString(want)
				if err != nil {
					t.Error(err)
					return
				}
				if got, err := decodeString(b); err != nil || got != want {
					t.Errorf("round trip of %q = %q, %v", want, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
