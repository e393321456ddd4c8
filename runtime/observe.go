package dlockrt

import (
	"context"
	"time"
)

// Observer receives what dlock does, for metrics and tracing (see the
// dlockotel package for OpenTelemetry). Implementations embed BaseObserver,
// so that a new event (a method added here) is a no-op for them. Kind is "lock", "multi",
// "semaphore" or "fanout"; key is the user key, which may carry user data:
// an exporter should not make it a metric attribute. Methods are called
// synchronously on hot paths: they must be fast and safe for concurrent
// use. ctx carries the values of the caller's context (so an exporter can
// attach spans to the caller's trace): for events off the caller's path
// (watchdog renewals, losses) those of the context the lease was acquired
// with, without its cancellation; for a fanout flight, those of its first
// local caller.
type Observer interface {
	// Acquired: a lock, multi-lock or permit was taken after waiting wait
	// (from the call to the grant).
	Acquired(ctx context.Context, kind, key string, wait time.Duration)
	// NotAcquired: a call gave up because others held the key (contention).
	NotAcquired(ctx context.Context, kind, key string)
	// Released: the holder released what it had held since acquired.
	Released(ctx context.Context, kind, key string, acquired time.Time)
	// Extended: a lease was renewed (by the watchdog or Extend).
	Extended(ctx context.Context, kind, key string)
	// Lost: a lease held since acquired was lost before its release.
	Lost(ctx context.Context, kind, key string, acquired time.Time, err error)
	// Queued: a semaphore waiter found no permit; waiters is the length of
	// the key's queue, itself included.
	Queued(ctx context.Context, key string, waiters int)
	// FanoutDone: a flight of this process, begun by its first local
	// caller at start, delivered its outcome to callers local callers;
	// leader says whether this process ran the job; err is the outcome's
	// error (nil for a result; a *RemoteError when another process's
	// leader failed).
	FanoutDone(ctx context.Context, key string, start time.Time, leader bool, callers int, err error)
	// Dropped: something read from Redis for key was malformed or too
	// large (a foreign value, a forged or truncated message) and was
	// ignored; err says what was wrong with it.
	Dropped(ctx context.Context, kind, key string, err error)
}

// BaseObserver does nothing on every event. Embed it in an Observer so
// that events added in later versions do not break the implementation:
// they fall through to BaseObserver.
type BaseObserver struct{}

func (BaseObserver) Acquired(context.Context, string, string, time.Duration) {}
func (BaseObserver) NotAcquired(context.Context, string, string)             {}
func (BaseObserver) Released(context.Context, string, string, time.Time)     {}
func (BaseObserver) Extended(context.Context, string, string)                {}
func (BaseObserver) Lost(context.Context, string, string, time.Time, error)  {}
func (BaseObserver) Queued(context.Context, string, int)                     {}
func (BaseObserver) FanoutDone(context.Context, string, time.Time, bool, int, error) {
}
func (BaseObserver) Dropped(context.Context, string, string, error) {}
