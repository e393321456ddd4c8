package dlockrt

import (
	"errors"
	"fmt"
	"strings"
)

// Errors are compared with errors.Is; each names one situation.
var (
	// ErrNotAcquired: somebody else holds the lock (or permit) right now.
	ErrNotAcquired = errors.New("dlock: not acquired")
	// ErrNotHeld: the caller no longer holds what it tried to release or
	// extend (its lease ran out and maybe someone else took it).
	ErrNotHeld = errors.New("dlock: not held")
	// ErrLost: a held lease could not be kept; the holder must stop relying
	// on it. The error that reports it wraps the reason.
	ErrLost = errors.New("dlock: lease lost")
	// ErrUnavailable: Redis could not be reached or failed. The error that
	// reports it also wraps the cause (a network error, a context error).
	ErrUnavailable = errors.New("dlock: redis unavailable")
	// ErrNoPermission: the Redis user may not run what dlock needs: a
	// command, a key or a channel its ACL leaves out (a NOPERM reply, or
	// a script refused a key or channel), on any connection, the
	// subscriber's included. The error that reports it wraps Redis's
	// reply; the README's Security section lists what to grant.
	ErrNoPermission = errors.New("dlock: the redis user lacks a permission dlock needs (see the README's Security section for the ACL)")
	// ErrAuth: Redis refused the user or password the Redis client logs in
	// with (WRONGPASS, NOAUTH). A configuration error, not an outage.
	ErrAuth = errors.New("dlock: redis refused the user or password (check the Username and Password of the redis client)")
	// ErrUnsupportedServer: the server is older than Redis 7.0 (dlock needs
	// sharded pub/sub, SSUBSCRIBE and SPUBLISH).
	ErrUnsupportedServer = errors.New("dlock: the redis server is older than 7.0 (dlock needs sharded pub/sub)")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("dlock: client closed")
	// ErrInvalid: a bad argument (empty key, TTL <= 0, nil client, ...). The
	// error that reports it says which.
	ErrInvalid = errors.New("dlock: invalid argument")
)

// errReleased is why a lease ended when its holder released it.
var errReleased = fmt.Errorf("%w: released", ErrNotHeld)

// errBadReply: Redis answered a script with something it cannot return
// (a foreign value in a dlock key, a different script under the same SHA).
var errBadReply = errors.New("dlock: unexpected reply from redis")

// unavailable wraps a Redis or network failure so that it matches both
// ErrUnavailable and its cause.
func unavailable(cause error) error {
	if cause == nil || errors.Is(cause, ErrUnavailable) {
		return cause
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, cause)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// MultiLockError reports which keys of a multi-lock others held. It matches
// ErrNotAcquired with errors.Is.
type MultiLockError struct {
	Keys []string // the keys that were held by others, in canonical order
}

func (e *MultiLockError) Error() string {
	return "dlock: not acquired: held by others: " + strings.Join(e.Keys, ", ")
}

// Is reports whether target is ErrNotAcquired.
func (e *MultiLockError) Is(target error) bool { return target == ErrNotAcquired }
