package dlockrt

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

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
	r := bytes.NewReader(b)
	dec := msgpack.NewDecoder(r)
	got, err := dec.DecodeArrayLen()
	if err != nil || got != n {
		return fmt.Errorf("%w: want a tuple of %d, got %d (%v)", ErrDecode, n, got, err)
	}
	if err := f(dec); err != nil {
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

// SliceCap bounds the capacity a decoder allocates up front for n
// elements, so a corrupt length cannot make it allocate gigabytes.
func SliceCap(n int) int { return min(max(n, 0), 1024) }
