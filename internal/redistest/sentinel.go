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
type Sentinel struct {
	t         TB
	Nodes     []*Server // the primary and the replica (roles change on failover)
	Sentinels []*Server
	clients   []*redis.SentinelClient // one per sentinel, same order
}

// StartSentinel starts a Sentinel group and waits until every sentinel
// monitors the primary and knows the replica and the other sentinels.
func StartSentinel(t TB) *Sentinel {
	t.Helper()
	Binary(t, "redis-sentinel")
	primary := StartServer(t)
	replica := StartServer(t, "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port))
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
`, s.Port, s.dir, filepath.Join(s.dir, "redis.log"), MasterName, primary.Port, MasterName, MasterName, MasterName)
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
	var now string
	WaitFor(g.t, 30*time.Second, "failover to complete", func(ctx context.Context) bool {
		for _, sc := range g.clients {
			a, err := sc.GetMasterAddrByName(ctx, MasterName).Result()
			if err != nil || a[0]+":"+a[1] == old {
				return false
			}
			now = a[0] + ":" + a[1]
		}
		c := redis.NewClient(&redis.Options{Addr: now})
		defer c.Close()
		role, err := c.Do(ctx, "ROLE").Slice()
		return err == nil && len(role) > 0 && role[0] == "master"
	})
	return now
}
