// Command bench measures dlock next to the libraries people would otherwise
// pick, side by side in one run against one redis-server it starts itself,
// and prints a table of medians and ratios; it also writes the table to
// docs/bench.md and a chart to docs/bench.png. Run it with make bench.
//
// The peers live in this separate module so that dlock's users never
// inherit them. The machine is shared and noisy: read the ratios, which
// compare runs made in the same minute, rather than the absolute numbers.
package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
)

var (
	rounds = flag.Int("rounds", 3, "repetitions of each measurement (the median is reported)")
	dur    = flag.Duration("d", 2*time.Second, "duration of each throughput measurement")
	out    = flag.String("out", "../docs", "where bench.md and bench.png are written")
	redraw = flag.Bool("redraw", false, "redraw bench.png from bench.md in -out, without measuring")
	only   = flag.String("only", "", "run only the measurements whose name contains this (locks, handoff, renewals, fanout, joiners, semaphore, codecs, generator); nothing is written")
)

// row is one line of the result table.
type row struct {
	group, name string
	value       float64
	unit        string
	vs          string  // the baseline's name in the same group, "" for none
	ratio       float64 // value / baseline (or baseline / value for lower-is-better units)
	goal        string
}

func main() {
	flag.Parse()
	if *redraw {
		rows, err := readTable(filepath.Join(*out, "bench.md"))
		if err == nil {
			err = chart(rows, filepath.Join(*out, "bench.png"))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "redraw:", err)
			os.Exit(1)
		}
		return
	}
	var tm redistest.Main
	srv := redistest.StartServer(&tm)
	defer tm.Close()
	ctx := context.Background()
	fmt.Printf("redis-server %s; %d rounds of %v per measurement (medians)\n\n", srv.Addr(), *rounds, *dur)

	addr := srv.Addr()
	var rows []row
	for _, m := range []struct {
		name string
		run  func() []row
	}{
		{"locks", func() []row { return lockCycles(ctx, addr) }},
		{"handoff", func() []row { return handoff(ctx, addr) }},
		{"renewals", func() []row { return renewals(ctx, addr) }},
		{"fanout", func() []row { return fanout(ctx, addr) }},
		{"joiners", func() []row { return joiners(ctx, addr) }},
		{"semaphore", func() []row { return semaphoreWake(ctx, addr) }},
		{"codecs", codecs},
		{"generator", generatorTime},
	} {
		if strings.Contains(m.name, *only) {
			rows = append(rows, m.run()...)
		}
	}

	table := render(rows)
	fmt.Print(table)
	if *only != "" {
		return
	}
	if err := os.MkdirAll(*out, 0o755); err == nil {
		os.WriteFile(filepath.Join(*out, "bench.md"), []byte(table), 0o644)
		if err := chart(rows, filepath.Join(*out, "bench.png")); err != nil {
			fmt.Fprintln(os.Stderr, "chart:", err)
		}
	}
}

// median runs f *rounds times and returns the median of its results.
func median(f func() float64) float64 {
	return interleaved(map[string]func() float64{"": f})[""]
}

// interleaved runs each of fs once per round, in turn, so that the
// machine's noise falls on all of them alike, and returns their medians.
func interleaved(fs map[string]func() float64) map[string]float64 {
	names := slices.Sorted(maps.Keys(fs))
	vs := map[string][]float64{}
	for range *rounds {
		for _, n := range names {
			vs[n] = append(vs[n], fs[n]())
		}
	}
	out := map[string]float64{}
	for n, v := range vs {
		slices.Sort(v)
		out[n] = v[len(v)/2]
	}
	return out
}

func render(rows []row) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %s (2 cores, shared); medians of %d runs.\n\n", time.Now().UTC().Format("2006-01-02"), hostname(), *rounds)
	b.WriteString("| measurement | implementation | value | vs | ratio | goal |\n| --- | --- | ---: | --- | ---: | --- |\n")
	for _, r := range rows {
		ratio := ""
		if r.vs != "" {
			ratio = fmt.Sprintf("%.2f×", r.ratio)
		}
		fmt.Fprintf(&b, "| %s | %s | %s %s | %s | %s | %s |\n", r.group, r.name, format(r.value), r.unit, r.vs, ratio, r.goal)
	}
	return b.String()
}

func format(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}
