// Package redistest starts real Redis servers for tests: standalone servers,
// Sentinel groups and Clusters on free loopback ports, with helpers to kill,
// pause, resume and restart them, to jump a server's clock (libfaketime) and
// split a Sentinel group's brain, and a TCP proxy that cuts and delays
// traffic. Nothing here mocks Redis.
//
// Servers are started by the test (or TestMain) that needs them and stopped
// by its cleanup. When a binary is missing the helpers fail the test with the
// command that installs it; outside CI (CI unset) they skip instead.
package redistest

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// TB is the part of testing.TB the harness needs; TestMain code can pass a
// Main value instead of a *testing.T.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Logf(format string, args ...any)
}

const installHint = "apt-get update && apt-get install -y redis-server redis-sentinel"

// Binary returns the path of a Redis binary (redis-server, redis-sentinel).
// When it is missing it fails the test under CI=true and skips it otherwise.
func Binary(t TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("redistest: %s not found in PATH; install it with: %s", name, installHint)
	}
	t.Skipf("redistest: %s not found in PATH (install: %s)", name, installHint)
	return ""
}

// Server is one redis-server process on a loopback port. Its methods are safe
// for concurrent use.
type Server struct {
	t    TB
	bin  string
	dir  string
	Port int
	args func(s *Server) []string // the command line for the current port
	TLS  *tls.Config              // for clients, when the server speaks only TLS

	env       []string // the process environment if not nil (else the test's)
	clockFile string   // libfaketime's timestamp file, "" on the real clock

	mu    sync.Mutex // protects cmd, done, clock
	cmd   *exec.Cmd
	done  chan struct{} // closed when cmd exits
	clock time.Duration // the offset in clockFile (JumpClock)
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// Client returns a new go-redis client for the server, closed with the test.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), TLSConfig: s.TLS})
	s.t.Cleanup(func() { c.Close() })
	return c
}

// StartServer starts a standalone redis-server with persistence off and
// extra config args such as "--cluster-enabled", "yes". It is stopped (kill
// -9) when the test ends.
func StartServer(t TB, extra ...string) *Server {
	t.Helper()
	bin := Binary(t, "redis-server")
	return startProcess(t, bin, nil, serverArgs(extra))
}

// serverArgs is StartServer's command line: the defaults, then extra.
func serverArgs(extra []string) func(s *Server) []string {
	return func(s *Server) []string {
		return append([]string{
			"--port", strconv.Itoa(s.Port),
			"--bind", "127.0.0.1",
			"--save", "",
			"--appendonly", "no",
			"--dir", s.dir,
			"--protected-mode", "no",
			"--loglevel", "warning",
			"--logfile", filepath.Join(s.dir, "redis.log"),
		}, extra...)
	}
}

// startProcess starts bin on a free port with the command line args gives,
// retrying on another port when the first one was taken meanwhile.
func startProcess(t TB, bin string, tlsConf *tls.Config, args func(s *Server) []string) *Server {
	t.Helper()
	return launch(t, &Server{t: t, bin: bin, dir: t.TempDir(), args: args, TLS: tlsConf})
}

// launch starts s, whose fields but Port are set, on a free port, retrying
// on another port when the first one was taken meanwhile.
func launch(t TB, s *Server) *Server {
	t.Helper()
	var lastErr error
	for range 5 {
		s.Port = FreePort(t)
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.Kill)
			return s
		}
	}
	t.Fatalf("redistest: start %s: %v", filepath.Base(s.bin), lastErr)
	return nil
}

func (s *Server) start() error {
	cmd := exec.Command(s.bin, s.args(s)...)
	cmd.Dir = s.dir
	cmd.Env = s.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	if err := waitPing(s.Addr(), s.TLS, done, 10*time.Second); err != nil {
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("%w; log: %s", err, s.logTail())
	}
	return nil
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// waitPing waits until a PING over a raw connection answers PONG.
func waitPing(addr string, tlsConf *tls.Config, exited <-chan struct{}, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if err := ping(addr, tlsConf); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("no PONG from %s: %v", addr, err)
		}
		select {
		case <-exited:
			return fmt.Errorf("process for %s exited", addr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func ping(addr string, tlsConf *tls.Config) error {
	var conn net.Conn
	var err error
	if tlsConf != nil {
		conn, err = tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, tlsConf)
	} else {
		conn, err = net.DialTimeout("tcp", addr, time.Second)
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return errors.New(strings.TrimSpace(line))
	}
	return nil
}

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(sig)
	}
}

// Kill stops the server with SIGKILL and waits for it to exit.
func (s *Server) Kill() {
	s.signal(syscall.SIGCONT)
	s.signal(syscall.SIGKILL)
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done != nil {
		<-done
	}
}

// Pause stops the server with SIGSTOP: connections stay open, nothing
// answers. Resume undoes it.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

// Restart kills the server and starts it again on the same port with an
// empty dataset.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	var err error
	for range 50 {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond) // the port may linger briefly after a kill
	}
	s.t.Fatalf("redistest: restart %s: %v", s.Addr(), err)
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitFor polls cond every 20 ms until it holds or the limit passes, then
// fails the test with what. It is for waiting on another process's state
// (a failover, a cluster converging), where no signal exists to wait on.
func WaitFor(t TB, limit time.Duration, what string, cond func(ctx context.Context) bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ok := cond(ctx)
		cancel()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
