package dlockrt

import (
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/history"
	"github.com/dlock-go/dlock/internal/slot"
)

// The soak on a Cluster whose primaries fail over and whose slots move
// under the hot keys, or stay half-migrated (MIGRATING/IMPORTING) for a
// while (the package's shared cluster: the faults leave it healthy for the
// tests that follow). make test runs each fault once.
func TestSoak_clusterFaults(t *testing.T) {
	cl := sharedCluster(t).For(t)
	c := newClient(t, cl.Client(), &Options{Prefix: "x"}) // for the slots of the hot keys
	var slots []int
	for _, k := range []string{"k0", "k1", "sem"} {
		slots = append(slots, slot.Of(mustTag(t, c, k)))
	}
	step := 0
	next := func() int { step++; return slots[step%len(slots)] }
	faults := []soakFault{
		// CLUSTER FAILOVER without FORCE waits for the replica to catch up:
		// no acknowledged write is lost, so nothing is excused.
		{"Cluster primary failover", history.None, func() { cl.FailoverSlot(next()) }},
		{"Cluster slot migration", history.None, func() { clusterFault(cl, "move", next()) }},
		{"Cluster slot half-migrated 500ms", history.None, func() {
			s := next()
			finish := cl.HalfMigrate(s, otherPrimary(cl, s))
			time.Sleep(500 * time.Millisecond)
			finish()
		}},
	}
	runSoak(t, "Cluster", soakDuration(t), []string{"CLUSTER=" + strings.Join(cl.Addrs(), ",")}, cl.Client(), faults)
}
