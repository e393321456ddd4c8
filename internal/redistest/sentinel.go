package redistest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// MasterName is the name the Sentinel group monitors.
const MasterName = "dlockmaster"

// Sentinel is a Sentinel group: a primary, one replica and three sentinels
// with a quorum of two.
//
// The sentinels and the replicas log in to the servers as users of their
// own (sentinelUser, replicaUser) while clients use the default user, so
// that SplitBrain can cut a server off from its peers and not from its
// clients.
type Sentinel struct {
	t         TB
	Nodes     []*Server // the primary and the replica (roles change on failover)
	Sentinels []*Server
	clients   []*redis.SentinelClient // one per sentinel, same order

	split *Server // the primary SplitBrain cut off, until Heal
}

// The users the sentinels and the replicas log in as, and their password.
const (
	sentinelUser = "sentinel"
	replicaUser  = "replica"
	peerPass     = "redistest"
)

// nodeArgs are the data nodes' extra config: the peers' users, and the
// user a node replicates as once it is made a replica.
func nodeArgs() []string {
	var args []string
	for _, u := range []string{sentinelUser, replicaUser} {
		args = append(args, "--user", u, "on", ">"+peerPass, "~*", "&*", "+@all")
	}
	return append(args, "--masteruser", replicaUser, "--masterauth", peerPass)
}

