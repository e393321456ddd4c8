// Package gentest makes throwaway Go modules for tests of the generator and
// of dlockgen: a temporary directory with a go.mod that requires this
// repository (through a replace) and its dependencies, so generated code
// can be loaded, built and vetted there.
package gentest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Root is the repository's root directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Module writes files (path relative to the module -> content) into a new
// module example.com/m and returns its directory.
func Module(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	root := Root()
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	// The repository's requirements, so every dependency is pinned.
	reqs := string(mod)[strings.Index(string(mod), "require"):]
	gomod := "module example.com/m\n\ngo 1.26\n\nrequire github.com/dlock-go/dlock v0.0.0\n\n" + reqs +
		"\nreplace github.com/dlock-go/dlock => " + root + "\n"
	write(t, filepath.Join(dir, "go.mod"), gomod)
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "go.sum"), string(sum))
	for name, content := range files {
		write(t, filepath.Join(dir, name), content)
	}
	return dir
}

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Go runs the go command in dir and returns its combined output.
func Go(t testing.TB, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Env is the environment for loading packages in a module made by Module.
func Env() []string { return append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off") }

// GoEnv is Go with extra environment variables (GOOS=darwin, say).
func GoEnv(t testing.TB, dir string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off"), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
