// Package dlocktest runs dlock without a Redis server: an in-process,
// Redis-compatible server (miniredis) on a loopback port, with the few
// commands dlock needs that it lacks (sharded pub/sub) mapped onto the ones
// it has. Use it to unit-test code that calls generated wrappers or the
// runtime, and for demos; it has the same semantics in one process (and
// across processes that connect to its address), not Redis's performance
// or its failure modes.
//
//	func TestHandler(t *testing.T) {
//		dlockrt.SetDefault(dlocktest.NewClient(t))
//		u, err := users.LoadUser(t.Context(), 7)
//		...
//	}
package dlocktest

import (
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/alicebob/miniredis/v2/server"
	"github.com/redis/go-redis/v9"

	dlockrt "github.com/dlock-go/dlock/runtime"
)

// Server is an in-process Redis-compatible server.
type Server struct {
	*miniredis.Miniredis
}

// Start starts a server on a free loopback port. Close it when done.
func Start() (*Server, error) {
	m := miniredis.NewMiniRedis()
	if err := m.Start(); err != nil {
		return nil, err
	}
	srv := m.Server()
	// Sharded pub/sub has the semantics of classic pub/sub on one server.
	for sharded, classic := range map[string]string{
		"SSUBSCRIBE": "SUBSCRIBE", "SUNSUBSCRIBE": "UNSUBSCRIBE", "SPUBLISH": "PUBLISH",
	} {
		err := srv.Register(sharded, func(c *server.Peer, _ string, args []string) {
			srv.Dispatch(c, append([]string{classic}, args...))
		})
		if err != nil {
			m.Close()
			return nil, err
		}
	}
	return &Server{m}, nil
}

// NewClient starts a server and returns a dlock client of it; both are
// closed when the test ends. Its Options.Startup is StartupSkip (the
// in-process server cannot prove what Client.Check looks for).
func NewClient(t testing.TB, opts ...*dlockrt.Options) *dlockrt.Client {
	t.Helper()
	s, err := Start()
	if err != nil {
		t.Fatalf("dlocktest: %v", err)
	}
	t.Cleanup(s.Close)
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	t.Cleanup(func() { rdb.Close() })
	var o dlockrt.Options
	if len(opts) > 0 && opts[0] != nil {
		o = *opts[0]
	}
	// The in-process server has no CONFIG: nothing to prove at start-up.
	o.Startup = dlockrt.StartupSkip
	c, err := dlockrt.New(rdb, &o)
	if err != nil {
		t.Fatalf("dlocktest: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
