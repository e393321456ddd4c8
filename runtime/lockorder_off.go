//go:build !dlock_lockorder

package dlockrt

func willLock(int) {}
func unlocked(int) {}
