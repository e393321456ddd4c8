// Package slot computes Redis Cluster hash slots (CRC16/XMODEM of the key's
// hash tag, modulo 16384), as the server does.
package slot

import "strings"

// Count is the number of hash slots in a Redis Cluster.
const Count = 16384

// Of returns the hash slot of key: the CRC16 of the part between the first
// '{' and the next '}' when that part is not empty, else of the whole key.
func Of(key string) int {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	return int(crc16(key) % Count)
}

var table = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

func crc16(s string) uint16 {
	var c uint16
	for i := 0; i < len(s); i++ {
		c = c<<8 ^ table[byte(c>>8)^s[i]]
	}
	return c
}
