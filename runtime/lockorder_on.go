//go:build dlock_lockorder

package dlockrt

import (
	"bytes"
	"fmt"
	"runtime"
	"strconv"
	"sync"
)

// The order check of the dlock_lockorder build: the ranks each goroutine
// holds, by goroutine id.
var heldRanks struct {
	sync.Mutex
	by map[uint64][]int
}

func goid() uint64 {
	var b [64]byte
	n := runtime.Stack(b[:], false)
	f := bytes.Fields(b[:n]) // "goroutine 18 [running]: ..."
	id, _ := strconv.ParseUint(string(f[1]), 10, 64)
	return id
}

// willLock panics when the calling goroutine holds a lock of rank r or
// below it in the order, and records r as held.
func willLock(r int) {
	g := goid()
	heldRanks.Lock()
	defer heldRanks.Unlock()
	if heldRanks.by == nil {
		heldRanks.by = map[uint64][]int{}
	}
	for _, h := range heldRanks.by[g] {
		if h >= r {
			panic(fmt.Sprintf("dlock: lock order: taking a lock of rank %d while holding one of rank %d (see lockorder.go)", r, h))
		}
	}
	heldRanks.by[g] = append(heldRanks.by[g], r)
}

func unlocked(r int) {
	g := goid()
	heldRanks.Lock()
	defer heldRanks.Unlock()
	hs := heldRanks.by[g]
	for i := len(hs) - 1; i >= 0; i-- {
		if hs[i] == r {
			hs = append(hs[:i], hs[i+1:]...)
			break
		}
	}
	if len(hs) == 0 {
		delete(heldRanks.by, g)
	} else {
		heldRanks.by[g] = hs
	}
}
