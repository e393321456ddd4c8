// Command mutants plants one plausible bug at a time in a copy of the tree
// and runs the tests that should catch it: a check of the tests, not of the
// code. Run it from the module's root (make mutants):
//
//	go run ./internal/mutants [-j 2] [-run REGEXP] [-list] [-md FILE]
//
// Each mutant (list.go, list_scripts.go) replaces one exact piece of text in one file (it
// must occur exactly once) and names the package and the tests that must
// fail with it. The command prints one line per mutant — killed by which
// test, or SURVIVED — and exits non-zero when any survived, no longer
// applies (its text is gone: re-plant it where the code moved), or does not
// compile. A survivor is a missing test: write the test, never delete the
// mutant.
//
// Beside the mutants (in a copy of its own) it runs every package's targeted
// tests once on the unchanged tree: a test that fails anyway kills nothing,
// so a failing baseline fails the run. The mutants whose tests run longest
// go first. Tests run without -race (a mutant names race-only tests with
// race: true) and vet, with CI=true (a missing redis-server fails rather
// than skips) and -failfast.
//
// Flags:
//
//	-j N       mutants run at once, each in its own copy of the tree (default 2)
//	-run RE    only the mutants whose id matches RE
//	-list      print the list and exit
//	-md FILE   also write the results as a Markdown table to FILE
//	-keep      keep the copies (their paths are printed)
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// A mutant is one plausible bug: from, which occurs exactly once in file,
// becomes to; the tests named by tests (a -run expression) in pkg must then
// fail.
type mutant struct {
	id      string // M01, ...; a suffix s marks the soak's twin of a mutant
	promise string // what it breaks: a promise of PROPERTIES.md (P1...) or a script's branch
	file    string // relative to the module's root
	from    string
	to      string
	pkg     string   // the package whose tests run, e.g. ./runtime
	tests   []string // the tests that must kill it: each a regexp matching whole test names
	race    bool     // run the tests with -race
	why     string   // the bug, as a developer could write it
}

// outcome of one mutant.
type outcome struct {
	m       mutant
	verdict string // killed, SURVIVED, STALE, INVALID
	by      string // the first failing test, or how it died
	took    time.Duration
	out     string // go test's output, for survivors and failures
}

const testTimeout = 8 * time.Minute

func main() {
	jobs := flag.Int("j", 2, "mutants run at once")
	only := flag.String("run", "", "only the mutants whose id matches this regexp")
	list := flag.Bool("list", false, "print the mutants and exit")
	md := flag.String("md", "", "also write the results as a Markdown table to this file")
	keep := flag.Bool("keep", false, "keep the copies of the tree")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: go run ./internal/mutants [-j N] [-run REGEXP] [-list] [-md FILE] [-keep]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 || *jobs < 1 {
		flag.Usage()
		os.Exit(2)
	}
	ms := mutants
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mutants: -run:", err)
			os.Exit(2)
		}
		ms = slices.DeleteFunc(slices.Clone(ms), func(m mutant) bool { return !re.MatchString(m.id) })
	}
	if err := validate(mutants); err != nil {
		fmt.Fprintln(os.Stderr, "mutants:", err)
		os.Exit(2)
	}
	if *list {
		for _, m := range ms {
			if b, err := os.ReadFile(m.file); err != nil || bytes.Count(b, []byte(m.from)) != 1 {
				fmt.Printf("STALE: ")
			}
			fmt.Printf("%-5s %-4s %s: %s\n      tests %s %s\n", m.id, m.promise, m.file, m.why, m.pkg, runExpr(m.tests))
		}
		return
	}
	os.Exit(run(ms, *jobs, *md, *keep))
}

// validate checks the list itself: unique ids, every field set.
func validate(ms []mutant) error {
	seen := map[string]bool{}
	for _, m := range ms {
		if seen[m.id] {
			return fmt.Errorf("mutant %s listed twice", m.id)
		}
		seen[m.id] = true
		if m.promise == "" || m.file == "" || m.from == "" || m.from == m.to || m.pkg == "" || len(m.tests) == 0 || m.why == "" {
			return fmt.Errorf("mutant %s: every field is needed, and to must differ from from", m.id)
		}
	}
	return nil
}

