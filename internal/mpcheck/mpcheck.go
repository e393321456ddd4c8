// Package mpcheck checks msgpack input before a decoder allocates what it
// declares.
package mpcheck

import (
	"errors"
	"fmt"
)

var errTooLong = errors.New("a declared length exceeds the input")

// Lengths walks the msgpack values in b and fails when any declared
// length (of a string, a byte string, an extension, an array or a map)
// exceeds the bytes that remain: msgpack's decoder allocates a declared
// length before reading it, so a few hostile bytes could make it allocate
// gigabytes. After this check no allocation exceeds a small multiple of
// len(b). It keeps a count of pending values instead of recursing, so deep
// nesting costs no stack.
func Lengths(b []byte) error {
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
				return errTooLong
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
				return errTooLong
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
				return errTooLong
			}
			i += hdr
			size = l
		}
		if size > len(b)-i {
			return errTooLong
		}
		i += size
		if items > len(b)-i { // every value takes at least one byte
			return errTooLong
		}
		pending += items
	}
	if pending > 0 {
		return errTooLong
	}
	return nil
}
