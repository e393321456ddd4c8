package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/gentest"
)

// The command is tested as users run it: the test binary re-runs itself as
// dlockgen (DLOCKGEN_ARGS, separated by \x1f) in a throwaway module.
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv("DLOCKGEN_ARGS"); ok {
		var list []string
		if args != "" {
			list = strings.Split(args, "\x1f")
		}
		os.Exit(run(list, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// dlockgen runs the command with args in dir and returns its exit code and
// output. A run still going after five minutes is killed, failing the
// test.
func dlockgen(t *testing.T, dir string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	const limit = 5 * time.Minute
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.WaitDelay = 10 * time.Second // for the output, once the process is killed
	cmd.Dir = dir
	cmd.Env = append(gentest.Env(), "DLOCKGEN_ARGS="+strings.Join(args, "\x1f"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("timed out after %v waiting for dlockgen %q to exit; stderr:\n%s", limit, args, errb.String())
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errb.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errb.String()
}

const good = `package p

import "context"

//dlock:fanout key="u:{id}"
func load(ctx context.Context, id int) (string, error) { return "", nil }
`

func TestDlockgen_usageErrorExits2(t *testing.T) {
	code, _, stderr := dlockgen(t, t.TempDir(), "-nosuchflag")
	if code != 2 || !strings.Contains(stderr, "usage: dlockgen") {
		t.Fatalf("exit %d, stderr %q; want 2 and the usage", code, stderr)
	}
}

func TestDlockgen_diagnosticsExit1AndWriteNothing(t *testing.T) {
	dir := gentest.Module(t, map[string]string{
		"p/p.go": good,
		"q/q.go": "package q\n\nimport \"context\"\n\n//dlock:fanout ttl=forever\nfunc f(ctx context.Context) error { return nil }\n\n//dlock:once\nfunc g() error { return nil }\n",
	})
	code, _, stderr := dlockgen(t, dir, "./...")
	want := "q/q.go:5:20: ttl=forever is not a duration (e.g. 10s, 500ms)\nq/q.go:9:6: g: the first parameter must be a context.Context\n"
	if code != 1 || stderr != want {
		t.Fatalf("exit %d, stderr:\n%s\nwant 1 and:\n%s", code, stderr, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "p", "dlock_gen.go")); !os.IsNotExist(err) {
		t.Fatalf("a file was written despite diagnostics elsewhere: %v", err)
	}
}

func TestDlockgen_generateCheckAndStale(t *testing.T) {
	dir := gentest.Module(t, map[string]string{"p/p.go": good})
	if code, _, stderr := dlockgen(t, dir, "-v", "./..."); code != 0 || !strings.Contains(stderr, "wrote p/dlock_gen.go") {
		t.Fatalf("generate: exit %d, stderr %q", code, stderr)
	}
	gen := filepath.Join(dir, "p", "dlock_gen.go")
	fresh, err := os.ReadFile(gen)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := os.Stat(gen)
	if code, _, _ := dlockgen(t, dir, "-v", "./..."); code != 0 {
		t.Fatalf("second run: exit %d", code)
	}
	if again, _ := os.Stat(gen); !again.ModTime().Equal(info.ModTime()) {
		t.Fatal("an unchanged file was rewritten")
	}
	if code, stdout, _ := dlockgen(t, dir, "-check", "./..."); code != 0 || stdout != "" {
		t.Fatalf("-check on fresh output: exit %d, stdout %q", code, stdout)
	}
	stale := bytes.Replace(fresh, []byte(`:u:"`), []byte(`:user:"`), 1)
	if bytes.Equal(stale, fresh) {
		t.Fatalf("no key literal ending in :u: in\n%s", fresh)
	}
	os.WriteFile(gen, stale, 0o644)
	code, stdout, _ := dlockgen(t, dir, "-check", "./...")
	if code != 1 || !strings.Contains(stdout, "p/dlock_gen.go is stale") ||
		!regexp.MustCompile(`(?m)^-\s+dlockKey := ".*:user:"`).MatchString(stdout) || !regexp.MustCompile(`(?m)^\+\s+dlockKey := ".*:u:"`).MatchString(stdout) {
		t.Fatalf("-check on stale output: exit %d, stdout:\n%s", code, stdout)
	}
	if now, _ := os.ReadFile(gen); !bytes.Equal(now, stale) {
		t.Fatal("-check wrote the file")
	}
}

// -version prints the version; a pattern that matches nothing is reported
// without a made-up position.
func TestDlockgen_versionAndPatternErrors(t *testing.T) {
	dir := gentest.Module(t, map[string]string{"p/p.go": good})
	if code, stdout, _ := dlockgen(t, dir, "-version"); code != 0 || !strings.HasPrefix(stdout, "dlockgen ") {
		t.Fatalf("-version: exit %d, stdout %q", code, stdout)
	}
	code, _, stderr := dlockgen(t, dir, "./nope")
	if code != 1 || strings.Contains(stderr, ":0:0:") || !strings.Contains(stderr, "nope") {
		t.Fatalf("a missing package: exit %d, stderr %q; want 1 and a message without :0:0:", code, stderr)
	}
}

// A renamed function's key space changes: generating and -check both
// print the warning (and it changes no exit status: -check fails only
// because the file is stale).
func TestDlockgen_renameWarning(t *testing.T) {
	dir := gentest.Module(t, map[string]string{"p/p.go": "package p\n\nimport \"context\"\n\n//dlock:once\nfunc reindex(ctx context.Context) error { return nil }\n"})
	if code, _, stderr := dlockgen(t, dir, "./..."); code != 0 {
		t.Fatalf("dlockgen = %d, %s", code, stderr)
	}
	os.WriteFile(filepath.Join(dir, "p", "p.go"), []byte("package p\n\nimport \"context\"\n\n//dlock:once\nfunc rebuild(ctx context.Context) error { return nil }\n"), 0o644)
	code, _, stderr := dlockgen(t, dir, "-check", "./...")
	if code != 1 || !strings.Contains(stderr, `warning: Rebuild's key space changes`) || !strings.Contains(stderr, `space="example.com/m/p.reindex"`) {
		t.Fatalf("dlockgen -check after a rename = %d, %q; want 1 (stale) and the rename warning", code, stderr)
	}
	if code, _, stderr := dlockgen(t, dir, "./..."); code != 0 || !strings.Contains(stderr, "warning: Rebuild's key space changes") {
		t.Fatalf("dlockgen after a rename = %d, %q; want 0 and the rename warning", code, stderr)
	}
}
