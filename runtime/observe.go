package dlockrt

import (
	"context"
	"time"
)

// Observer receives what dlock does, for metrics and tracing (see the
// dlockotel package for OpenTelemetry). Kind is "lock", "multi",
// "semaphore" or "fanout"; key is the user key, which may carry user data:
// an exporter should not make it a metric attribute. Methods are called
// synchronously on hot paths: they must be fast and safe for concurrent
// use. ctx is the caller's context where there is one (so an exporter can
// attach spans to the caller's trace), context.Background() otherwise.
type Observer interface {
	// Acquired: a lock, multi-lock or permit was taken after waiting wait
	// (from the call to the grant).
	Acquired(ctx context.Context, kind, key string, wait time.Duration)
	// NotAcquired: a call gave up because others held the key (contention).
	NotAcquired(ctx context.Context, kind, key string)
	// Released: the holder released after holding for held.
	Released(ctx context.Context, kind, key string, held time.Duration)
	// Extended: a lease was renewed (by the watchdog or Extend).
	Extended(ctx context.Context, kind, key string)
	// Lost: a lease was lost before its release.
	Lost(ctx context.Context, kind, key string, err error)
	// Queued: a semaphore waiter found no permit; waiters is the length of
	// the key's queue, itself included.
	Queued(ctx context.Context, key string, waiters int)
	// FanoutDone: a flight of this process delivered its outcome to
	// local callers; leader says whether this process ran the job;
	// err is the outcome's error (nil for a result).
	FanoutDone(ctx context.Context, key string, leader bool, callers int, err error)
}

// nopObserver is the default Observer.
type nopObserver struct{}

func (nopObserver) Acquired(context.Context, string, string, time.Duration) {}
func (nopObserver) NotAcquired(context.Context, string, string)             {}
func (nopObserver) Released(context.Context, string, string, time.Duration) {}
func (nopObserver) Extended(context.Context, string, string)                {}
func (nopObserver) Lost(context.Context, string, string, error)             {}
func (nopObserver) Queued(context.Context, string, int)                     {}
func (nopObserver) FanoutDone(context.Context, string, bool, int, error)    {}
