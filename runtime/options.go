package dlockrt

import (
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options configure a Client. The zero value of every field means its
// default; a nil *Options means all defaults.
type Options struct {
	// Prefix starts every Redis key and channel the client uses
	// ("<Prefix>:{<key>}:lock", ...). It must not contain '{' or '}'.
	// Default "dlock".
	Prefix string

	// PubSub, when set, carries the client's subscriptions instead of the
	// main client (like the Node package's second client). It must reach
	// the same servers. Default: the main client.
	PubSub redis.UniversalClient

	// TTL is the lease of locks taken without WithTTL. Default 10s.
	TTL time.Duration

	// Retries is how many more attempts Once makes after a failed one.
	// Default 0 (one attempt).
	Retries int

	// RetryDelay is the mean pause between Once's attempts; each pause is
	// drawn at random from [RetryDelay/2, 3*RetryDelay/2). Default 100ms.
	RetryDelay time.Duration

	// NoWatchdog turns the watchdog off for locks taken without
	// WithWatchdog. Default false: a held lock's lease is renewed until it is
	// released.
	NoWatchdog bool

	// FenceTTL is how long a key's fencing counter outlives its last use.
	// Tokens are the server's clock in microseconds, bumped past the key's
	// last token when needed, so they keep growing after the counter
	// expired. Default 30 days.
	FenceTTL time.Duration

	// OpTimeout bounds one Redis round trip made on the caller's behalf
	// where the caller gave no context to bound it (Release after the
	// caller's context ended, Close). Default 5s.
	OpTimeout time.Duration

	// Logger receives warnings (dropped messages, reconnects, lost leases).
	// Default: discard. Results and arguments are never logged.
	Logger *slog.Logger
}

func (o *Options) resolve() (Options, error) {
	var r Options
	if o != nil {
		r = *o
	}
	if r.Prefix == "" {
		r.Prefix = "dlock"
	}
	if strings.ContainsAny(r.Prefix, "{}") {
		return r, invalid("prefix %q contains '{' or '}'", r.Prefix)
	}
	if r.TTL < 0 || r.RetryDelay < 0 || r.FenceTTL < 0 || r.OpTimeout < 0 || r.Retries < 0 {
		return r, invalid("negative duration or retry count in Options")
	}
	if r.TTL == 0 {
		r.TTL = 10 * time.Second
	}
	if r.RetryDelay == 0 {
		r.RetryDelay = 100 * time.Millisecond
	}
	if r.FenceTTL == 0 {
		r.FenceTTL = 30 * 24 * time.Hour
	}
	if r.OpTimeout == 0 {
		r.OpTimeout = 5 * time.Second
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return r, nil
}
