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
	// Name is the client's name in the identity every grant it takes
	// carries (with the host, the process id and when it asked), which
	// Inspect and the dlock command show: a service's name, say. Cut to 40
	// bytes of [A-Za-z0-9._:-]. Default: the executable's name.
	Name string

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

	// FanoutTimeout is how long a Fanout or Push caller waits for the
	// outcome unless WithTimeout says otherwise; the leader's job is given as
	// long. Default twice TTL (as in the Node package).
	FanoutTimeout time.Duration

	// ResultTTL is how long a fanout result stays readable in Redis after
	// it was published, so that a caller that joins just then (or missed
	// the message while reconnecting) still gets it. A caller that joins
	// within ResultTTL after a run completed gets that run's result.
	// Default 3s.
	ResultTTL time.Duration

	// MaxResultSize is the largest fanout result, in bytes. A larger one
	// fails at the leader and reaches every caller as ErrResultTooLarge.
	// It also bounds what this process accepts from Redis: use the same
	// value in every process of a fleet (a result from a leader with a
	// larger limit is dropped here, and this process's callers run the job
	// again). Default 1 MiB.
	MaxResultSize int

	// FenceTTL is how long a released lock's key stays in Redis, keeping
	// the key's last fencing token (and letting a retried release know it
	// released). Tokens are the server's clock in microseconds, bumped past
	// the key's last token when needed, so they keep growing after the key
	// expired. Default 2 minutes: a key no longer used leaves nothing in
	// Redis a few minutes after its last lease.
	FenceTTL time.Duration

	// OpTimeout bounds the clean-up round trips dlock makes with no caller
	// waiting (rolling back a partial multi-lock, a fanout leader stepping
	// down, a semaphore waiter leaving the queue, Close). Release runs on
	// the caller's context without its cancellation, bounded by the Redis
	// client's own timeouts. Default 5s.
	OpTimeout time.Duration

	// Startup says what New does with Client.Check, the proof that Redis
	// gives dlock all it needs. Default StartupWarn: New checks in the
	// background and logs each problem as a warning.
	Startup StartupCheck

	// Eviction says what New does about a server whose maxmemory-policy
	// may evict dlock's keys (see CheckEviction; Check includes it unless
	// EvictionIgnore). Default EvictionWarn.
	Eviction EvictionCheck

	// Observer receives events for metrics and tracing. Default: none.
	Observer Observer

	// Logger receives warnings (start-up problems, dropped messages,
	// reconnects, lost leases, semaphore limits that disagree). Default
	// slog.Default(); to silence dlock, pass
	// slog.New(slog.DiscardHandler). Results and arguments are never
	// logged.
	Logger *slog.Logger
}

// StartupCheck is what New does with Client.Check (Options.Startup).
type StartupCheck int

const (
	// StartupWarn: New runs Check in the background (within
	// Options.OpTimeout) and logs each problem it finds as a warning (a
	// maxmemory-policy it may not read at Info level). New itself makes no
	// round trip.
	StartupWarn StartupCheck = iota
	// StartupRefuse: New runs Check before it returns (within
	// Options.OpTimeout) and fails with its error: misconfiguration fails
	// at start-up, not under load.
	StartupRefuse
	// StartupSkip: New does not check (Options.Eviction still applies).
	StartupSkip
)