// StartSentinel starts a Sentinel group and waits until every sentinel
// monitors the primary and knows the replica and the other sentinels.
func StartSentinel(t TB) *Sentinel {
	t.Helper()
	Binary(t, "redis-sentinel")
	primary := StartServer(t, nodeArgs()...)
	replica := StartServer(t, append(nodeArgs(), "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port))...)
	g := &Sentinel{t: t, Nodes: []*Server{primary, replica}}
	rc := replica.Client()
	WaitFor(t, 10*time.Second, "replica in sync", func(ctx context.Context) bool {
		info, err := rc.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	bin := Binary(t, "redis-sentinel")
	for range 3 {
		s := startProcess(t, bin, nil, func(s *Server) []string {
			conf := filepath.Join(s.dir, "sentinel.conf")
			body := fmt.Sprintf(`port %d
bind 127.0.0.1
protected-mode no
dir %s
logfile %s
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %s 5000
sentinel failover-timeout %s 5000
sentinel parallel-syncs %s 1
sentinel auth-user %s %s
sentinel auth-pass %s %s
`, s.Port, s.dir, filepath.Join(s.dir, "redis.log"), MasterName, primary.Port, MasterName, MasterName, MasterName,
				MasterName, sentinelUser, MasterName, peerPass)
			if _, err := os.Stat(conf); err != nil { // sentinel rewrites its config; keep it on restart
				os.WriteFile(conf, []byte(body), 0o644)
			}
			return []string{conf}
		})
		g.Sentinels = append(g.Sentinels, s)
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
		t.Cleanup(func() { sc.Close() })
		g.clients = append(g.clients, sc)
	}
	WaitFor(t, 20*time.Second, "sentinels to discover each other and the replica", func(ctx context.Context) bool {
		for _, sc := range g.clients {
			m, err := sc.Master(ctx, MasterName).Result()
			if err != nil || m["num-other-sentinels"] != "2" || m["num-slaves"] != "1" {
				return false
			}
		}
		return true
	})
	return g
}

// SentinelAddrs are the sentinels' addresses, for redis.FailoverOptions.
func (g *Sentinel) SentinelAddrs() []string {
	var addrs []string
	for _, s := range g.Sentinels {
		addrs = append(addrs, s.Addr())
	}
	return addrs
}

// Client returns a failover client for the group, closed with the test.
func (g *Sentinel) Client() *redis.Client {
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: MasterName, SentinelAddrs: g.SentinelAddrs()})
	g.t.Cleanup(func() { c.Close() })
	return c
}

// PrimaryAddr is the primary's address as the first sentinel reports it.
func (g *Sentinel) PrimaryAddr(ctx context.Context) (string, error) {
	addr, err := g.clients[0].GetMasterAddrByName(ctx, MasterName).Result()
	if err != nil {
		return "", err
	}
	return addr[0] + ":" + addr[1], nil
}

// Failover forces a failover and waits until every sentinel names the new
// primary and that server reports the master role. It returns the new
// primary's address.
func (g *Sentinel) Failover() string {
	g.t.Helper()
	ctx := context.Background()
	old, err := g.PrimaryAddr(ctx)
	if err != nil {
		g.t.Fatalf("redistest: sentinel primary: %v", err)
	}
	if err := g.clients[0].Failover(ctx, MasterName).Err(); err != nil {
		g.t.Fatalf("redistest: SENTINEL FAILOVER: %v", err)
	}
	return g.waitPromotion(30*time.Second, old)
}

// waitPromotion waits until every sentinel names a primary other than old
// and that server reports the master role, and returns its address.
func (g *Sentinel) waitPromotion(limit time.Duration, old string) string {
	g.t.Helper()
	var now string
	WaitFor(g.t, limit, "failover away from "+old, func(ctx context.Context) bool {
		for _, sc := range g.clients {
			a, err := sc.GetMasterAddrByName(ctx, MasterName).Result()
			if err != nil || a[0]+":"+a[1] == old {
				return false
			}
			now = a[0] + ":" + a[1]
		}
		role, err := role(ctx, now)
		return err == nil && role[0] == "master"
	})
	return now
}

// role is the reply to ROLE from the server at addr.
func role(ctx context.Context, addr string) ([]any, error) {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	r, err := c.Do(ctx, "ROLE").Slice()
	if err == nil && len(r) == 0 {
		err = fmt.Errorf("empty ROLE reply from %s", addr)
	}
	return r, err
}

// SplitBrain cuts the primary off from its replica and from the sentinels,
// while clients still reach it, and waits until the sentinels have
// promoted the replica: two servers then answer ROLE as master and take
// writes. It returns the old primary's address and the new one's. Heal ends
// the partition.
//
// The old primary makes the cut itself: it strips the sentinels' user of
// every right (each command a sentinel sends fails, so to the sentinels it
// is down) and disables the replicas' user and drops its connections (a
// replica can no longer log in to sync).
func (g *Sentinel) SplitBrain() (old, promoted string) {
	g.t.Helper()
	if g.split != nil {
		g.t.Fatalf("redistest: SplitBrain: %s is cut off already", g.split.Addr())
	}
	ctx := context.Background()
	old, err := g.PrimaryAddr(ctx)
	if err != nil {
		g.t.Fatalf("redistest: sentinel primary: %v", err)
	}
	g.split = g.node(old)
	g.peerACL(ctx, g.split, "-@all", "off")
	return old, g.waitPromotion(60*time.Second, old)
}

// Heal ends the partition SplitBrain made and waits until the sentinels
// have made the old primary a replica of the new one, the old primary has
// synced from it (losing the writes it took during the split), and every
// sentinel names the new primary and reaches the old one again.
func (g *Sentinel) Heal() {
	g.t.Helper()
	if g.split == nil {
		g.t.Fatalf("redistest: Heal without SplitBrain")
	}
	ctx := context.Background()
	old := g.split.Addr()
	primary, err := g.PrimaryAddr(ctx)
	if err != nil {
		g.t.Fatalf("redistest: sentinel primary: %v", err)
	}
	g.peerACL(ctx, g.split, "+@all", "on")
	g.split = nil
	WaitFor(g.t, 60*time.Second, old+" to replicate from "+primary, func(ctx context.Context) bool {
		r, err := role(ctx, old)
		if err != nil || len(r) < 4 || r[0] != "slave" || fmt.Sprint(r[1], ":", r[2]) != primary || r[3] != "connected" {
			return false
		}
		for _, sc := range g.clients {
			a, err := sc.GetMasterAddrByName(ctx, MasterName).Result()
			if err != nil || a[0]+":"+a[1] != primary {
				return false
			}
			replicas, err := sc.Replicas(ctx, MasterName).Result()
			if err != nil || !reached(replicas, old) {
				return false
			}
		}
		return true
	})
}

// reached reports whether a SENTINEL REPLICAS reply lists addr with no
// fault flag (such as s_down or disconnected).
func reached(replicas []map[string]string, addr string) bool {
	for _, r := range replicas {
		if r["name"] == addr {
			return r["flags"] == "slave"
		}
	}
	return false
}

// node is the data node at addr.
func (g *Sentinel) node(addr string) *Server {
	g.t.Helper()
	for _, n := range g.Nodes {
		if n.Addr() == addr {
			return n
		}
	}
	g.t.Fatalf("redistest: no node of the group is at %s", addr)
	return nil
}

// peerACL sets the rights of the sentinels' user on n (+@all or -@all) and
// turns the replicas' user on or off, dropping the replicas' connections
// when off. The two users are cut differently: new rights bind connections
// already logged in, while "off" only stops new logins; but a sentinel
// whose AUTH fails goes on as the default user, where a replica gives up.
func (g *Sentinel) peerACL(ctx context.Context, n *Server, sentinelRights, replicaState string) {
	g.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: n.Addr()})
	defer c.Close()
	err := c.Do(ctx, "ACL", "SETUSER", sentinelUser, sentinelRights).Err()
	if err == nil {
		err = c.Do(ctx, "ACL", "SETUSER", replicaUser, replicaState).Err()
	}
	if err == nil && replicaState == "off" {
		err = c.Do(ctx, "CLIENT", "KILL", "USER", replicaUser).Err()
	}
	if err != nil {
		g.t.Fatalf("redistest: ACL on %s: %v", n.Addr(), err)
	}
}
