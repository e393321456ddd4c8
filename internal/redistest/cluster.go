package redistest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
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
	votes    *votes
}

// nodeTimeout is cluster-node-timeout.
const nodeTimeout = 5 * time.Second

// votes remembers the failovers of the cluster, for two rules of Redis
// Cluster elections that make a failover asked for too soon time out:
// primaries vote for a replica of a given old primary at most once every
// two node timeouts, and a replica starts an election at most once every
// four node timeouts.
type votes struct {
	mu   sync.Mutex
	from map[string]time.Time // old primary's ID → when a replica took over from it
	by   map[string]time.Time // new primary's ID → when it took over
}

// wait sleeps until a failover of replica (ID) away from old (ID) can
// win. Nothing signals the end of those windows: they are server timers.
func (v *votes) wait(old, replica string) {
	v.mu.Lock()
	d := max(time.Until(v.from[old].Add(2*nodeTimeout)), time.Until(v.by[replica].Add(4*nodeTimeout)))
	v.mu.Unlock()
	if d > 0 {
		time.Sleep(d + 100*time.Millisecond)
	}
}

func (v *votes) record(old, replica string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.from[old] = time.Now()
	v.by[replica] = time.Now()
}

// StartCluster starts a three-primary cluster (and one replica per primary
// when withReplicas) and waits until every node reports cluster_state:ok.
func StartCluster(t TB, withReplicas bool) *Cluster {
	t.Helper()
	n := 3
	if withReplicas {
		n = 6
	}
	c := &Cluster{t: t, admin: map[*Server]*redis.Client{}, replicas: withReplicas,
		votes: &votes{from: map[string]time.Time{}, by: map[string]time.Time{}}}
	// Replicas never fail over on their own (cluster-replica-no-failover):
	// on a loaded 2-core machine a primary can miss the node timeout, and a
	// replica promoting itself behind a test's back breaks what the test set
	// up. The tests' failovers are manual (CLUSTER FAILOVER), which the
	// option allows.
	for range n {
		s := StartServer(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(int(nodeTimeout/time.Millisecond)), "--cluster-replica-no-failover", "yes",
			"--loglevel", "notice") // role changes are logged at notice; failures print them
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
	c.waitRoles()
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

// For returns c reporting failures to t, the test that calls its
// helpers (rather than to whoever started the cluster, which may be
// TestMain).
func (c *Cluster) For(t TB) *Cluster {
	d := *c
	d.t = t
	return &d
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
	c.HalfMigrate(s, to)()
}

// HalfMigrate starts moving slot s to the primary to, as MoveSlot does,
// and leaves it half-migrated: MIGRATING on its primary, IMPORTING on to,
// no key moved yet (a command on keys the source lacks is redirected to
// the target with ASK). The returned finish moves the keys and hands the
// slot over.
func (c *Cluster) HalfMigrate(s int, to *Server) (finish func()) {
	c.t.Helper()
	ctx := context.Background()
	from := c.Owner(s)
	if from == to {
		return func() {}
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
	return func() {
		c.t.Helper()
		c.finishMove(s, from, to)
	}
}

// finishMove moves slot s's keys from from to to and hands the slot over.
func (c *Cluster) finishMove(s int, from, to *Server) {
	c.t.Helper()
	ctx := context.Background()
	src, dst := c.admin[from], c.admin[to]
	dstID := c.nodeID(to)
	must := func(err error, what string) {
		if err != nil {
			c.t.Fatalf("redistest: move slot %d: %s: %v", s, what, err)
		}
	}
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
	c.waitOwnerFixing(s, to, 3*time.Second, func() {
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
// primary. A failover that Redis would refuse so soon after an earlier one
// waits until it can win (up to four node timeouts, 20s; see votes).
func (c *Cluster) FailoverSlot(s int) *Server {
	c.t.Helper()
	if !c.replicas {
		c.t.Fatalf("redistest: FailoverSlot needs a cluster with replicas")
	}
	// A primary ignores a manual failover's start from a node it does not
	// yet know as its replica (say, one demoted by the last failover a
	// moment ago), and the failover then times out: first wait until every
	// node sees every role as it is.
	c.waitRoles()
	old := c.Owner(s)
	oldID := c.nodeID(old)
	var replica *Server
	for _, n := range c.Nodes {
		if r, master := c.role(n); r == "slave" && master == oldID {
			replica = n
		}
	}
	if replica == nil {
		c.t.Fatalf("redistest: no replica of %s", old.Addr())
	}
	replicaID := c.nodeID(replica)
	c.votes.wait(oldID, replicaID)
	failover := func() {
		if err := c.admin[replica].Do(context.Background(), "CLUSTER", "FAILOVER").Err(); err != nil {
			c.t.Fatalf("redistest: CLUSTER FAILOVER: %v", err)
		}
	}
	failover()
	// A manual failover that timed out (after 5s) is asked for again.
	c.waitOwnerFixing(s, replica, 6*time.Second, failover)
	c.votes.record(oldID, replicaID)
	WaitFor(c.t, 30*time.Second, "the old primary to become a replica", func(context.Context) bool {
		r, _ := c.role(old)
		return r == "slave"
	})
	c.waitHealthy()
	c.waitRoles()
	return replica
}

// role returns s's role ("master" or "slave") and its primary's ID ("-"
// for a primary), as s sees itself.
func (c *Cluster) role(s *Server) (role, master string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	nodes, err := c.admin[s].ClusterNodes(ctx).Result()
	if err != nil {
		return "", ""
	}
	for _, n := range parseNodes(nodes) {
		if n.myself {
			return n.role, n.master
		}
	}
	return "", ""
}

// nodeLine is one line of CLUSTER NODES.
type nodeLine struct {
	id, role, master string
	myself           bool
}

func parseNodes(out string) []nodeLine {
	var ns []nodeLine
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		n := nodeLine{id: f[0], master: f[3], myself: strings.Contains(f[2], "myself")}
		switch {
		case strings.Contains(f[2], "master"):
			n.role = "master"
		case strings.Contains(f[2], "slave"):
			n.role = "slave"
		}
		ns = append(ns, n)
	}
	return ns
}

// waitRoles waits until every node's view of every node's role (and
// primary) is what that node says of itself; on timeout the failure names
// a disagreement.
func (c *Cluster) waitRoles() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		off := c.rolesOff()
		if off == "" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("redistest: cluster roles not agreed after 30s: %s", off)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rolesOff describes one node's wrong view of another's role, or returns
// "" when all views agree.
func (c *Cluster) rolesOff() string {
	views := map[*Server][]nodeLine{}
	truth := map[string]nodeLine{}
	for _, s := range c.Nodes {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		out, err := c.admin[s].ClusterNodes(ctx).Result()
		cancel()
		if err != nil {
			return fmt.Sprintf("%s: %v", s.Addr(), err)
		}
		views[s] = parseNodes(out)
		for _, n := range views[s] {
			if n.myself {
				truth[n.id] = n
			}
		}
	}
	for s, view := range views {
		for _, n := range view {
			if t := truth[n.id]; t.role != n.role || t.master != n.master {
				return fmt.Sprintf("%s sees %s as %s of %s; it is %s of %s", s.Addr(), n.id, n.role, n.master, t.role, t.master)
			}
		}
	}
	return ""
}

// waitOwnerFixing waits until every primary names to as the primary of
// slot s (replicas follow by gossip, and clients follow MOVED replies),
// calling fix every period while the nodes disagree; on timeout the
// failure says which node sees what.
func (c *Cluster) waitOwnerFixing(s int, to *Server, period time.Duration, fix func()) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	nextFix := time.Now().Add(period)
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
			c.t.Fatalf("redistest: slot %d not owned by %s everywhere after 30s (target primary: %v): %s\ntarget's log:\n%s", s, to.Addr(), c.IsPrimary(to), strings.Join(disagree, "; "), to.logTail())
		}
		if fix != nil && time.Now().After(nextFix) {
			fix()
			nextFix = time.Now().Add(period)
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
