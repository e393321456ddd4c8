package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	dlockrt "github.com/dlock-go/dlock/runtime"
)

// writeState writes what a key holds, one line per fact, for a person.
// Durations are left out when zero (watch zeroes them, so that it prints
// only when who holds or waits changes).
func writeState(w io.Writer, st *dlockrt.KeyState) {
	if st.Lock == nil && st.Semaphore == nil && st.Fanout == nil {
		fmt.Fprintf(w, "%s: nothing in Redis\n", st.Key)
		return
	}
	fmt.Fprintln(w, st.Key)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	defer tw.Flush()
	if l := st.Lock; l != nil {
		if l.Held {
			fmt.Fprintf(tw, "  lock\theld by %s%s%s\n", l.Holder, ago(st, l.Since, " for "), left(l.TTL, ", lease "))
		} else {
			kept := ""
			if l.TTL > 0 {
				kept = "; its last token is kept for another " + l.TTL.Round(time.Millisecond).String()
			}
			fmt.Fprintf(tw, "  lock\tfree, released by %s%s\n", l.Holder, kept)
		}
		fmt.Fprintf(tw, "  \ttoken %d, owner %s\n", l.Token, l.Owner)
	}
	if s := st.Semaphore; s != nil {
		limit := "limit unknown"
		if s.Limit > 0 {
			limit = fmt.Sprintf("limit %d", s.Limit)
		}
		fmt.Fprintf(tw, "  semaphore\t%s, %d holding, %d waiting\n", limit, len(s.Holders), len(s.Waiters))
		for _, h := range s.Holders {
			fmt.Fprintf(tw, "  \tholding: %s%s, permit %s\n", h.Holder, left(h.TTL, ", lease "), h.Permit)
		}
		for i, q := range s.Waiters {
			fmt.Fprintf(tw, "  \twaiting #%d: %s%s\n", i+1, q.Holder, left(q.TTL, ", place "))
		}
		if s.Truncated {
			fmt.Fprintf(tw, "  \t(more not read)\n")
		}
	}
	if f := st.Fanout; f != nil {
		switch {
		case f.Leading:
			fmt.Fprintf(tw, "  fanout\tled by %s%s%s\n", f.Leader, ago(st, f.Leader.Asked, " since it asked "), left(f.TTL, ", lease "))
			if f.Trace != "" {
				fmt.Fprintf(tw, "  \ttrace %s\n", f.Trace)
			}
		case f.Outcome == "result":
			fmt.Fprintf(tw, "  fanout\ta result of %d bytes kept for late callers%s\n", f.OutcomeSize, left(f.TTL, ", "))
		case f.Outcome == "error":
			fmt.Fprintf(tw, "  fanout\tan error kept for the callers of %s's run%s\n", f.Leader, left(f.TTL, ", "))
		default:
			fmt.Fprintf(tw, "  fanout\tfree: %s stepped down\n", f.Leader)
		}
	}
}

// left says how long is left, or nothing for zero.
func left(d time.Duration, lead string) string {
	if d <= 0 {
		return ""
	}
	return lead + d.Round(time.Millisecond).String() + " left"
}

// ago says how long ago t was by the server's clock, or nothing.
func ago(st *dlockrt.KeyState, t time.Time, lead string) string {
	if t.IsZero() || st.ServerTime.IsZero() {
		return ""
	}
	return lead + st.ServerTime.Sub(t).Round(time.Millisecond).String()
}

// withoutTimes is st without what changes by itself (time left, the
// server's clock), for watch to print only what changed otherwise.
func withoutTimes(st *dlockrt.KeyState) *dlockrt.KeyState {
	c := *st
	c.ServerTime = time.Time{}
	if l := c.Lock; l != nil {
		lc := *l
		lc.TTL = 0
		c.Lock = &lc
	}
	if s := c.Semaphore; s != nil {
		sc := *s
		sc.Holders = append([]dlockrt.PermitHolder(nil), s.Holders...)
		sc.Waiters = append([]dlockrt.Waiter(nil), s.Waiters...)
		for i := range sc.Holders {
			sc.Holders[i].TTL = 0
		}
		for i := range sc.Waiters {
			sc.Waiters[i].TTL = 0
		}
		c.Semaphore = &sc
	}
	if f := c.Fanout; f != nil {
		fc := *f
		fc.TTL = 0
		c.Fanout = &fc
	}
	return &c
}
