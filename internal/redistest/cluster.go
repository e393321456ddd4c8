package redistest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/slot"
)

// Cluster is a Redis Cluster of three primaries, each with a replica when
// asked for, on loopback ports.
type Cluster struct {
	t        TB
	Nodes    []*Server // primaries first, then replicas
	admin    map[*Server]*redis.Client
	replicas bool
}

// StartCluster starts a three-primary cluster (and one replica per primary
// when withReplicas) and waits until every node reports cluster_state:ok.
func StartCluster(t TB, withReplicas bool) *Cluster {
	t.Helper()
	n := 3
	if withReplicas {
		n = 6
	}
	c := &Cluster{t: t, admin: map[*Server]*redis.Client{}, replicas: withReplicas}
	// A node timeout of 5s: on a loaded 2-core machine a shorter one lets
	// replicas promote themselves behind the tests' backs. The tests' own
	// failovers are manual (CLUSTER FAILOVER) and do not wait for it.
	for range n {
		s := StartServer(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "5000", "--cluster-replica-validity-factor", "0")
		c.Nodes = append(c.Nodes, s)
		c.admin[s] = s.Client()
	}
	ctx := context.Background()
	per := slot.Count / 3
	for i := range 3 {
		lo, hi := i*per, (i+1)*per-1
		if i == 2 {
			hi = slot.Count - 1
		}
		if err := c.admin[c.Nodes[i]].ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
			t.Fatalf("redistest: CLUSTER ADDSLOTSRANGE: %v", err)
		}
	}
	for _, s := range c.Nodes[1:] {
		if err := c.admin[s].ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(c.Nodes[0].Port)).Err(); err != nil {
			t.Fatalf("redistest: CLUSTER MEET: %v", err)
		}
	}
	WaitFor(t, 20*time.Second, "cluster nodes to meet", func(ctx context.Context) bool {
		for _, s := range c.Nodes {
			nodes, err := c.admin[s].ClusterNodes(ctx).Result()
			if err != nil || strings.Count(strings.TrimSpace(nodes), "\n")+1 != n {
				return false
			}
		}
		return true
	})
	if withReplicas {
		for i := range 3 {
			id := c.nodeID(c.Nodes[i])
			if err := c.admin[c.Nodes[3+i]].ClusterReplicate(ctx, id).Err(); err != nil {
				t.Fatalf("redistest: CLUSTER REPLICATE: %v", err)
			}
		}
	}
	c.waitHealthy()
	return c
}

// waitHealthy waits until every node reports cluster_state:ok and every
// replica's link to its primary is up.
func (c *Cluster) waitHealthy() {
	c.t.Helper()
	WaitFor(c.t, 30*time.Second, "cluster_state:ok on every node", func(ctx context.Context) bool {
		for _, s := range c.Nodes {
			info, err := c.admin[s].ClusterInfo(ctx).Result()
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				return false
			}
			repl, err := c.admin[s].Info(ctx, "replication").Result()
			if err != nil || (strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up")) {
				return false
			}
		}
		return true
	})
}

func (c *Cluster) nodeID(s *Server) string {
	id, err := c.admin[s].ClusterMyID(context.Background()).Result()
	if err != nil {
		c.t.Fatalf("redistest: CLUSTER MYID: %v", err)
	}
	return id
}

// Addrs are the addresses of every node.
func (c *Cluster) Addrs() []string {
	var a []string
	for _, s := range c.Nodes {
		a = append(a, s.Addr())
	}
	return a
}

// Client returns a cluster client, closed with the test.
func (c *Cluster) Client() *redis.ClusterClient {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	c.t.Cleanup(func() { cc.Close() })
	return cc
}

// Owner returns the node that serves slot s as primary, as that node sees it.
func (c *Cluster) Owner(s int) *Server {
	c.t.Helper()
	for _, n := range c.Nodes {
		shards, err := c.admin[n].ClusterSlots(context.Background()).Result()
		if err != nil {
			continue
		}
		if servesSlot(shards, s, n.Addr()) {
			return n
		}
	}
	c.t.Fatalf("redistest: no primary owns slot %d", s)
	return nil
}

