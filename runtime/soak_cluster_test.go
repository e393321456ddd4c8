package dlockrt

import (
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/slot"
)

// The soak on a Cluster whose primaries fail over and whose slots move
// under the hot keys (the package's shared cluster: the faults leave it
// healthy for the tests that follow). make test runs it for 8s.
func TestSoak_clusterFaults(t *testing.T) {
	dur, _ := soakDuration(t, 8*time.Second)
	cl := sharedCluster(t).For(t)
	c := newClient(t, cl.Client(), &Options{Prefix: "x"}) // for the slots of the hot keys
	var slots []int
	for _, k := range []string{"k0", "k1", "sem"} {
		slots = append(slots, slot.Of(mustTag(t, c, k)))
	}
	step := 0
	faults := []soakFault{
		{"Cluster primary failover", func() { step++; cl.FailoverSlot(slots[step%len(slots)]) }},
		{"Cluster slot migration", func() { step++; clusterFault(cl, "move", slots[step%len(slots)]) }},
	}
	runSoak(t, dur, []string{"CLUSTER=" + strings.Join(cl.Addrs(), ",")}, faults)
}