func run(ms []mutant, jobs int, md string, keep bool) int {
	root, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutants:", err)
		return 2
	}
	files, err := trackedFiles(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutants: run it from the module's root, in its git checkout:", err)
		return 2
	}
	tmp, err := os.MkdirTemp("", "dlock-mutants-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutants:", err)
		return 2
	}
	if keep {
		fmt.Println("copies in", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	jobs = min(jobs, max(len(ms), 1))
	trees := make([]string, jobs+1) // the last for the baseline
	for i := range trees {
		trees[i] = filepath.Join(tmp, fmt.Sprint("tree", i))
		if err := copyTree(root, trees[i], files); err != nil {
			fmt.Fprintln(os.Stderr, "mutants: copy the tree:", err)
			return 2
		}
	}
	start := time.Now()
	var printMu sync.Mutex
	// The baseline runs beside the mutants (its tests mostly wait on
	// timers); a failing baseline voids every verdict.
	baseBad := make(chan string, 1)
	go func() {
		bad := baseline(trees[jobs], ms)
		if bad == "" {
			printMu.Lock()
			fmt.Printf("baseline: every targeted test passes on the unchanged tree (%v)\n", time.Since(start).Round(time.Second))
			printMu.Unlock()
		}
		baseBad <- bad
	}()

	work := make(chan int)
	results := make([]outcome, len(ms))
	var wg sync.WaitGroup
	for _, tree := range trees[:jobs] {
		wg.Go(func() {
			for i := range work {
				r := try(tree, ms[i])
				results[i] = r
				printMu.Lock()
				fmt.Println(r.line())
				printMu.Unlock()
			}
		})
	}
	for _, i := range heavyFirst(ms) {
		work <- i
	}
	close(work)
	wg.Wait()
	if bad := <-baseBad; bad != "" {
		fmt.Fprintln(os.Stderr, "mutants: the tests fail on the unchanged tree, so they can kill nothing:\n"+bad)
		return 1
	}

	killed, bad := 0, 0
	for _, r := range results {
		if r.verdict == "killed" {
			killed++
			continue
		}
		bad++
		fmt.Printf("\n--- %s %s: %s\n%s\n", r.m.id, r.verdict, r.m.why, tail(r.out, 40))
	}
	fmt.Printf("\nmutation score: %d of %d killed (%v)\n", killed, len(results), time.Since(start).Round(time.Second))
	if md != "" {
		if err := os.WriteFile(md, []byte(markdown(results)), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "mutants:", err)
			return 2
		}
	}
	if bad > 0 {
		return 1
	}
	return 0
}

// heavyFirst orders the mutants for the workers: those whose tests run
// long (soaks, then Cluster and Sentinel groups and child processes) first,
// so that no long one is left alone at the end.
func heavyFirst(ms []mutant) []int {
	weight := func(m mutant) int {
		w := 0
		for _, t := range m.tests {
			switch {
			case strings.Contains(t, "Soak"):
				w = max(w, 3)
			case strings.Contains(t, "Cluster"), strings.Contains(t, "Sentinel"):
				w = max(w, 2)
			case strings.Contains(t, "process"), strings.Contains(t, "Process"):
				w = max(w, 1)
			}
		}
		return w
	}
	order := make([]int, len(ms))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return weight(ms[b]) - weight(ms[a]) })
	return order
}

func (r outcome) line() string {
	s := fmt.Sprintf("%-5s %-4s %-8s", r.m.id, r.m.promise, r.verdict)
	if r.by != "" {
		s += " by " + r.by
	}
	return fmt.Sprintf("%s (%v) — %s: %s", s, r.took.Round(100*time.Millisecond), r.m.file, r.m.why)
}

// try applies m to tree, runs its tests, and restores the file.
func try(tree string, m mutant) outcome {
	r := outcome{m: m}
	path := filepath.Join(tree, m.file)
	orig, err := os.ReadFile(path)
	if err != nil {
		r.verdict, r.out = "STALE", err.Error()
		return r
	}
	if n := bytes.Count(orig, []byte(m.from)); n != 1 {
		r.verdict = "STALE"
		r.out = fmt.Sprintf("%q occurs %d times in %s (once wanted): re-plant the mutant where the code moved", m.from, n, m.file)
		return r
	}
	if err := os.WriteFile(path, bytes.Replace(orig, []byte(m.from), []byte(m.to), 1), 0o644); err != nil {
		r.verdict, r.out = "INVALID", err.Error()
		return r
	}
	defer os.WriteFile(path, orig, 0o644)
	start := time.Now()
	out, err := goTest(tree, m.pkg, runExpr(m.tests), m.race)
	r.took, r.out = time.Since(start), out
	switch {
	case err == nil:
		r.verdict = "SURVIVED"
	case strings.Contains(out, "[build failed]") || strings.Contains(out, "[setup failed]") || strings.Contains(out, "build constraints exclude"):
		r.verdict = "INVALID"
		r.by = "does not compile"
	default:
		r.verdict, r.by = "killed", killer(out)
	}
	return r
}