// MoveSlot migrates slot s, with its keys, from its primary to the primary
// to, the way redis-cli --cluster reshard does.
func (c *Cluster) MoveSlot(s int, to *Server) {
	c.t.Helper()
	ctx := context.Background()
	from := c.Owner(s)
	if from == to {
		return
	}
	src, dst := c.admin[from], c.admin[to]
	srcID, dstID := c.nodeID(from), c.nodeID(to)
	must := func(err error, what string) {
		if err != nil {
			c.t.Fatalf("redistest: move slot %d: %s: %v", s, what, err)
		}
	}
	must(dst.Do(ctx, "CLUSTER", "SETSLOT", s, "IMPORTING", srcID).Err(), "importing")
	must(src.Do(ctx, "CLUSTER", "SETSLOT", s, "MIGRATING", dstID).Err(), "migrating")
	for {
		keys, err := src.ClusterGetKeysInSlot(ctx, s, 100).Result()
		must(err, "getkeysinslot")
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", "127.0.0.1", to.Port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		must(src.Do(ctx, args...).Err(), "migrate")
	}
	// As redis-cli does: the target first (it bumps its config epoch), then
	// the source, then every other primary.
	must(dst.Do(ctx, "CLUSTER", "SETSLOT", s, "NODE", dstID).Err(), "node on target")
	must(src.Do(ctx, "CLUSTER", "SETSLOT", s, "NODE", dstID).Err(), "node on source")
	assign := func() {
		for _, n := range c.Nodes {
			if n != to && c.IsPrimary(n) {
				c.admin[n].Do(ctx, "CLUSTER", "SETSLOT", s, "NODE", dstID)
			}
		}
	}
	assign()
	// Should an older claim win the gossip (a config-epoch tie after an
	// earlier failover), the target takes a new epoch and claims again.
	c.waitOwnerFixing(s, to, func() {
		dst.Do(ctx, "CLUSTER", "BUMPEPOCH")
		dst.Do(ctx, "CLUSTER", "SETSLOT", s, "NODE", dstID)
		assign()
	})
}

// IsPrimary reports whether s is a primary now.
func (c *Cluster) IsPrimary(s *Server) bool {
	repl, err := c.admin[s].Info(context.Background(), "replication").Result()
	return err == nil && strings.Contains(repl, "role:master")
}

// FailoverSlot promotes the replica of slot s's primary with CLUSTER
// FAILOVER (coordinated with the old primary) and waits until every node
// agrees. It needs a cluster started with replicas. It returns the new
// primary.
func (c *Cluster) FailoverSlot(s int) *Server {
	c.t.Helper()
	if !c.replicas {
		c.t.Fatalf("redistest: FailoverSlot needs a cluster with replicas")
	}
	ctx := context.Background()
	old := c.Owner(s)
	oldID := c.nodeID(old)
	var replica *Server
	for _, n := range c.Nodes {
		repl, err := c.admin[n].ClusterNodes(ctx).Result()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(repl, "\n") {
			f := strings.Fields(line)
			if len(f) > 3 && strings.Contains(f[2], "myself") && strings.Contains(f[2], "slave") && f[3] == oldID {
				replica = n
			}
		}
	}
	if replica == nil {
		c.t.Fatalf("redistest: no replica of %s", old.Addr())
	}
	if err := c.admin[replica].Do(ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
		c.t.Fatalf("redistest: CLUSTER FAILOVER: %v", err)
	}
	c.waitOwner(s, replica)
	// The old primary must have become a replica before anyone picks
	// primaries again (a node still calling itself primary after losing its
	// slots would be chosen as a move's target, then demoted mid-move).
	WaitFor(c.t, 30*time.Second, "the old primary to become a replica", func(ctx context.Context) bool {
		repl, err := c.admin[old].Info(ctx, "replication").Result()
		return err == nil && strings.Contains(repl, "role:slave")
	})
	c.waitHealthy()
	return replica
}

// waitOwner waits until every primary names to as the primary of slot s
// (replicas follow by gossip, and clients follow MOVED replies); on timeout
// the failure says which node sees what.
func (c *Cluster) waitOwner(s int, to *Server) { c.waitOwnerFixing(s, to, nil) }

// waitOwnerFixing is waitOwner that calls fix every 3s while the nodes
// disagree.
func (c *Cluster) waitOwnerFixing(s int, to *Server, fix func()) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	nextFix := time.Now().Add(3 * time.Second)
	for {
		var disagree []string
		for _, n := range c.Nodes {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			shards, err := c.admin[n].ClusterSlots(ctx).Result()
			primary := err == nil && c.IsPrimary(n)
			cancel()
			if err != nil || (primary && !servesSlot(shards, s, to.Addr())) {
				disagree = append(disagree, fmt.Sprintf("%s (err %v) sees %s", n.Addr(), err, ownerIn(shards, s)))
			}
		}
		if len(disagree) == 0 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("redistest: slot %d not owned by %s everywhere after 30s (target primary: %v): %s", s, to.Addr(), c.IsPrimary(to), strings.Join(disagree, "; "))
		}
		if fix != nil && time.Now().After(nextFix) {
			fix()
			nextFix = time.Now().Add(3 * time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ownerIn(shards []redis.ClusterSlot, s int) string {
	for _, sh := range shards {
		if s >= sh.Start && s <= sh.End && len(sh.Nodes) > 0 {
			return sh.Nodes[0].Addr
		}
	}
	return "no owner"
}

func servesSlot(shards []redis.ClusterSlot, s int, addr string) bool {
	for _, sh := range shards {
		if s >= sh.Start && s <= sh.End && len(sh.Nodes) > 0 && sh.Nodes[0].Addr == addr {
			return true
		}
	}
	return false
}

// OwnsSlots reports whether s serves any slot as primary, in its own view.
func (c *Cluster) OwnsSlots(s *Server) bool {
	shards, err := c.admin[s].ClusterSlots(context.Background()).Result()
	if err != nil {
		return false
	}
	for _, sh := range shards {
		if len(sh.Nodes) > 0 && sh.Nodes[0].Addr == s.Addr() {
			return true
		}
	}
	return false
}
