package redistest

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"time"
)

// ReplyDropper loses the reply to one chosen request after the server ran
// it, the way a connection reset between the server's write and the
// client's read does: install Dial as a go-redis client's Dialer, then Arm
// it with a substring of the request (a script's SHA, say). The next
// request that contains it reaches the server; its reply is read and
// thrown away, and the client sees its connection end (io.EOF, which
// go-redis retries unless MaxRetries is -1).
type ReplyDropper struct {
	next func(ctx context.Context, network, addr string) (net.Conn, error)

	mu      sync.Mutex // protects armed, silent, gen
	armed   []byte
	silent  bool   // the connection of the lost reply stays open, silent
	gen     uint64 // counts Arm calls: a drop is due only while its Arm is the last
	dropped chan struct{}
}

// NewReplyDropper returns a disarmed dropper that dials like net.Dialer.
func NewReplyDropper() *ReplyDropper { return NewReplyDropperOver(nil) }

// NewReplyDropperOver returns a disarmed dropper that dials with next (a
// Link's Dial, say); nil means net.Dialer's.
func NewReplyDropperOver(next func(ctx context.Context, network, addr string) (net.Conn, error)) *ReplyDropper {
	if next == nil {
		var d net.Dialer
		next = d.DialContext
	}
	return &ReplyDropper{next: next, dropped: make(chan struct{}, 16)}
}

// Arm makes the dropper lose the reply to the next request containing
// match; Arm("") disarms it. Each call also cancels a loss still pending
// from the one before (a request written, its reply not yet read): a
// loss happens while its Arm is in force, never later, so a caller's
// window of lost replies is true.
func (d *ReplyDropper) Arm(match string) {
	d.mu.Lock()
	d.armed, d.silent = []byte(match), false
	d.gen++
	d.mu.Unlock()
}

// ArmSilent is Arm, but the connection whose reply was lost stays open and
// says nothing more (as when the network drops a connection without
// telling either end): the client hears nothing until its read deadline.
func (d *ReplyDropper) ArmSilent(match string) {
	d.mu.Lock()
	d.armed, d.silent = []byte(match), true
	d.gen++
	d.mu.Unlock()
}

// Dropped receives once per reply thrown away.
func (d *ReplyDropper) Dropped() <-chan struct{} { return d.dropped }

// Dial dials and wraps the connection. (go-redis writes a request and
// reads its reply on one goroutine, so the reply to lose is the next one
// read after the request.)
func (d *ReplyDropper) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.next(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &dropConn{Conn: c, d: d}, nil
}

type dropConn struct {
	net.Conn
	d      *ReplyDropper
	drop   bool   // the reply to the last request is to be lost
	gen    uint64 // the Arm that made it so
	silent bool   // and then the connection says nothing more
	mute   bool   // the reply was lost silently: reads only time out
}

func (c *dropConn) Write(b []byte) (int, error) {
	c.d.mu.Lock()
	if len(c.d.armed) > 0 && bytes.Contains(b, c.d.armed) {
		c.d.armed = nil
		c.drop, c.silent, c.gen = true, c.d.silent, c.d.gen
	}
	c.d.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *dropConn) Read(b []byte) (int, error) {
	if c.mute {
		// Whatever comes is lost; the read ends at its deadline (or when
		// the connection is closed).
		for {
			if _, err := c.Conn.Read(b); err != nil {
				return 0, err
			}
		}
	}
	if c.drop {
		c.d.mu.Lock()
		c.drop = c.gen == c.d.gen // else disarmed (or armed anew) since: the reply passes
		c.d.mu.Unlock()
	}
	if !c.drop {
		return c.Conn.Read(b)
	}
	if c.silent {
		// The reply comes (the server ran the request) and is lost; the
		// connection stays open, saying nothing, until the client gives up.
		buf := make([]byte, 64<<10)
		c.Conn.Read(buf)
		c.drop, c.mute = false, true
		c.d.dropped <- struct{}{}
		return c.Read(b)
	}
	// Wait for the reply (the server ran the request), lose it, and end
	// the connection.
	c.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64<<10)
	c.Conn.Read(buf)
	c.Conn.Close()
	c.drop = false
	c.d.dropped <- struct{}{}
	return 0, io.EOF
}
