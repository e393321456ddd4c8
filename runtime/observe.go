package dlockrt

import "time"

// Observer receives what dlock does, for metrics and tracing (see the
// dlockotel package for OpenTelemetry). Kind is "lock", "multi",
// "semaphore" or "fanout"; key is the user key, which may carry user data:
// an exporter should not make it a metric attribute. Methods are called
// synchronously on hot paths: they must be fast and safe for concurrent
// use.
type Observer interface {
	// Acquired: a lock, multi-lock or permit was taken after waiting wait
	// (from the call to the grant).
	Acquired(kind, key string, wait time.Duration)
	// NotAcquired: a call gave up because others held the key (contention).
	NotAcquired(kind, key string)
	// Released: the holder released after holding for held.
	Released(kind, key string, held time.Duration)
	// Extended: a lease was renewed (by the watchdog or Extend).
	Extended(kind, key string)
	// Lost: a lease was lost before its release.
	Lost(kind, key string, err error)
	// FanoutDone: a flight of this process delivered its outcome to
	// callers local callers; leader says whether this process ran the job;
	// err is the outcome's error (nil for a result).
	FanoutDone(key string, leader bool, callers int, err error)
}

// nopObserver is the default Observer.
type nopObserver struct{}

func (nopObserver) Acquired(string, string, time.Duration) {}
func (nopObserver) NotAcquired(string, string)             {}
func (nopObserver) Released(string, string, time.Duration) {}
func (nopObserver) Extended(string, string)                {}
func (nopObserver) Lost(string, string, error)             {}
func (nopObserver) FanoutDone(string, bool, int, error)    {}
