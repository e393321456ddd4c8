// Command dlockgen generates typed dlock wrappers for functions and methods
// annotated with //dlock: directives, one dlock_gen.go per package.
//
// Usage:
//
//	dlockgen [-check] [-tags list] [-v] [packages]
//
// Packages default to "." and take the go command's patterns ("./...").
// Add dlockgen as a tool of your module and put this line in one file of
// each package that has directives:
//
//	go get -tool github.com/dlock-go/dlock/cmd/dlockgen
//	//go:generate go tool dlockgen
//
// In CI, "go tool dlockgen -check ./..." fails when a generated file is
// stale.
//
// # Directives
//
// A directive is a comment line right above a func, in its doc comment,
// with no space after the slashes:
//
//	//dlock:fanout key="user:{id}" ttl=10s
//	func loadUser(ctx context.Context, id int64) (User, error) { ... }
//
//	//dlock:once key="reindex" ttl=30s wait=0
//	//dlock:semaphore limit=3 key="export:{tenant}" wait=10s
//
// Arguments are name=value, the value bare or Go-quoted, each name once:
//
//	fanout:    key= ttl= timeout= name= space=
//	once:      key= ttl= wait= name= space=  (wait=0, the default, fails fast)
//	semaphore: limit= (required) key= ttl= wait= name= space=
//
// key= is a template: {param} or {param.Field} insert a parameter (or its
// field), {recv.Field} or {recv.Method} the receiver's, of a string, bool
// or integer kind; {{ and }} are literal braces; holes are separated by
// punctuation, and each value is escaped for the template's punctuation,
// so different values never make the same key. Every key starts with the
// function's own space (its package path and name) unless space= names one
// shared with other functions; a fanout's key also carries a digest of its
// results' wire shape, so builds whose result types differ never share a
// flight. Without key=, the key is the space plus a digest of the
// arguments' msgpack encoding (the context left out). ttl= is the lease
// (default: the client's TTL), timeout= how long fanout callers wait
// (default: twice the TTL), wait= how long to wait for the lock or permit
// (wait=0 fails at once; a semaphore without wait= waits as long as the
// caller's context); durations are whole milliseconds. A once and a
// semaphore, or semaphores of two limits, may not share a space. A comment
// may follow the arguments.
//
// The annotated function's first parameter must be a context.Context and
// its last result an error. A fanout's other results cross the wire as one
// msgpack value, so they must be types msgpack carries faithfully (no
// channels, functions, interfaces, or structs with unexported fields). A
// type that declares a pair of marshaling methods with the interfaces'
// exact signatures is carried through the first of: msgpack's
// (EncodeMsgpack/DecodeMsgpack, MarshalMsgpack/UnmarshalMsgpack), gob's,
// binary, text; a msgpack method of another signature or without its
// partner is refused. net.IP goes as its bytes. Locks (sync.Mutex, a
// noCopy marker) carry nothing and are left out; a struct holding one is
// carried through pointers, and refused by value. Generic functions are
// refused. A wrapper builds under the constraints of its function's file:
// directives in F.go with a //go:build line, a GOOS/GOARCH name or an
// import "C" go into dlock_gen.F.go, with the same constraint (and cgo).
//
// # What is generated
//
// For a package-level function loadUser, an exported wrapper LoadUser (or
// name=) with the same parameters and results, which uses the client set by
// dlockrt.SetDefault, and LoadUserKey, which returns the key a call with
// those arguments uses (for dlock inspect and Client.Inspect; a method's
// is a method of the decorator). For methods of T, a decorator type TWithDlock that
// embeds *T and re-declares the annotated methods, built by
// NewTWithDlock(base *T, c *dlockrt.Client); it satisfies every interface
// *T satisfies. Each wrapper has a doc comment naming its directive, and a
// guard that stops compiling when the annotated signature changes; each
// named struct the codecs carry has one that stops compiling when its
// fields change (re-run go generate: a stale dlock_gen.go never blocks
// regeneration).
//
// # Renames
//
// A wrapper's keys start with its key space: the package path, the type
// and the function name, unless space= pins it. Renaming any of them gives
// the new build other keys than the old one, so while a deploy runs both,
// their replicas do not exclude each other. dlockgen compares each
// wrapper's key space with the one in the dlock_gen.go it replaces (each
// wrapper's doc comment names it) and prints a warning naming the space=
// that keeps the old one; -check prints it too. Warnings change no exit
// status.
//
// # Flags and exit status
//
//	-check    write nothing; exit 1 and print a unified diff if any file is stale
//	-tags     comma-separated build tags used to load the packages
//	-v        print each file written or removed
//	-version  print dlockgen's version (its module's) and exit
//
// Mistakes are reported as file:line:col: message, relative to the working
// directory, all of them in one run; then nothing is written and the exit
// status is 1. Usage errors exit 2. Files are written only when their bytes
// change; a dlock_gen.go whose package has no directives left is removed.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/dlock-go/dlock/generator"
)

// buildVersion is the version of the module dlockgen was built from:
// its tag when installed with go install or run with go tool, "(devel)"
// in a checkout.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			return bi.Main.Version
		}
	}
	return "(unknown)"
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("dlockgen", flag.ContinueOnError)
	fl.SetOutput(stderr)
	check := fl.Bool("check", false, "report stale generated files (exit 1) instead of writing them")
	tags := fl.String("tags", "", "comma-separated build tags")
	verbose := fl.Bool("v", false, "print each file written or removed")
	version := fl.Bool("version", false, "print dlockgen's version and exit")
	fl.Usage = func() {
		fmt.Fprintln(stderr, "usage: dlockgen [-check] [-tags list] [-v] [-version] [packages]")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if *version {
		fmt.Fprintln(stdout, "dlockgen", buildVersion())
		return 0
	}
	cfg := generator.Config{Patterns: fl.Args()}
	if *tags != "" {
		cfg.Tags = strings.Split(*tags, ",")
	}
	res, err := generator.Generate(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "dlockgen:", err)
		return 1
	}
	wd, _ := os.Getwd()
	rel := func(p string) string {
		if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
			return r
		}
		return p
	}
	if len(res.Diagnostics) > 0 {
		for _, d := range res.Diagnostics {
			d.Pos.Filename = rel(d.Pos.Filename)
			fmt.Fprintln(stderr, d)
		}
		return 1
	}
	for _, d := range res.Warnings { // when generating and when checking alike
		d.Pos.Filename = rel(d.Pos.Filename)
		fmt.Fprintln(stderr, d)
	}
	stale := 0
	for _, f := range res.Files {
		old, err := os.ReadFile(f.Path)
		exists := err == nil
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintln(stderr, "dlockgen:", err)
			return 1
		}
		if (f.Content == nil && !exists) || (f.Content != nil && exists && bytes.Equal(old, f.Content)) {
			continue
		}
		if *check {
			stale++
			fmt.Fprintf(stdout, "%s is stale; run go generate\n", rel(f.Path))
			fmt.Fprint(stdout, diff(rel(f.Path), old, f.Content))
			continue
		}
		if f.Content == nil {
			err = os.Remove(f.Path)
		} else {
			err = os.WriteFile(f.Path, f.Content, 0o644)
		}
		if err != nil {
			fmt.Fprintln(stderr, "dlockgen:", err)
			return 1
		}
		if *verbose {
			verb := "wrote"
			if f.Content == nil {
				verb = "removed"
			}
			fmt.Fprintln(stderr, verb, rel(f.Path))
		}
	}
	if stale > 0 {
		return 1
	}
	return 0
}
