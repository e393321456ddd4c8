package dlockrt

import (
	"fmt"
	"os"
	"time"
)

const helperEnv = "DLOCK_TEST_HELPER"

// helpers maps a role to the code a child process runs (see process_test.go).
var helpers = map[string]func() int{}

func runHelper(role string) int {
	f := helpers[role]
	if f == nil {
		println("unknown helper role", role)
		return 2
	}
	return f()
}

// helperLife bounds how long a helper that waits to be killed waits. The
// test that started it kills it within seconds; a helper still alive
// after helperLife has lost its test (the test binary died without its
// cleanups), and exits rather than outlive it.
const helperLife = 5 * time.Minute

// awaitKill blocks the helper in role until it is killed. Once helperLife
// has passed, it says so on stderr and returns 3, the status for the
// helper to exit with.
func awaitKill(role string) int {
	time.Sleep(helperLife)
	fmt.Fprintf(os.Stderr, "%s: not killed within %v\n", role, helperLife)
	return 3
}
