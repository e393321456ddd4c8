package dlockrt

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Helpers for the codecs that dlockgen generates. A generated wrapper
// encodes its results as one msgpack array (a tuple), with map keys sorted,
// so equal values give equal bytes in every process.

// ErrDecode: a fanout result did not decode into the wrapper's result types
// (a leader built from a different signature, or corrupt bytes).
var ErrDecode = errors.New("dlock: cannot decode result")

// EncodeTuple encodes an n-element msgpack array whose elements f writes.
func EncodeTuple(n int, f func(enc *msgpack.Encoder) error) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.EncodeArrayLen(n); err != nil {
		return nil, err
	}
	if err := f(enc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// DecodeTuple decodes an n-element msgpack array whose elements f reads,
// and fails with ErrDecode on anything else (wrong length, trailing bytes).
func DecodeTuple(b []byte, n int, f func(dec *msgpack.Decoder) error) error {
	if err := checkLengths(b); err != nil {
		return fmt.Errorf("%w: %w", ErrDecode, err)
	}
	r := bytes.NewReader(b)
	dec := msgpack.NewDecoder(r)
	got, err := dec.DecodeArrayLen()
	if err != nil || got != n {
		return fmt.Errorf("%w: want a tuple of %d, got %d (%v)", ErrDecode, n, got, err)
	}
	if err := f(dec); err != nil {
		if errors.Is(err, ErrDecode) {
			return err
		}
		return fmt.Errorf("%w: %w", ErrDecode, err)
	}
	if r.Len() != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrDecode, r.Len())
	}
	return nil
}

// PeekNil reports whether the next value is nil, without consuming it.
func PeekNil(dec *msgpack.Decoder) bool {
	c, err := dec.PeekCode()
	return err == nil && c == msgpcode.Nil
}

// DigestKey returns name + ":" + the hex SHA-256 (first 128 bits) of the
// msgpack tuple f writes: the key of a //dlock:fanout without key=.
func DigestKey(name string, n int, f func(enc *msgpack.Encoder) error) (string, error) {
	b, err := EncodeTuple(n, f)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return name + ":" + hex.EncodeToString(sum[:16]), nil
}

