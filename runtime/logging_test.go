package dlockrt

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
)

// syncBuffer is a bytes.Buffer safe for the logger's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Results, job errors' payloads and garbage from the wire never reach the
// log, even at debug level; what went wrong does.
func TestOptions_Logger_warnsWithoutResultsOrPayloads(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rdb := newRedis(t)
	c := newClient(t, rdb, &Options{Logger: logger})
	other := newClient(t, rdb, nil)
	ctx := t.Context()

	// A lease lost.
	l, err := c.Once(ctx, key(t, "lost"), WithWatchdog(false), WithTTL(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	recv(t, l.Done(), 10*time.Second, "the lease to be lost")

	// A follower that sees garbage on its channel, then the leader's result.
	k := key(t, "fan")
	started, finish := make(chan struct{}), make(chan struct{})
	leaderDone := make(chan error, 1)
	go func() {
		_, err := other.Fanout(ctx, k, func(context.Context) ([]byte, error) {
			close(started)
			recvGo(t, finish, time.Minute, "the test to let the job finish")
			return []byte("RESULT-SECRET"), nil
		})
		leaderDone <- err
	}()
	recv(t, started, 10*time.Second, "the leader's job to start")
	got := make(chan error, 1)
	go func() {
		b, err := c.Fanout(ctx, k, func(context.Context) ([]byte, error) { return nil, errors.New("follower ran") })
		if err == nil && string(b) != "RESULT-SECRET" {
			err = errors.New("follower got " + string(b))
		}
		got <- err
	}()
	redistest.WaitFor(t, 5*time.Second, "the follower's subscription", func(context.Context) bool {
		return c.mux.numChannels() == 1 && waiterConfirmed(c)
	})
	if err := rdb.SPublish(ctx, fanChannel(mustTag(t, c, k)), "GARBAGE-SECRET").Err(); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 5*time.Second, "the garbage to be logged", func(context.Context) bool {
		return strings.Contains(buf.String(), "malformed")
	})
	close(finish)
	leaderErr := recv(t, leaderDone, 30*time.Second, "the leader's Fanout to return")
	if err := errors.Join(leaderErr, recv(t, got, 30*time.Second, "the follower's Fanout to return")); err != nil {
		t.Fatal(err)
	}

	// A job's error, delivered to its caller.
	_, err = c.Fanout(ctx, key(t, "err"), func(context.Context) ([]byte, error) { return nil, errors.New("ERROR-SECRET") })
	if err == nil || !strings.Contains(err.Error(), "ERROR-SECRET") {
		t.Fatalf("Fanout = %v; want the job's error", err)
	}

	out := buf.String()
	for _, want := range []string{"lease lost", "malformed"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	// Every warning names its key.
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.Contains(line, "level=WARN") && !strings.Contains(line, " key=") {
			t.Errorf("warning without its key: %s", line)
		}
	}
	for _, secret := range []string{"RESULT-SECRET", "GARBAGE-SECRET", "ERROR-SECRET"} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %s:\n%s", secret, out)
		}
	}
}
