//go:build soak

package dlockrt

import (
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/internal/slot"
)

// Built only for make soak (-tags soak): it starts a second six-node
// cluster and reshapes it, which is slow for make test.
// The soak on a Cluster whose primaries fail over and whose slots move
// under the hot keys.
func TestSoak_clusterFaults(t *testing.T) {
	dur, _ := soakDuration(t, 8*time.Second)
	cl := redistest.StartCluster(t, true)
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
