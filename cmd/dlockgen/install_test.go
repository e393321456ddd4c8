package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/gentest"
)

// The README's install path, in a fresh module: require dlock (here through
// a replace to this checkout, for @latest), add dlockgen as a tool, go
// generate with "go tool dlockgen", build, and gate with -check. So the
// documented flow cannot rot.
func TestInstall_freshModuleFlow(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command several times")
	}
	dir := t.TempDir()
	files := map[string]string{
		"go.mod": "module example.com/svc\n\ngo 1.26\n",
		"svc.go": `package svc

//go:generate go tool dlockgen

import "context"

type User struct{ Name string }

//dlock:fanout key="user:{id}" ttl=10s
func loadUser(ctx context.Context, id int64) (User, error) { return User{Name: "ada"}, nil }
`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gocmd := func(args ...string) string {
		t.Helper()
		const limit = 5 * time.Minute
		ctx, cancel := context.WithTimeout(t.Context(), limit)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.WaitDelay = 10 * time.Second // for the output, once the go command is killed
		cmd.Dir = dir
		// Offline: every module comes from the module cache, as this
		// checkout's own build put them there.
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOSUMDB=off", "GOWORK=off")
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("timed out after %v waiting for go %s:\n%s", limit, strings.Join(args, " "), out)
		}
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	gocmd("mod", "edit", "-require=github.com/dlock-go/dlock@v0.1.0", "-replace=github.com/dlock-go/dlock="+gentest.Root())
	gocmd("get", "-tool", "github.com/dlock-go/dlock/cmd/dlockgen")
	// (go mod tidy belongs here too; offline it cannot fetch the test
	// dependencies of x/tools's own packages, so the test leaves it out.)
	gocmd("generate", "./...")
	if _, err := os.Stat(filepath.Join(dir, "dlock_gen.go")); err != nil {
		t.Fatalf("go generate wrote no dlock_gen.go: %v", err)
	}
	gocmd("build", "./...")
	gocmd("tool", "dlockgen", "-check", "./...")
	if out := gocmd("tool", "dlockgen", "-version"); !strings.HasPrefix(out, "dlockgen ") {
		t.Fatalf("go tool dlockgen -version = %q", out)
	}
}