var failLine = regexp.MustCompile(`(?m)^\s*--- FAIL: (\S+)`)

// killer names what failed in go test's output.
func killer(out string) string {
	if m := failLine.FindStringSubmatch(out); m != nil {
		return m[1]
	}
	if i := strings.Index(out, "panic: test timed out"); i >= 0 {
		return "a hang (the test binary's timeout)"
	}
	if strings.Contains(out, "panic:") || strings.Contains(out, "fatal error:") {
		return "a crash"
	}
	return "a failure without a named test"
}

func goTest(dir, pkg, tests string, race bool) (string, error) {
	// No vet: make test vets the tree; here it would only slow each mutant.
	args := []string{"test", "-count=1", "-failfast", "-vet=off", "-timeout", testTimeout.String(), "-run", tests}
	if race {
		args = append(args, "-race")
	}
	args = append(args, pkg)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CI=true")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = errors.Join(err, ctx.Err())
	}
	return out.String(), err
}

// runExpr is go test's -run expression for whole test names.
func runExpr(tests []string) string {
	return "^(" + strings.Join(tests, "|") + ")$"
}

// baseline checks that every test a mutant names exists, then runs, per
// package, every mutant's tests at once on tree unchanged; it returns what
// is wrong, or "".
func baseline(tree string, ms []mutant) string {
	type set struct {
		tests []string
		race  bool
	}
	sets := map[string]*set{}
	var pkgs []string
	for _, m := range ms {
		s := sets[m.pkg]
		if s == nil {
			s = &set{}
			sets[m.pkg] = s
			pkgs = append(pkgs, m.pkg)
		}
		for _, t := range m.tests {
			if !slices.Contains(s.tests, t) {
				s.tests = append(s.tests, t)
			}
		}
		s.race = s.race || m.race
	}
	var bad []string
	for _, pkg := range pkgs {
		s := sets[pkg]
		names, err := listTests(tree, pkg)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: go test -list: %v", pkg, err))
			continue
		}
		for _, t := range s.tests {
			re := regexp.MustCompile("^(" + t + ")$")
			if !slices.ContainsFunc(names, re.MatchString) {
				bad = append(bad, fmt.Sprintf("%s: no test matches %q (renamed? update the mutants that name it)", pkg, t))
			}
		}
		out, err := goTest(tree, pkg, runExpr(s.tests), s.race)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v\n%s", pkg, err, tail(out, 60)))
		}
	}
	return strings.Join(bad, "\n")
}

// listTests names the tests of pkg.
func listTests(dir, pkg string) ([]string, error) {
	cmd := exec.Command("go", "test", "-list", ".", pkg)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(out)), nil
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = append([]string{"..."}, ls[len(ls)-lines:]...)
	}
	return strings.Join(ls, "\n")
}

func markdown(rs []outcome) string {
	var b strings.Builder
	killed := 0
	b.WriteString("| mutant | promise | bug planted | verdict |\n| --- | --- | --- | --- |\n")
	for _, r := range rs {
		v := r.verdict
		if r.by != "" {
			v += " by `" + r.by + "`"
		}
		if r.verdict == "killed" {
			killed++
		}
		fmt.Fprintf(&b, "| %s | %s | `%s`: %s | %s |\n", r.m.id, r.m.promise, r.m.file, r.m.why, v)
	}
	fmt.Fprintf(&b, "\nMutation score: %d of %d killed.\n", killed, len(rs))
	return b.String()
}

// trackedFiles lists what git tracks, plus untracked files it does not
// ignore (work in progress is mutated as it is).
func trackedFiles(root string) ([]string, error) {
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return nil, err
	}
	var files []string
	for f := range strings.SplitSeq(strings.TrimRight(string(out), "\x00"), "\x00") {
		if f != "" {
			files = append(files, f)
		}
	}
	return files, nil
}

func copyTree(root, dst string, files []string) error {
	for _, f := range files {
		src := filepath.Join(root, f)
		st, err := os.Lstat(src)
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted in the working tree
		}
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			continue
		}
		to := filepath.Join(dst, f)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		in, err := os.Open(src)
		if err != nil {
			return err
		}
		out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, st.Mode().Perm())
		if err == nil {
			_, err = io.Copy(out, in)
			err = errors.Join(err, out.Close())
		}
		in.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
