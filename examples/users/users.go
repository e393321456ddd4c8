// Package users is a small service whose loaders and jobs are coordinated
// across the fleet by dlock's generated wrappers.
package users

//go:generate go run github.com/dlock-go/dlock/cmd/dlockgen

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	dlockrt "github.com/dlock-go/dlock/runtime"
)

// User is what the loaders return.
type User struct {
	ID      int64
	Name    string
	Tags    []string
	Seen    time.Time
	Friends map[string]int64
}

// ErrNotFound crosses the wire: every caller of a fanout gets it.
var ErrNotFound = errors.New("users: not found")

func init() { dlockrt.RegisterError("users.not_found", ErrNotFound) }

// Loader is where users come from; tests count its calls.
var Loader func(ctx context.Context, id int64) (User, error)

// loadUser loads one user. LoadUser runs it once for all concurrent
// callers of the same id across the fleet.
//
//dlock:fanout key="user:{id}" ttl=2s
func loadUser(ctx context.Context, id int64) (User, error) {
	return Loader(ctx, id)
}

// countActive returns a count and a label, without a key: the key digests
// the arguments.
//
//dlock:fanout
func countActive(ctx context.Context, since time.Duration, tags []string) (int, string, error) {
	return len(tags), "since " + since.String(), nil
}

// ReindexFunc is what only one replica may run at a time.
var ReindexFunc func(ctx context.Context, shard string) error

// reindex runs ReindexFunc holding the fleet-wide lock of its shard.
//
//dlock:once key="reindex:{shard}" ttl=2s
func reindex(ctx context.Context, shard string) error {
	return ReindexFunc(ctx, shard)
}

// ExportFunc is the rate-limited call.
var ExportFunc func(ctx context.Context, tenant string) error

// export runs ExportFunc with at most 2 in flight fleet-wide per tenant.
//
//dlock:semaphore limit=2 key="export:{tenant}" wait=5s
func export(ctx context.Context, tenant string) error {
	return ExportFunc(ctx, tenant)
}

// Store is a user store used through an interface.
type Store struct{ Calls int }

// Getter is what handlers depend on.
type Getter interface {
	Get(ctx context.Context, id int64) (*User, error)
}

// Get loads a user from the store.
//
//dlock:fanout key="store-user:{id}"
func (s *Store) Get(ctx context.Context, id int64) (*User, error) {
	s.Calls++
	return &User{ID: id, Name: "stored"}, nil
}

var _ Getter = (*StoreWithDlock)(nil)

// Profile is another view of a user, under the same key template as
// loadUser: each annotated function has its own key space, so the two
// never share flights or results.
type Profile struct {
	Bio       string
	Followers int
}

// loadProfile loads a user's profile.
//
//dlock:fanout key="user:{id}" ttl=2s
func loadProfile(ctx context.Context, id int64) (Profile, error) {
	return Profile{Bio: "bio of " + strconv.FormatInt(id, 10), Followers: int(id)}, nil
}

// loadDoc loads one tenant's document. Values are escaped for the
// template's punctuation, so ("acme:1", "2") and ("acme", "1:2") are
// different keys.
//
//dlock:fanout key="doc:{tenant}:{id}" ttl=2s
func loadDoc(ctx context.Context, tenant, id string) (string, error) {
	return "tenant=" + tenant + " id=" + id, nil
}

// TenantStore is one tenant's store: its key names the receiver's Tenant,
// so decorators over two tenants' stores never share results.
type TenantStore struct{ Tenant string }

// Get loads a user of the store's tenant.
//
//dlock:fanout key="tenant-user:{s.Tenant}:{id}"
func (s *TenantStore) Get(ctx context.Context, id int64) (string, error) {
	return s.Tenant + "/" + strconv.FormatInt(id, 10), nil
}

// ErrGone is one of the package's sentinel errors: the generated file
// registers it, so errors.Is holds for it in every process, wrapped or not.
var ErrGone = errors.New("users: gone")

// loadGone fails with a wrapped sentinel.
//
//dlock:fanout key="gone:{id}"
func loadGone(ctx context.Context, id int64) (string, error) {
	return "", fmt.Errorf("find %d: %w", id, ErrGone)
}
