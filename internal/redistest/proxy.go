package redistest

import (
	"bytes"
	"net"
	"sync"
	"time"
)

// Proxy forwards TCP connections from a loopback port to a target address,
// and can cut, delay and restore the traffic to simulate network faults.
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex // protects the fields below
	conns map[net.Conn]struct{}
	cut   bool          // while true, bytes are held back (a black hole)
	cutTo [2]bool       // one-way cuts: [0] client to server, [1] server to client
	delay time.Duration // added before each forwarded chunk
	flow  *sync.Cond    // broadcast when cut turns false
	edits [][2][]byte   // replacements in the server's replies
}

// Rewrite replaces old with new, of the same length, in every reply the
// server sends from now on (say, the version in HELLO's reply): a server
// that says what the test needs it to.
func (p *Proxy) Rewrite(old, new string) {
	if len(old) != len(new) {
		panic("redistest: Rewrite needs old and new of one length")
	}
	p.mu.Lock()
	p.edits = append(p.edits, [2][]byte{[]byte(old), []byte(new)})
	p.mu.Unlock()
}

// StartProxy starts a proxy to target; it is closed when the test ends.
func StartProxy(t TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: proxy listen: %v", err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.flow = sync.NewCond(&p.mu)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the address clients should dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut makes the network a black hole: connections stay open, no bytes pass
// in either direction, new connections are accepted but hang.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	p.mu.Unlock()
}

// CutOneWay holds back the bytes of one direction only: toServer true
// cuts requests (client to server), false cuts replies (server to
// client), while the other direction flows.
func (p *Proxy) CutOneWay(toServer bool) {
	p.mu.Lock()
	if toServer {
		p.cutTo[0] = true
	} else {
		p.cutTo[1] = true
	}
	p.mu.Unlock()
}

// Restore lets traffic flow again after Cut or CutOneWay; held bytes are
// delivered.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.cutTo = [2]bool{}
	p.delay = 0
	p.flow.Broadcast()
	p.mu.Unlock()
}

// Delay adds d before every forwarded chunk, in both directions.
func (p *Proxy) Delay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// DropAll closes every open connection (the client sees a reset).
func (p *Proxy) DropAll() {
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

// Close stops the proxy and closes its connections.
func (p *Proxy) Close() {
	p.ln.Close()
	p.Restore()
	p.DropAll()
}

func (p *Proxy) accept() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.serve(in)
	}
}

func (p *Proxy) serve(in net.Conn) {
	out, err := net.Dial("tcp", p.target)
	if err != nil {
		in.Close()
		return
	}
	p.mu.Lock()
	p.conns[in], p.conns[out] = struct{}{}, struct{}{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(out, in, 0) }()
	go func() { defer wg.Done(); p.pipe(in, out, 1) }()
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, in)
	delete(p.conns, out)
	p.mu.Unlock()
}

// pipe copies src to dst (direction dir: 0 to the server, 1 to the
// client), honouring cuts and delay, and closes both at the end.
func (p *Proxy) pipe(dst, src net.Conn, dir int) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.cut || p.cutTo[dir] {
				p.flow.Wait()
			}
			d := p.delay
			if dir == 1 {
				for _, e := range p.edits {
					copy(buf[:n], bytes.ReplaceAll(buf[:n], e[0], e[1]))
				}
			}
			p.mu.Unlock()
			if d > 0 {
				time.Sleep(d)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a closed connection: close both sides
		}
	}
}
