package redistest

import (
	"fmt"
	"os"
	"sync"
)

// Main is a TB for TestMain, so servers can be started once per package:
//
//	func TestMain(m *testing.M) {
//		var tm redistest.Main
//		srv = redistest.StartServer(&tm)
//		code := m.Run()
//		tm.Close()
//		os.Exit(code)
//	}
//
// Fatalf prints and exits with status 1; Skipf prints and exits with status
// 0 (so a machine without Redis skips the package, except under CI=true,
// where Binary calls Fatalf).
type Main struct {
	mu       sync.Mutex // protects cleanups, dir
	cleanups []func()
	dir      string
}

func (m *Main) Helper() {}

func (m *Main) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func (m *Main) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
	m.Close()
	os.Exit(1)
}

func (m *Main) Skipf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "SKIP: "+format+"\n", args...)
	m.Close()
	os.Exit(0)
}

func (m *Main) Cleanup(f func()) {
	m.mu.Lock()
	m.cleanups = append(m.cleanups, f)
	m.mu.Unlock()
}

func (m *Main) TempDir() string {
	d, err := os.MkdirTemp("", "redistest")
	if err != nil {
		m.Fatalf("redistest: %v", err)
	}
	m.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// Close runs the cleanups in reverse order.
func (m *Main) Close() {
	m.mu.Lock()
	cs := m.cleanups
	m.cleanups = nil
	m.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}