// KeyValue escapes a value of a key template for the template's
// punctuation seps: '%' and each byte of seps become %XX, so that a
// rendered key splits back into its values in exactly one way (the
// template "doc:{tenant}:{id}" gives different keys for ("acme:1", "2")
// and ("acme", "1:2")).
func KeyValue(v, seps string) string {
	if !strings.ContainsAny(v, seps) && !strings.Contains(v, "%") {
		return v
	}
	var b strings.Builder
	b.Grow(len(v) + 8)
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '%' || strings.IndexByte(seps, c) >= 0 {
			b.WriteByte('%')
			b.WriteByte("0123456789ABCDEF"[c>>4])
			b.WriteByte("0123456789ABCDEF"[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// NilKeyValue is the error of a key template that reads a field or method
// through a nil pointer (hole is the template's {param.Field}).
func NilKeyValue(hole string) error {
	return invalid("key template: {%s} reads through a nil pointer", hole)
}

// EncodeTime writes t with its location: UTC stays UTC, Local stays Local
// (the receiving process's), any other location becomes a fixed zone of
// the same name and offset at that instant (a named zone's rules, such as
// daylight saving time, do not cross). The monotonic clock reading is
// dropped, as by t.Round(0).
func EncodeTime(enc *msgpack.Encoder, t time.Time) error {
	if err := enc.EncodeArrayLen(4); err != nil {
		return err
	}
	if err := enc.EncodeTime(t); err != nil {
		return err
	}
	kind, name, offset := 2, "", 0
	switch t.Location() {
	case time.UTC:
		kind = 0
	case time.Local:
		kind = 1
	default:
		name, offset = t.Zone()
	}
	if err := enc.EncodeInt(int64(kind)); err != nil {
		return err
	}
	if err := enc.EncodeString(name); err != nil {
		return err
	}
	return enc.EncodeInt(int64(offset))
}

// DecodeTime reads what EncodeTime wrote.
func DecodeTime(dec *msgpack.Decoder) (time.Time, error) {
	var t time.Time
	n, err := dec.DecodeArrayLen()
	if err != nil || n != 4 {
		return t, fmt.Errorf("%w: want a time of 4 fields, got %d (%v)", ErrDecode, n, err)
	}
	if t, err = dec.DecodeTime(); err != nil {
		return t, err
	}
	kind, err := dec.DecodeInt()
	if err != nil {
		return t, err
	}
	name, err := dec.DecodeString()
	if err != nil {
		return t, err
	}
	offset, err := dec.DecodeInt()
	if err != nil {
		return t, err
	}
	switch kind {
	case 0:
		return t.UTC(), nil
	case 1:
		return t.Local(), nil
	}
	return t.In(time.FixedZone(name, offset)), nil
}

// MaxDepth bounds how deeply a value of a recursive type may nest in a
// generated codec: a pointer cycle fails to encode with an error (it would
// otherwise overflow the stack), and so does hostile input nested deeper.
const MaxDepth = 10000

var depths sync.Map // *msgpack.Encoder or *msgpack.Decoder -> *int

// Descend counts one more level of a recursive type for enc or dec (a
// *msgpack.Encoder or *msgpack.Decoder); past MaxDepth it fails. Each
// Descend that succeeds is matched by an Ascend.
func Descend(coder any) error {
	v, _ := depths.LoadOrStore(coder, new(int))
	d := v.(*int)
	if *d >= MaxDepth {
		if *d == 0 {
			depths.Delete(coder)
		}
		return invalid("a value nested more than %d deep (a pointer cycle?)", MaxDepth)
	}
	*d++
	return nil
}

// Ascend undoes a Descend.
func Ascend(coder any) {
	if v, ok := depths.Load(coder); ok {
		d := v.(*int)
		if *d--; *d <= 0 {
			depths.Delete(coder)
		}
	}
}

// SliceCap bounds the capacity a decoder allocates up front for n
// elements, so a corrupt length cannot make it allocate gigabytes.
func SliceCap(n int) int { return min(max(n, 0), 1024) }

// checkLengths walks the msgpack values in b and fails when any declared
// length (of a string, a byte string, an extension, an array or a map)
// exceeds the bytes that remain: msgpack's decoder allocates a declared
// length before reading it, so a few hostile bytes could make it allocate
// gigabytes. After this check no allocation exceeds a small multiple of
// len(b). It keeps a count of pending values instead of recursing, so deep
// nesting costs no stack.
func checkLengths(b []byte) error {
	be := func(i, n int) (int, bool) {
		if i+n > len(b) {
			return 0, false
		}
		v := 0
		for _, c := range b[i : i+n] {
			v = v<<8 | int(c)
		}
		return v, true
	}
	bad := errors.New("a declared length exceeds the input")
	i, pending := 0, 1
	for i < len(b) {
		if pending == 0 {
			pending = 1 // the next top-level value
		}
		pending--
		c := b[i]
		i++
		var size, items, hdr int // bytes to skip, values that follow, length header size
		switch {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		case c >= 0x80 && c <= 0x8f:
			items = 2 * int(c&0x0f)
		case c >= 0x90 && c <= 0x9f:
			items = int(c & 0x0f)
		case c >= 0xa0 && c <= 0xbf:
			size = int(c & 0x1f)
		case c == 0xc4 || c == 0xd9:
			hdr = 1
		case c == 0xc5 || c == 0xda:
			hdr = 2
		case c == 0xc6 || c == 0xdb:
			hdr = 4
		case c == 0xc7, c == 0xc8, c == 0xc9: // ext 8/16/32: length, type, data
			n := 1 << (c - 0xc7)
			l, ok := be(i, n)
			if !ok {
				return bad
			}
			i += n
			size = l + 1
		case c == 0xca || c == 0xce || c == 0xd2:
			size = 4
		case c == 0xcb || c == 0xcf || c == 0xd3:
			size = 8
		case c == 0xcc || c == 0xd0:
			size = 1
		case c == 0xcd || c == 0xd1:
			size = 2
		case c >= 0xd4 && c <= 0xd8: // fixext 1..16, plus the type byte
			size = 1<<(c-0xd4) + 1
		case c >= 0xdc && c <= 0xdf: // array16, array32, map16, map32
			n := 2 << ((c - 0xdc) & 1)
			l, ok := be(i, n)
			if !ok {
				return bad
			}
			i += n
			items = l
			if c >= 0xde {
				items *= 2
			}
		default:
			return fmt.Errorf("invalid msgpack code %#x", c)
		}
		if hdr > 0 {
			l, ok := be(i, hdr)
			if !ok {
				return bad
			}
			i += hdr
			size = l
		}
		if size > len(b)-i {
			return bad
		}
		i += size
		if items > len(b)-i { // every value takes at least one byte
			return bad
		}
		pending += items
	}
	if pending > 0 {
		return bad
	}
	return nil
}
