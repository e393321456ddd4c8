package dlockrt

import (
	"context"
	"errors"
	"log"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/redistest"
)

// aclUser creates user with rule on srv and returns a go-redis client
// logged in as it with password.
func aclUser(t *testing.T, srv *redistest.Server, user, rule, password string) *redis.Client {
	t.Helper()
	if err := srv.Client().Do(t.Context(), append([]any{"ACL", "SETUSER", user}, toAny(strings.Fields(rule))...)...).Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: user, Password: password, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// P32: Check finds each misconfiguration at start-up, on a real server
// set up with it, as a distinct error that says what to do, and all of
// them in one call.
func TestClient_Check_eachMisconfiguration(t *testing.T) {
	noScripts := strings.Replace(ACLRule, "+evalsha +eval ", "", 1)
	noChannels := strings.Replace(ACLRule, "&dlock:*", "", 1)
	otherKeys := strings.Replace(ACLRule, "~dlock:*", "~other:*", 1)
	for _, tc := range []struct {
		name   string
		client func(t *testing.T) (redis.UniversalClient, *Options)
		want   []error  // every one must match
		not    []error  // none may match
		says   []string // the message must say each
	}{
		{"healthy (least-privilege ACL)", func(t *testing.T) (redis.UniversalClient, *Options) {
			return aclUser(t, redistest.StartServer(t), "dlockapp", ACLRule, "secret"), &Options{Eviction: EvictionIgnore}
		}, nil, []error{ErrUnavailable, ErrAuth, ErrNoPermission, ErrUnsupportedServer, ErrEvictable}, nil},
		{"wrong address", func(t *testing.T) (redis.UniversalClient, *Options) {
			return redisAt(t, "127.0.0.1:"+strconv.Itoa(redistest.FreePort(t))), nil
		}, []error{ErrUnavailable}, []error{ErrAuth, ErrNoPermission}, []string{"address"}},
		{"wrong password", func(t *testing.T) (redis.UniversalClient, *Options) {
			srv := redistest.StartServer(t)
			aclUser(t, srv, "dlockapp", ACLRule, "secret")
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "dlockapp", Password: "wrong", MaxRetries: -1})
			t.Cleanup(func() { rdb.Close() })
			return rdb, nil
		}, []error{ErrAuth}, []error{ErrUnavailable, ErrNoPermission}, []string{"password"}},
		{"no script permission", func(t *testing.T) (redis.UniversalClient, *Options) {
			return aclUser(t, redistest.StartServer(t), "dlockapp", noScripts, "secret"), &Options{Eviction: EvictionIgnore}
		}, []error{ErrNoPermission}, []error{ErrUnavailable, ErrAuth}, []string{"take and release a lock", "evalsha"}},
		{"no key permission", func(t *testing.T) (redis.UniversalClient, *Options) {
			return aclUser(t, redistest.StartServer(t), "dlockapp", otherKeys, "secret"), &Options{Eviction: EvictionIgnore}
		}, []error{ErrNoPermission}, []error{ErrUnavailable, ErrAuth}, []string{"keys"}},
		{"no channel permission", func(t *testing.T) (redis.UniversalClient, *Options) {
			return aclUser(t, redistest.StartServer(t), "dlockapp", noChannels, "secret"), &Options{Eviction: EvictionIgnore}
		}, []error{ErrNoPermission}, []error{ErrUnavailable, ErrAuth}, []string{"subscribe to dlock's channels", "publish"}},
		{"old server", func(t *testing.T) (redis.UniversalClient, *Options) {
			srv := redistest.StartServer(t)
			p := redistest.StartProxy(t, srv.Addr())
			p.Rewrite("7.0.15", "6.2.14") // what HELLO says
			return redisAt(t, p.Addr()), &Options{Eviction: EvictionIgnore}
		}, []error{ErrUnsupportedServer}, []error{ErrUnavailable, ErrNoPermission}, []string{"6.2.14"}},
		{"evictable", func(t *testing.T) (redis.UniversalClient, *Options) {
			srv := redistest.StartServer(t)
			evicting(t, srv.Client(), "100mb", "allkeys-lru")
			return srv.Client(), nil
		}, []error{ErrEvictable}, []error{ErrUnavailable, ErrNoPermission}, []string{"noeviction"}},
		{"policy unreadable (CONFIG refused)", func(t *testing.T) (redis.UniversalClient, *Options) {
			return aclUser(t, redistest.StartServer(t), "dlockapp", ACLRule, "secret"), nil
		}, []error{ErrNoPermission}, []error{ErrEvictable}, []string{"maxmemory-policy", "EvictionIgnore"}},
		{"no channel permission and evictable, in one call", func(t *testing.T) (redis.UniversalClient, *Options) {
			srv := redistest.StartServer(t)
			evicting(t, srv.Client(), "100mb", "volatile-lru")
			return aclUser(t, srv, "dlockapp", noChannels+" +config|get", "secret"), nil
		}, []error{ErrNoPermission, ErrEvictable}, []error{ErrUnavailable}, []string{"channels", "noeviction"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb, o := tc.client(t)
			c := newClient(t, rdb, o)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err := c.Check(ctx)
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("Check = %v; want it to match %v", err, w)
				}
			}
			for _, n := range tc.not {
				if errors.Is(err, n) {
					t.Errorf("Check = %v; want it not to match %v", err, n)
				}
			}
			for _, s := range tc.says {
				if err == nil || !strings.Contains(err.Error(), s) {
					t.Errorf("Check = %v; want it to say %q", err, s)
				}
			}
		})
	}
}

