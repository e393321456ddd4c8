// Command dlock shows an on-call engineer what dlock holds in Redis: who
// holds a lock and since when, a semaphore's holders and queue, which
// process leads a fanout; and frees what a dead process held.
//
// Usage:
//
//	dlock [flags] inspect KEY...         what each key holds, and who holds it
//	dlock [flags] ls [SPACE]             the keys that start with SPACE
//	dlock [flags] watch KEY              inspect KEY again every second, printing changes, until Ctrl-C
//	dlock [flags] release --force KEY    free KEY's lock (or its only permit; --owner ID for one of several)
//
// KEY is the key a program passed to dlock (Lock, Semaphore, Fanout), or
// the one a generated wrapper's …Key helper returns for its arguments;
// SPACE is a prefix of such keys (a generated wrapper's key space lists
// its keys). Install it with go install github.com/dlock-go/dlock/cmd/dlock
// (or go get -tool).
//
// Flags:
//
//	-redis URL     redis://[user:password@]host:port[/db], rediss:// for TLS; with
//	               ?master_name=NAME the host is a Sentinel; default $DLOCK_REDIS,
//	               else redis://127.0.0.1:6379
//	-cluster       the URL names a Cluster node (&addr=host:port adds seeds)
//	-prefix P      the programs' Options.Prefix (default dlock)
//	-json          JSON (Go field names; durations in nanoseconds) instead of text
//	-timeout D     bound on each round trip (default 5s)
//
// Inspect, ls and watch only read. release --force runs the holder's own
// release on its behalf: the key keeps its last fencing token, waiters
// are woken, and a holder still alive learns at its next renewal that it
// lost the lease. Exit status: 0, 1 when a key holds nothing to release
// or Redis fails, 2 for usage errors.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	dlockrt "github.com/dlock-go/dlock/runtime"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// cli is one run of the command.
type cli struct {
	c       *dlockrt.Client
	out     io.Writer
	json    bool
	timeout time.Duration
}

// run runs the command; ctx ends watch (main's ends on Ctrl-C).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("dlock", flag.ContinueOnError)
	fl.SetOutput(stderr)
	url := fl.String("redis", envOr("DLOCK_REDIS", "redis://127.0.0.1:6379"), "Redis URL")
	cluster := fl.Bool("cluster", false, "the URL names a Cluster node")
	prefix := fl.String("prefix", "dlock", "the programs' Options.Prefix")
	asJSON := fl.Bool("json", false, "print JSON")
	timeout := fl.Duration("timeout", 5*time.Second, "bound on each round trip")
	fl.Usage = func() {
		fmt.Fprintln(stderr, "usage: dlock [flags] inspect KEY... | ls [SPACE] | watch KEY | release --force [--owner ID] KEY")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if fl.NArg() == 0 {
		fl.Usage()
		return 2
	}
	cmd, rest := fl.Arg(0), fl.Args()[1:]
	switch cmd {
	case "inspect", "ls", "watch", "release":
	default:
		fmt.Fprintf(stderr, "dlock: unknown command %q\n", cmd)
		fl.Usage()
		return 2
	}
	rdb, err := connect(*url, *cluster)
	if err != nil {
		fmt.Fprintln(stderr, "dlock:", err)
		return 2
	}
	defer rdb.Close()
	c, err := dlockrt.New(rdb, &dlockrt.Options{Name: "dlock-cli", Prefix: *prefix, Startup: dlockrt.StartupSkip,
		Eviction: dlockrt.EvictionIgnore, Logger: quiet()})
	if err != nil {
		fmt.Fprintln(stderr, "dlock:", err)
		return 2
	}
	defer c.Close()
	k := &cli{c: c, out: stdout, json: *asJSON, timeout: *timeout}
	switch cmd {
	case "inspect":
		err = k.inspect(ctx, rest)
	case "ls":
		err = k.ls(ctx, rest)
	case "watch":
		err = k.watch(ctx, rest)
	case "release":
		err = k.release(ctx, rest)
	}
	var u usageError
	switch {
	case errors.As(err, &u):
		fmt.Fprintln(stderr, "dlock:", err)
		fl.Usage()
		return 2
	case err != nil:
		fmt.Fprintln(stderr, "dlock:", err)
		return 1
	}
	return 0
}

// usageError is a mistake in the command line.
type usageError string

func (u usageError) Error() string { return string(u) }

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
