//go:build dlock_lockorder

package dlockrt

import (
	"strings"
	"testing"
)

// The dlock_lockorder build panics when a goroutine takes a lock above one
// it holds (lockorder.go), and lets it take one below.
func TestLockOrder_takingALockAboveOneHeldPanics(t *testing.T) {
	var fmu lockedBy[fmuRank]
	var fl lockedBy[flightMuRank]
	fmu.Lock()
	fl.Lock() // below: fine
	fl.Unlock()
	fmu.Unlock()

	fl.Lock()
	defer fl.Unlock()
	defer func() {
		p, _ := recover().(string)
		if !strings.Contains(p, "lock order") {
			t.Fatalf("taking the flights map's lock while holding a flight's = %v; want a lock-order panic", p)
		}
	}()
	fmu.Lock()
	fmu.Unlock()
	t.Fatal("no panic")
}
