package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	dlockrt "github.com/dlock-go/dlock/runtime"
)

// inspect prints what each key holds.
func (k *cli) inspect(ctx context.Context, keys []string) error {
	if len(keys) == 0 {
		return usageError("inspect needs a KEY")
	}
	var states []*dlockrt.KeyState
	for _, key := range keys {
		st, err := k.read(ctx, key)
		if err != nil {
			return err
		}
		states = append(states, st)
	}
	if k.json {
		return k.printJSON(states)
	}
	for _, st := range states {
		writeState(k.out, st)
	}
	return nil
}

func (k *cli) read(ctx context.Context, key string) (*dlockrt.KeyState, error) {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	st, err := k.c.Inspect(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("inspect %q: %w", key, err)
	}
	return st, nil
}

// ls prints the keys that start with a space, one per line.
func (k *cli) ls(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet("ls", flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	limit := fl.Int("limit", 1000, "the most keys to list (0: all)")
	if err := fl.Parse(args); err != nil || fl.NArg() > 1 {
		return usageError("usage: ls [-limit N] [SPACE]")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*k.timeout)
	defer cancel()
	keys, err := k.c.Keys(ctx, fl.Arg(0), *limit)
	if err != nil {
		return fmt.Errorf("ls: %w", err)
	}
	if k.json {
		return k.printJSON(keys)
	}
	for _, key := range keys {
		fmt.Fprintln(k.out, key)
	}
	return nil
}

// watch inspects a key every interval and prints what it holds whenever
// that changes, until ctx ends (Ctrl-C).
func (k *cli) watch(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet("watch", flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	every := fl.Duration("every", time.Second, "how often to look")
	if err := fl.Parse(args); err != nil || fl.NArg() != 1 || *every <= 0 {
		return usageError("usage: watch [-every D] KEY")
	}
	var last string
	t := time.NewTicker(*every)
	defer t.Stop()
	for {
		st, err := k.read(ctx, fl.Arg(0))
		if ctx.Err() != nil {
			return nil // Ctrl-C
		}
		var b bytes.Buffer
		switch {
		case err != nil:
			fmt.Fprintln(&b, err)
		case k.json:
			line, _ := json.Marshal(withoutTimes(st))
			b.Write(append(line, '\n'))
		default:
			writeState(&b, withoutTimes(st))
		}
		if b.String() != last {
			last = b.String()
			if !k.json {
				fmt.Fprintf(k.out, "-- %s\n", time.Now().Format("15:04:05.000"))
			}
			k.out.Write(b.Bytes())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// release frees what a key holds, on behalf of its holder.
func (k *cli) release(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet("release", flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	force := fl.Bool("force", false, "free what another process holds")
	owner := fl.String("owner", "", "the owner or permit id to free (as inspect shows it)")
	if err := fl.Parse(args); err != nil || fl.NArg() != 1 {
		return usageError("usage: release --force [--owner ID] KEY")
	}
	if !*force {
		return usageError("release frees what another process holds: say --force")
	}
	key := fl.Arg(0)
	st, err := k.read(ctx, key)
	if err != nil {
		return err
	}
	id, who, err := target(st, *owner)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	if err := k.c.ForceRelease(rctx, key, id); err != nil {
		return fmt.Errorf("release %q: %w", key, err)
	}
	fmt.Fprintf(k.out, "released %q, held by %s\n", key, who)
	return nil
}

// target picks what release frees: the lock's holder, or the one holder of
// a semaphore, or the one owner asked for.
func target(st *dlockrt.KeyState, owner string) (id, who string, err error) {
	type held struct{ id, who string }
	var all []held
	if l := st.Lock; l != nil && l.Held {
		all = append(all, held{l.Owner, fmt.Sprintf("%s (lock, token %d)", l.Holder, l.Token)})
	}
	if s := st.Semaphore; s != nil {
		for _, h := range s.Holders {
			all = append(all, held{h.Permit, fmt.Sprintf("%s (permit %s)", h.Holder, h.Permit)})
		}
	}
	for _, h := range all {
		if owner == "" && len(all) == 1 || h.id == owner {
			return h.id, h.who, nil
		}
	}
	switch {
	case len(all) == 0:
		return "", "", fmt.Errorf("%q holds no lock or permit", st.Key)
	case owner != "":
		return "", "", fmt.Errorf("%s holds nothing of %q", owner, st.Key)
	}
	return "", "", errors.New("several hold " + fmt.Sprintf("%q", st.Key) + ": say which with --owner (dlock inspect shows their ids)")
}

func (k *cli) printJSON(v any) error {
	enc := json.NewEncoder(k.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