// Options.Startup: StartupRefuse makes New fail with Check's error;
// StartupWarn (the default) logs each problem and New succeeds.
func TestNew_Startup(t *testing.T) {
	srv := redistest.StartServer(t)
	rdb := aclUser(t, srv, "dlockapp", strings.Replace(ACLRule, "&dlock:*", "", 1), "secret")
	if c, err := New(rdb, &Options{Startup: StartupRefuse, Eviction: EvictionIgnore}); !errors.Is(err, ErrNoPermission) || c != nil {
		t.Fatalf("New(StartupRefuse) without channel permissions = %v, %v; want ErrNoPermission", c, err)
	}
	logs := make(chan slog.Record, 10)
	newClientStarted(t, rdb, &Options{Logger: slog.New(chanHandler{logs}), Eviction: EvictionIgnore})
	r := recv(t, logs, 10*time.Second, "New's start-up check to warn")
	if r.Level != slog.LevelWarn || !strings.Contains(r.Message, "does not give dlock all it needs") {
		t.Fatalf("New logged %v %q; want a warning", r.Level, r.Message)
	}
	if _, err := New(rdb, &Options{Startup: 7}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("New(Startup: 7) = %v; want ErrInvalid", err)
	}
}

// With no Options.Logger, dlock's warnings go to slog.Default.
func TestOptions_Logger_defaultsToSlogDefault(t *testing.T) {
	srv := redistest.StartServer(t)
	evicting(t, srv.Client(), "100mb", "allkeys-lru")
	logs := make(chan slog.Record, 100)
	old, oldOut, oldFlags := slog.Default(), log.Writer(), log.Flags()
	slog.SetDefault(slog.New(chanHandler{logs}))
	t.Cleanup(func() {
		// SetDefault also sent the log package's output to the handler;
		// setting the old default back does not undo that.
		slog.SetDefault(old)
		log.SetOutput(oldOut)
		log.SetFlags(oldFlags)
	})
	newClientStarted(t, srv.Client(), nil)
	// Other clients still alive in this process may log to slog.Default
	// meanwhile; the eviction warning is among the records.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := recv(t, logs, time.Until(deadline), "the eviction warning on slog.Default")
		if strings.Contains(r.Message, "evict") {
			return
		}
	}
}
