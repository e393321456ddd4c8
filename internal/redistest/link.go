package redistest

import (
	"context"
	"net"
	"os"
	"sync"
	"time"
)

// Link is one process's network to Redis, inside the process: a go-redis
// Dialer whose connections can be cut (both ways or one way) and slowed,
// as Proxy does for the connections it forwards, but for every server the
// client dials (a Sentinel group's primary, each node of a Cluster). Bytes
// held by a cut are delivered when the link is restored. A delay is a
// latency: each chunk arrives that long after it was sent, however many
// follow it. A read or write held past its deadline fails with a timeout,
// as on a real network.
type Link struct {
	next func(ctx context.Context, network, addr string) (net.Conn, error)

	mu      sync.Mutex // protects the fields below
	state   LinkState
	changed chan struct{} // closed and replaced at every change of state
}

// LinkState is what a Link does to the bytes of each direction.
type LinkState struct {
	CutRequests, CutReplies     bool          // hold back the bytes to the server, or to the client
	DelayRequests, DelayReplies time.Duration // the latency of each direction
}

// NewLink returns a healthy link that dials with next (net.Dialer's
// DialContext when nil).
func NewLink(next func(ctx context.Context, network, addr string) (net.Conn, error)) *Link {
	if next == nil {
		var d net.Dialer
		next = d.DialContext
	}
	return &Link{next: next, changed: make(chan struct{})}
}

// Set changes what the link does from now on; LinkState{} restores it.
func (l *Link) Set(s LinkState) {
	l.mu.Lock()
	l.state = s
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

// Dial dials through the link: use it as a go-redis client's Dialer.
func (l *Link) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := l.pass(ctx.Done(), 0, time.Now(), time.Time{}); err != nil {
		return nil, err
	}
	c, err := l.next(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	lc := &linkConn{Conn: c, l: l, closed: make(chan struct{}), in: make(chan chunk, 64)}
	go lc.pump()
	return lc, nil
}

// pass waits until bytes sent at sent may pass in direction dir (0 to the
// server, 1 to the client): while the direction is cut, and until sent
// plus its latency. It fails at deadline (none when zero) or when stop
// closes.
func (l *Link) pass(stop <-chan struct{}, dir int, sent, deadline time.Time) error {
	var expired <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		expired = t.C
	}
	for {
		l.mu.Lock()
		cut, delay := l.state.CutRequests, l.state.DelayRequests
		if dir == 1 {
			cut, delay = l.state.CutReplies, l.state.DelayReplies
		}
		changed := l.changed
		l.mu.Unlock()
		var wait <-chan time.Time
		if !cut {
			d := time.Until(sent.Add(delay))
			if d <= 0 {
				return nil
			}
			t := time.NewTimer(d)
			defer t.Stop()
			wait = t.C
		}
		select {
		case <-wait:
			return nil
		case <-changed:
		case <-expired:
			return os.ErrDeadlineExceeded
		case <-stop:
			return net.ErrClosed
		}
	}
}

// chunk is what one read of the server's bytes returned, and when.
type chunk struct {
	b   []byte
	at  time.Time
	err error
}

type linkConn struct {
	net.Conn
	l         *Link
	closed    chan struct{} // closed by Close: ends what the link holds
	closeOnce sync.Once
	in        chan chunk // the server's bytes as they arrive (pump)

	mu       sync.Mutex // protects the fields below
	rdl, wdl time.Time  // the deadlines set on the connection
	pending  *chunk     // a chunk partly read, or held back past a deadline
}

// pump reads the server's bytes as they arrive, stamping each chunk, until
// the connection fails or closes. (Read deadlines are the link's, not the
// socket's: the pump never times out.)
func (c *linkConn) pump() {
	for {
		buf := make([]byte, 32<<10)
		n, err := c.Conn.Read(buf)
		select {
		case c.in <- chunk{buf[:n], time.Now(), err}:
		case <-c.closed:
			return
		}
		if err != nil {
			return
		}
	}
}

func (c *linkConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func (c *linkConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.rdl, c.wdl = t, t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *linkConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.wdl = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *linkConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.rdl = t
	c.mu.Unlock()
	return nil
}

func (c *linkConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	dl := c.wdl
	c.mu.Unlock()
	if err := c.l.pass(c.closed, 0, time.Now(), dl); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// Read returns the server's bytes once the link lets them through.
func (c *linkConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	dl, next := c.rdl, c.pending
	c.pending = nil
	c.mu.Unlock()
	if next == nil {
		var expired <-chan time.Time
		if !dl.IsZero() {
			t := time.NewTimer(time.Until(dl))
			defer t.Stop()
			expired = t.C
		}
		select {
		case ch := <-c.in:
			next = &ch
		case <-expired:
			return 0, os.ErrDeadlineExceeded
		case <-c.closed:
			return 0, net.ErrClosed
		}
	}
	if len(next.b) == 0 {
		return 0, next.err
	}
	if err := c.l.pass(c.closed, 1, next.at, dl); err != nil {
		c.mu.Lock()
		c.pending = next
		c.mu.Unlock()
		return 0, err
	}
	n := copy(b, next.b)
	if rest := next.b[n:]; len(rest) > 0 || next.err != nil {
		c.mu.Lock()
		c.pending = &chunk{rest, next.at, next.err}
		c.mu.Unlock()
	}
	return n, nil
}
