// Package profiles is the smallest use of a generated wrapper: loadProfile
// is annotated with //dlock:fanout, and dlockgen generated LoadProfile in
// dlock_gen.go. Concurrent callers of LoadProfile with the same name, in
// every process of the fleet, share one run of loadProfile.
package profiles

//go:generate go run github.com/dlock-go/dlock/cmd/dlockgen

import (
	"context"
	"sync/atomic"
	"time"
)

// Profile is what the loader returns.
type Profile struct {
	Name   string
	Visits int
}

// Loads counts the runs of loadProfile.
var Loads atomic.Int32

// loadProfile is the slow query that LoadProfile runs once per stampede.
//
//dlock:fanout key="profile:{name}" ttl=5s
func loadProfile(ctx context.Context, name string) (Profile, error) {
	Loads.Add(1)
	time.Sleep(50 * time.Millisecond)
	return Profile{Name: name, Visits: 3}, nil
}
