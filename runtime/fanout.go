package dlockrt

import (
	"context"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/dlock-go/dlock/internal/mpcheck"
)

// Fanout runs job for key once across the fleet and gives every concurrent
// caller its outcome. The first caller to join leads: it runs job on a
// context of its own, detached from every caller's cancellation and ended
// by the timeout or by the loss of the leader's lease (renewed by the
// watchdog while the job runs). Every caller that joins while the job runs,
// in this process (no Redis traffic) or another, gets the same bytes, or
// the job's error as a *RemoteError (errors.Is matches registered errors;
// see RegisterError). A caller that joins within Options.ResultTTL after a
// run completed gets that run's outcome.
//
// When the leader dies, one waiter takes over once its lease lapses, and
// runs its own job. A caller that cancels ctx leaves alone, with ctx.Err();
// the job goes on for the others. A caller that waits past its timeout
// (WithTimeout, default Options.FanoutTimeout) gets ErrTimeout. Redis
// failing at the join is an ErrUnavailable error, and so is a caller's
// context ending before Redis ever answered its flight. The job runs for
// the timeout of the caller that started the flight in this process; when
// that passes, the leader steps down and the remaining callers join again
// at once (one of them, here or elsewhere, takes over). A job that panics
// fails its run with an error for every caller (the panic is logged); it
// is not re-raised, since the callers may be in other processes. Fanout
// takes WithTTL (the leader's lease) and WithTimeout; any other option is
// an ErrInvalid error.
func (c *Client) Fanout(ctx context.Context, key string, job func(context.Context) ([]byte, error), opts ...Option) ([]byte, error) {
	if job == nil {
		return nil, invalid("nil job")
	}
	type outcome struct {
		b   []byte
		err error
	}
	ch := make(chan outcome, 1)
	_, at, err := c.push(ctx, key, func(b []byte, err error) { ch <- outcome{b, err} }, job, opts)
	if err != nil && !errors.Is(err, ErrNotAcquired) {
		return nil, err
	}
	select {
	case o := <-ch:
		return o.b, o.err
	case <-ctx.Done():
		if left, err := at.f.leaveUnanswered(at.cl, ctx.Err()); left {
			return nil, err
		}
		o := <-ch // the outcome came first: it is being delivered
		return o.b, o.err
	}
}

// FanoutOf is Fanout for a typed result, carried as msgpack: the leader's
// value is encoded once and every caller decodes its own copy. (Generated
// wrappers use faster typed codecs.)
func FanoutOf[T any](ctx context.Context, c *Client, key string, job func(context.Context) (T, error), opts ...Option) (T, error) {
	var v T
	b, err := c.Fanout(ctx, key, func(ctx context.Context) ([]byte, error) {
		v, err := job(ctx)
		if err != nil {
			return nil, err
		}
		return msgpack.Marshal(v)
	}, opts...)
	if err != nil {
		return v, err
	}
	if err := mpcheck.Lengths(b); err != nil {
		return v, fmt.Errorf("%w: fanout result of %s: %w", ErrDecode, key, err)
	}
	if err := msgpack.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("dlock: decode fanout result of %s: %w", key, err)
	}
	return v, nil
}