func (o *Options) resolve() (Options, error) {
	var r Options
	if o != nil {
		r = *o
	}
	if r.Prefix == "" {
		r.Prefix = "dlock"
	}
	if r.Name == "" {
		r.Name = defaultName()
	}
	if strings.ContainsAny(r.Prefix, "{}") {
		return r, invalid("prefix %q contains '{' or '}'", r.Prefix)
	}
	if r.Eviction < EvictionWarn || r.Eviction > EvictionIgnore {
		return r, invalid("unknown Options.Eviction %d", r.Eviction)
	}
	if r.Startup < StartupWarn || r.Startup > StartupSkip {
		return r, invalid("unknown Options.Startup %d", r.Startup)
	}
	if r.TTL < 0 || r.RetryDelay < 0 || r.FenceTTL < 0 || r.OpTimeout < 0 || r.Retries < 0 ||
		r.FanoutTimeout < 0 || r.ResultTTL < 0 || r.MaxResultSize < 0 {
		return r, invalid("negative duration or retry count in Options")
	}
	if r.TTL == 0 {
		r.TTL = 10 * time.Second
	}
	if r.FanoutTimeout == 0 {
		r.FanoutTimeout = 2 * r.TTL
	}
	if r.ResultTTL == 0 {
		r.ResultTTL = 3 * time.Second
	}
	if r.MaxResultSize == 0 {
		r.MaxResultSize = 1 << 20
	}
	if r.RetryDelay == 0 {
		r.RetryDelay = 100 * time.Millisecond
	}
	if r.FenceTTL == 0 {
		r.FenceTTL = 2 * time.Minute
	}
	if r.OpTimeout == 0 {
		r.OpTimeout = 5 * time.Second
	}
	if r.Observer == nil {
		r.Observer = BaseObserver{}
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	return r, nil
}

// Option changes one call (a lock, a fanout, a push).
type Option func(*callConfig)

type callConfig struct {
	ttl      time.Duration
	retries  int
	delay    time.Duration
	watchdog bool
	timeout  time.Duration // fanout/push: how long a caller waits for the outcome
	patient  bool          // fanout/push: wait through Redis outages
	err      error
	set      optSet // the options given
}

// optSet names options, to check that a call takes those it was given.
type optSet int

const (
	optTTL optSet = 1 << iota
	optRetries
	optWatchdog
	optTimeout
	optOutages
)

var optNames = map[optSet]string{optTTL: "WithTTL", optRetries: "WithRetries", optWatchdog: "WithWatchdog",
	optTimeout: "WithTimeout", optOutages: "WaitThroughOutages"}

// What each call takes.
const (
	onceOpts      = optTTL | optRetries | optWatchdog // Once, Multi
	lockOpts      = optTTL | optWatchdog              // Lock: it waits on its context
	fanoutOpts    = optTTL | optTimeout | optOutages  // Fanout, Push: the leader always has a watchdog
	semaphoreOpts = optTTL | optWatchdog              // Acquire, TryAcquire
)

// WithTTL sets the lease of a lock, or of a fanout's leader (d > 0).
// Default Options.TTL.
func WithTTL(d time.Duration) Option {
	return func(c *callConfig) {
		if d <= 0 {
			c.err = invalid("ttl %v <= 0", d)
		}
		c.ttl = d
		c.set |= optTTL
	}
}

// WithRetries makes Once (and Multi) try n more times after a failed
// attempt, pausing a random time in [delay/2, 3*delay/2) between attempts.
// Default Options.Retries and Options.RetryDelay.
func WithRetries(n int, delay time.Duration) Option {
	return func(c *callConfig) {
		if n < 0 || delay < 0 {
			c.err = invalid("retries %d, delay %v: negative", n, delay)
		}
		c.retries, c.delay = n, delay
		c.set |= optRetries
	}
}

// WithWatchdog turns the watchdog on or off for this lock, multi-lock or
// permit (Once, Lock, MultiWith, Semaphore.Acquire). Default: on, unless
// Options.NoWatchdog. A fanout's leader always has one.
func WithWatchdog(on bool) Option {
	return func(c *callConfig) { c.watchdog, c.set = on, c.set|optWatchdog }
}

// WithTimeout bounds how long a Fanout or Push caller waits for the outcome
// (d > 0), on top of its context; the leader's job gets as long. Default
// Options.FanoutTimeout.
func WithTimeout(d time.Duration) Option {
	return func(c *callConfig) {
		if d <= 0 {
			c.err = invalid("timeout %v <= 0", d)
		}
		c.timeout = d
		c.set |= optTimeout
	}
}

// WaitThroughOutages makes a Fanout or Push caller that waits for a leader
// in another process wait through Redis outages, until its timeout. By
// default, once the flight's joins have failed for Options.OpTimeout (Redis
// unreachable), the caller gets an ErrUnavailable error that says so. (A
// caller whose flight leads in its own process gets the outcome locally
// either way.)
func WaitThroughOutages() Option {
	return func(c *callConfig) { c.patient, c.set = true, c.set|optOutages }
}

// callConfig applies opts to the client's defaults; an option the call
// (named call) does not take is an ErrInvalid error, not silently ignored.
func (c *Client) callConfig(call string, takes optSet, opts []Option) (callConfig, error) {
	cfg := callConfig{ttl: c.opts.TTL, retries: c.opts.Retries, delay: c.opts.RetryDelay,
		watchdog: !c.opts.NoWatchdog, timeout: c.opts.FanoutTimeout}
	for _, o := range opts {
		if o == nil {
			return cfg, invalid("nil Option")
		}
		o(&cfg)
	}
	if extra := cfg.set &^ takes; extra != 0 {
		for o := optTTL; o <= optOutages; o <<= 1 {
			if extra&o != 0 {
				return cfg, invalid("%s does not take %s", call, optNames[o])
			}
		}
	}
	return cfg, cfg.err
}
