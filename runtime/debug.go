package dlockrt

import (
	"encoding/json"
	"html/template"
	"net/http"
	"sort"
	"strings"
	"time"
)

// Snapshot is what one client holds and waits for, in this process, at
// one moment: for a debug page (Handler) or a health check. Inspect says
// what Redis holds for a key, from any process; Snapshot what this client
// believes.
type Snapshot struct {
	Name    string       // the client's Options.Name
	Taken   time.Time    // when the snapshot was taken
	Leases  []LeaseInfo  // held locks, multi-locks, permits and fanout leads, by key
	Flights []FlightInfo // fanout and push flights in progress, by key
	Waiting []WaitInfo   // keys whose locks this client's callers wait for, by key
	Queued  []QueueInfo  // semaphores this client's callers are queued for, by key
}

// LeaseInfo is one lease the client holds.
type LeaseInfo struct {
	Kind     Kind
	Key      string        // its (first) key
	Since    time.Time     // when it was granted (this process's clock)
	Left     time.Duration // until its local deadline (the watchdog renews before)
	Watchdog bool
}

// FlightInfo is one fanout flight: every caller of one key in this process.
type FlightInfo struct {
	Key     string
	State   string // joining, waiting, leading, stepping down (the flight's state machine)
	Callers int
	Since   time.Time // when its first caller called
}

// QueueInfo is a semaphore this client's callers are queued for.
type QueueInfo struct {
	Key     string
	Waiters int // this client's callers in its queue
	Depth   int // the queue's length across the fleet, as the last look from here found it
}

type queuedCount struct{ waiters, depth int }

// queuing counts a caller of this client into key's queue, for Snapshot;
// the returned func counts it out.
func (c *Client) queuing(key string) func() {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if c.queued == nil {
		c.queued = map[string]*queuedCount{}
	}
	q := c.queued[key]
	if q == nil {
		q = &queuedCount{}
		c.queued[key] = q
	}
	q.waiters++
	return func() {
		c.qmu.Lock()
		defer c.qmu.Unlock()
		if q.waiters--; q.waiters == 0 {
			delete(c.queued, key)
		}
	}
}

// queueDepth records the length of key's queue a caller found.
func (c *Client) queueDepth(key string, n int) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if q := c.queued[key]; q != nil {
		q.depth = n
	}
}

// WaitInfo is a key whose lock callers of this client wait for.
type WaitInfo struct {
	Key     string
	Waiters int // in this process's line for the key (the head subscribes and tries)
}

// Snapshot returns what the client holds and waits for now. It takes each
// lock it reads alone, briefly: it never blocks the hot path for long.
func (c *Client) Snapshot() Snapshot {
	s := Snapshot{Name: c.opts.Name, Taken: time.Now()}
	c.mu.Lock()
	leases := make([]*lease, 0, len(c.leases))
	for l := range c.leases {
		leases = append(leases, l)
	}
	c.mu.Unlock()
	for _, l := range leases {
		l.mu.Lock()
		ended, deadline := l.ended, l.deadline
		l.mu.Unlock()
		if !ended {
			s.Leases = append(s.Leases, LeaseInfo{Kind: l.kind, Key: l.key, Since: l.acquired, Left: time.Until(deadline), Watchdog: l.watchdog})
		}
	}
	for _, f := range c.flightsNow() {
		f.mu.Lock()
		state, callers := f.state, len(f.callers)
		f.mu.Unlock()
		if state != flightEnded {
			s.Flights = append(s.Flights, FlightInfo{Key: f.key, State: state.String(), Callers: callers, Since: f.start})
		}
	}
	c.tmu.Lock()
	for key, ts := range c.turnstiles {
		s.Waiting = append(s.Waiting, WaitInfo{Key: key, Waiters: ts.refs})
	}
	c.tmu.Unlock()
	c.qmu.Lock()
	for key, q := range c.queued {
		s.Queued = append(s.Queued, QueueInfo{Key: key, Waiters: q.waiters, Depth: q.depth})
	}
	c.qmu.Unlock()
	sort.Slice(s.Queued, func(i, j int) bool { return s.Queued[i].Key < s.Queued[j].Key })
	sort.Slice(s.Leases, func(i, j int) bool { return s.Leases[i].Key < s.Leases[j].Key })
	sort.Slice(s.Flights, func(i, j int) bool { return s.Flights[i].Key < s.Flights[j].Key })
	sort.Slice(s.Waiting, func(i, j int) bool { return s.Waiting[i].Key < s.Waiting[j].Key })
	return s
}

// Handler serves the client's Snapshot, like net/http/pprof serves
// profiles: HTML by default, JSON when the request asks for it (?json or
// Accept: application/json). Mount it yourself, behind whatever guards
// your debug endpoints (http.Handle("/debug/dlock", dlockrt.Handler(c))):
// it shows the keys the process holds, never their values.
func Handler(c *Client) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := c.Snapshot()
		if r.URL.Query().Has("json") || strings.Contains(r.Header.Get("Accept"), "application/json") {
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			enc.Encode(s)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		debugPage.Execute(w, s)
	})
}

var debugPage = template.Must(template.New("dlock").Funcs(template.FuncMap{
	"ms": func(d time.Duration) string { return d.Round(time.Millisecond).String() },
	"ago": func(t, now time.Time) string {
		return now.Sub(t).Round(time.Millisecond).String()
	},
}).Parse(`<!DOCTYPE html>
<html><head><title>dlock: {{.Name}}</title></head><body>
<h1>dlock client {{.Name}}</h1>
<h2>Held ({{len .Leases}})</h2>
<table><tr><th>kind</th><th>key</th><th>held for</th><th>lease left</th><th>watchdog</th></tr>
{{range .Leases}}<tr><td>{{.Kind}}</td><td>{{.Key}}</td><td>{{ago .Since $.Taken}}</td><td>{{ms .Left}}</td><td>{{.Watchdog}}</td></tr>
{{end}}</table>
<h2>Fanout flights ({{len .Flights}})</h2>
<table><tr><th>key</th><th>state</th><th>callers</th><th>for</th></tr>
{{range .Flights}}<tr><td>{{.Key}}</td><td>{{.State}}</td><td>{{.Callers}}</td><td>{{ago .Since $.Taken}}</td></tr>
{{end}}</table>
<h2>Waiting for locks ({{len .Waiting}})</h2>
<table><tr><th>key</th><th>waiters here</th></tr>
{{range .Waiting}}<tr><td>{{.Key}}</td><td>{{.Waiters}}</td></tr>
{{end}}</table>
<h2>Queued for permits ({{len .Queued}})</h2>
<table><tr><th>semaphore</th><th>waiters here</th><th>queue (all processes)</th></tr>
{{range .Queued}}<tr><td>{{.Key}}</td><td>{{.Waiters}}</td><td>{{.Depth}}</td></tr>
{{end}}</table>
</body></html>
`))
