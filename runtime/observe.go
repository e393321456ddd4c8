package dlockrt

import (
	"context"
	"time"
)

// Observer receives what dlock does, for metrics and tracing (see the
// dlockotel package for OpenTelemetry). Each method takes one event, a
// struct, so that later versions add fields without breaking anyone;
// implementations embed BaseObserver, so that a new event (a method added
// here) is a no-op for them. An event's Key is the user key, which may
// carry user data: an exporter should not make it a metric attribute.
// Methods are called synchronously on hot paths: they must be fast and
// safe for concurrent use. ctx carries the values of the caller's context
// (so an exporter can attach spans to the caller's trace): for events off
// the caller's path (watchdog renewals, losses) those of the context the
// lease was acquired with, without its cancellation; for a fanout flight,
// those of its first local caller.
type Observer interface {
	// Acquired: a lock, multi-lock or permit was taken.
	Acquired(ctx context.Context, e AcquireEvent)
	// NotAcquired: a call gave up because others held the key (contention).
	NotAcquired(ctx context.Context, e NotAcquiredEvent)
	// Released: the holder released what it held.
	Released(ctx context.Context, e ReleaseEvent)
	// Extended: a lease was renewed (by the watchdog or Extend).
	Extended(ctx context.Context, e ExtendEvent)
	// Lost: a lease was lost before its release.
	Lost(ctx context.Context, e LostEvent)
	// Queued: a semaphore waiter found no permit.
	Queued(ctx context.Context, e QueueEvent)
	// FanoutDone: a flight of this process delivered its outcome to its
	// local callers (ctx: the flight's, see FlightTracer).
	FanoutDone(ctx context.Context, e FanoutEvent)
	// FanoutReturned: one caller attached to a flight (a Fanout caller, or
	// a Push whose onDone is called) got its outcome, or gave up (its
	// timeout, its context), with the error it returns; ctx is that
	// caller's. A call refused before it reached a flight (bad options,
	// a closed client) has none.
	FanoutReturned(ctx context.Context, e FanoutCallEvent)
	// Dropped: something read from Redis was malformed or too large (a
	// foreign value, a forged or truncated message) and was ignored.
	Dropped(ctx context.Context, e DropEvent)
	// LimitMismatch: a semaphore's holder asked for another limit than
	// this caller (two builds during a deploy); grants honour the smallest.
	LimitMismatch(ctx context.Context, e LimitEvent)
}

// Kind is what a lease or an event is about.
type Kind string

// The kinds of leases.
const (
	KindLock      Kind = "lock"
	KindMulti     Kind = "multi"
	KindSemaphore Kind = "semaphore"
	KindFanout    Kind = "fanout" // a fanout leader's lease
)

// AcquireEvent: a lease was granted.
type AcquireEvent struct {
	Kind Kind
	Key  string        // the (first) user key
	Wait time.Duration // from the call to the grant
}

// NotAcquiredEvent: a call gave up because others held the key.
type NotAcquiredEvent struct {
	Kind Kind
	Key  string
}

// ReleaseEvent: a holder released its lease.
type ReleaseEvent struct {
	Kind     Kind
	Key      string
	Acquired time.Time // when it was granted
}

// ExtendEvent: a lease was renewed.
type ExtendEvent struct {
	Kind Kind
	Key  string
}

// LostEvent: a lease was lost before its release.
type LostEvent struct {
	Kind     Kind
	Key      string
	Acquired time.Time // when it was granted
	Err      error     // why (it matches ErrLost)
}

// QueueEvent: a semaphore waiter found no permit.
type QueueEvent struct {
	Key     string
	Waiters int // the key's queue, the waiter included
}

// FanoutEvent: a flight delivered its outcome to this process's callers.
type FanoutEvent struct {
	Key     string
	Start   time.Time // when its first local caller called
	Leader  bool      // this process ran the job
	Callers int       // local callers that got the outcome
	Err     error     // the outcome's error: nil for a result; a *RemoteError when another process's leader failed
}

// FanoutCallEvent: one caller's part in a flight ended.
type FanoutCallEvent struct {
	Key    string
	Start  time.Time // when it called
	Leader bool      // its outcome came from this process's run
	Err    error     // its error: the outcome's, or why it gave up
	// Run is the W3C traceparent of the flight that ran the job it got
	// the outcome of (or waited for), in whichever process that was;
	// "" when that process does not trace (see FlightTracer).
	Run string
}

// FlightTracer is implemented by an Observer that traces fanout flights
// across processes (dlockotel's does). StartFlight is called when this
// process starts a flight, with its first caller's context (values only),
// under the client's flight lock: it must be fast and must not call the
// client. It returns the flight's context, which the flight's events and
// its job get, and the flight's W3C traceparent ("" for none): every
// generation the flight leads carries it in its id, so callers in every
// process see it as FanoutCallEvent.Run. EndFlight is called exactly once
// for every flight StartFlight was called for, with the context it
// returned, when the flight ends: with its outcome (after FanoutDone), or
// without one (every caller left; the job outlived them). Without a
// FlightTracer, ids carry no trace context and nothing is spent on it. A
// wrapper around an Observer must forward both methods to keep them.
type FlightTracer interface {
	StartFlight(ctx context.Context, e FlightEvent) (context.Context, string)
	EndFlight(ctx context.Context, e FlightEndEvent)
}

// FlightEvent: this process starts a flight for Key.
type FlightEvent struct {
	Key string
}

// FlightEndEvent: a flight of this process ended.
type FlightEndEvent struct {
	Key       string
	Leader    bool  // it led a generation (its job ran here)
	Delivered bool  // its outcome reached its callers; false when they all left first
	Callers   int   // callers that got the outcome
	Err       error // the outcome's error (nil for a result, or when none was delivered)
}

// DropEvent: something read from Redis for Key was ignored.
type DropEvent struct {
	Kind Kind
	Key  string
	Err  error // what was wrong with it
}

// LimitEvent: processes disagree on a semaphore's limit.
type LimitEvent struct {
	Key   string
	Limit int // this caller's
	Other int // a current holder's
}

// BaseObserver does nothing on every event. Embed it in an Observer so
// that events added in later versions do not break the implementation:
// they fall through to BaseObserver.
type BaseObserver struct{}

func (BaseObserver) Acquired(context.Context, AcquireEvent)          {}
func (BaseObserver) NotAcquired(context.Context, NotAcquiredEvent)   {}
func (BaseObserver) Released(context.Context, ReleaseEvent)          {}
func (BaseObserver) Extended(context.Context, ExtendEvent)           {}
func (BaseObserver) Lost(context.Context, LostEvent)                 {}
func (BaseObserver) Queued(context.Context, QueueEvent)              {}
func (BaseObserver) FanoutDone(context.Context, FanoutEvent)         {}
func (BaseObserver) FanoutReturned(context.Context, FanoutCallEvent) {}
func (BaseObserver) Dropped(context.Context, DropEvent)              {}
func (BaseObserver) LimitMismatch(context.Context, LimitEvent)       {}
