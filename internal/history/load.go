package history

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Reading a history's files into calls, returns and windows.

func load(dir string) (*history, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return nil, err
	}
	type id struct {
		proc string
		id   int64
	}
	spans := map[id]*span{}
	var order []id
	last := map[string]int64{} // each process's last event
	start := int64(never)      // the first event
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		var torn []byte
		for sc.Scan() {
			if torn != nil {
				return nil, fmt.Errorf("%s: malformed line %q", name, torn)
			}
			var e Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				// A process killed mid-write leaves at most a torn last line.
				torn = slices.Clone(sc.Bytes())
				continue
			}
			k := id{e.Proc, e.ID}
			last[e.Proc] = max(last[e.Proc], e.T)
			start = min(start, e.T)
			if !e.Ret {
				if spans[k] != nil {
					return nil, fmt.Errorf("%s: operation %d of %s recorded twice (two processes with one name?)", name, e.ID, e.Proc)
				}
				spans[k] = &span{call: e}
				order = append(order, k)
			} else if s := spans[k]; s != nil {
				s.ret = &e
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	h := &history{holds: map[string][]*hold{}, leads: map[string][]int64{}, procs: map[string]int{}, start: start}
	leases := map[id]*hold{}
	for _, k := range order {
		s := spans[k]
		e := s.call
		if _, ok := h.procs[e.Proc]; !ok {
			h.procs[e.Proc] = len(h.procs)
		}
		switch {
		case e.Kind == Fault:
			// A window its recorder never closed (it was killed) ends
			// with the recorder's last event.
			h.windows = append(h.windows, window{e.Op, e.Effect, e.Target, e.Proc, e.T, min(s.end(), last[e.Proc]),
				e.Delay * int64(time.Millisecond)})
		case e.Kind == Fanout && e.Op == Lead:
			h.leads[e.Key] = append(h.leads[e.Key], e.Since)
		case e.Kind == Fanout && e.Op == Run:
			h.runs = append(h.runs, *s)
		case e.Kind == Fanout && e.Op == Call:
			if s.ret != nil && s.ret.Err == "" {
				h.calls = append(h.calls, *s)
			} else if s.ret != nil {
				h.failed = append(h.failed, *s)
			}
		case e.Op == Acquire:
			// A failed or unanswered acquire never made a believed holder
			// (an ambiguous one that took the key anyway is undone, and
			// meanwhile holds it for nobody): it constrains nothing.
			if s.ret != nil && s.ret.Err != "" {
				h.failed = append(h.failed, *s)
			}
			if s.ret == nil || s.ret.Err != "" {
				continue
			}
			l := &hold{n: len(leases) + 1, proc: e.Proc, key: e.Key, limit: e.Limit, token: s.ret.Token,
				ttl: e.TTL * int64(time.Millisecond), acqCall: e.T, acqRet: s.ret.T, endCall: -1}
			leases[k] = l
			h.holds[e.Kind] = append(h.holds[e.Kind], l)
		case e.Op == Release || e.Op == Lost:
			l := leases[id{e.Proc, e.Lease}]
			if l == nil || l.endCall >= 0 {
				continue
			}
			l.endCall, l.endRet, l.how = e.T, s.end(), "released"
			if e.Op == Lost {
				l.endRet, l.lost, l.how = e.T, true, "saw Done closed"
			} else if s.ret != nil && s.ret.Err != "" {
				l.endRet, l.how = never, "released (unacknowledged)" // the key lapses some time later
			}
		}
	}
	for _, l := range h.leads {
		slices.Sort(l)
	}
	// A holder whose process was killed stops believing at its death; one
	// with no end at all (the run stopped under it) may end any time.
	for _, ls := range h.holds {
		for _, l := range ls {
			if l.endCall >= 0 {
				continue
			}
			l.endCall, l.endRet, l.how = l.acqRet, never, "no end recorded"
			for _, w := range h.windows {
				if w.effect == Kill && w.target == l.proc && w.t0 >= l.acqRet {
					l.endCall, l.endRet, l.how = w.t0, w.t0, "died"
				}
			}
		}
	}
	return h, nil
}
