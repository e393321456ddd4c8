package redistest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const faketimeHint = "apt-get update && apt-get install -y faketime"

// fakeTimeLib returns the path of libfaketimeMT.so.1. When it is missing it
// fails the test under CI=true and skips it otherwise.
func fakeTimeLib(t TB) string {
	t.Helper()
	for _, pattern := range []string{
		"/usr/lib/*/faketime/libfaketimeMT.so.1", // Debian, Ubuntu
		"/usr/lib/faketime/libfaketimeMT.so.1",
		"/usr/local/lib/faketime/libfaketimeMT.so.1", // make install
	} {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			return m[0]
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("redistest: libfaketimeMT.so.1 not found; install it with: %s", faketimeHint)
	}
	t.Skipf("redistest: libfaketimeMT.so.1 not found (install: %s)", faketimeHint)
	return ""
}

// glibcMalloc returns the path of glibc's libc_malloc_debug.so.0 (glibc
// 2.34 and later), or "" when there is none. Preloaded before libfaketime
// it gives redis-server glibc's malloc instead of jemalloc, which Debian's
// redis-server links: jemalloc reads the clock while it initializes, and
// libfaketime allocates while it initializes, so the two together hang at
// start-up (github.com/wolfcw/libfaketime/issues/130). Redis works with
// either allocator; only its allocator statistics go blank.
func glibcMalloc() string {
	for _, pattern := range []string{"/lib/*/libc_malloc_debug.so.0", "/usr/lib/*/libc_malloc_debug.so.0"} {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			return m[0]
		}
	}
	return ""
}

// StartFakeClockServer starts a redis-server like StartServer, under
// libfaketime, so that JumpClock can move its wall clock (CLOCK_REALTIME:
// TIME, key expiry) while its monotonic clock runs on, as in a real clock
// jump. The clock starts at the real time.
func StartFakeClockServer(t TB, extra ...string) *Server {
	t.Helper()
	preload := fakeTimeLib(t)
	if m := glibcMalloc(); m != "" {
		preload = m + ":" + preload
	}
	bin := Binary(t, "redis-server")
	s := &Server{t: t, bin: bin, dir: t.TempDir(), args: serverArgs(extra)}
	s.clockFile = filepath.Join(s.dir, "faketime")
	if err := writeClock(s.clockFile, 0); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FAKETIME") { // FAKETIME would override the file
			s.env = append(s.env, kv)
		}
	}
	s.env = append(s.env,
		"LD_PRELOAD="+preload,
		"FAKETIME_TIMESTAMP_FILE="+s.clockFile,
		"FAKETIME_NO_CACHE=1",            // read the file at every clock call: a jump is seen at once
		"FAKETIME_DONT_FAKE_MONOTONIC=1", // a jump moves the wall clock only
	)
	return launch(t, s)
}

// JumpClock moves the wall clock of a server started by
// StartFakeClockServer by d, at once: jumps add up, and a negative d moves
// it back. The offset survives Restart.
func (s *Server) JumpClock(d time.Duration) {
	s.t.Helper()
	if s.clockFile == "" {
		s.t.Fatalf("redistest: JumpClock: %s was not started by StartFakeClockServer", s.Addr())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock += d
	if err := writeClock(s.clockFile, s.clock); err != nil {
		s.t.Fatalf("redistest: JumpClock: %v", err)
	}
}

// writeClock replaces the timestamp file at path with offset, atomically
// (libfaketime may read it at any moment), in libfaketime's relative
// syntax: a sign, then seconds, with a fraction.
func writeClock(path string, offset time.Duration) error {
	spec := strconv.FormatFloat(offset.Seconds(), 'f', -1, 64)
	if offset >= 0 {
		spec = "+" + spec
	}
	f, err := os.CreateTemp(filepath.Dir(path), "faketime-*")
	if err != nil {
		return err
	}
	_, err = f.WriteString(spec + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
