package dlockrt

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
