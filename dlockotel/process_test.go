package dlockotel

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/dlock-go/dlock/internal/redistest"
	dlockrt "github.com/dlock-go/dlock/runtime"
)

// TestMain runs this test binary as the leader process of
// TestObserver_waiterLinksToTheLeadersRunAcrossProcesses when asked to.
func TestMain(m *testing.M) {
	if os.Getenv("DLOCKOTEL_LEADER") != "" {
		if err := leaderProcess(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// exported is what the leader process reports of one span.
type exported struct {
	Name, Trace, Span, Parent string
}

// leaderProcess leads a fanout of KEY at ADDR in a trace of its own: its
// job records a span, says "started" on stdout and waits for a line on
// stdin; then it prints the spans its in-memory exporter holds, as JSON.
func leaderProcess() error {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("ADDR")})
	defer rdb.Close()
	c, err := dlockrt.New(rdb, &dlockrt.Options{Observer: New(noop.NewMeterProvider(), tp), Startup: dlockrt.StartupSkip})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, req := tp.Tracer("leader").Start(context.Background(), "request")
	v, err := c.Fanout(ctx, os.Getenv("KEY"), func(ctx context.Context) ([]byte, error) {
		_, job := tp.Tracer("leader").Start(ctx, "job")
		defer job.End()
		fmt.Println("started")
		bufio.NewReader(os.Stdin).ReadString('\n')
		return []byte("v"), nil
	})
	req.End()
	if err != nil || string(v) != "v" {
		return fmt.Errorf("leader's Fanout = %q, %v", v, err)
	}
	enc := json.NewEncoder(os.Stdout)
	for _, sp := range exp.GetSpans() {
		enc.Encode(exported{sp.Name, sp.SpanContext.TraceID().String(), sp.SpanContext.SpanID().String(), sp.Parent.SpanID().String()})
	}
	return nil
}

// P35: across two real processes, each follower's dlock.fanout span (in
// its own trace) links to the leader process's dlock.flight span, under
// which the leader's job ran.
func TestObserver_waiterLinksToTheLeadersRunAcrossProcesses(t *testing.T) {
	srv := redistest.StartServer(t)
	key := "p35:" + t.Name()
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "DLOCKOTEL_LEADER=1", "ADDR="+srv.Addr(), "KEY="+key)
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	if l := recv(t, lines, 30*time.Second, "the leader process's job to start"); l != "started" {
		t.Fatalf("the leader process said %q; want started", l)
	}

	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	rdb := srv.Client()
	t.Cleanup(func() { rdb.Close() })
	c, err := dlockrt.New(rdb, &dlockrt.Options{Observer: New(noop.NewMeterProvider(), tp), Startup: dlockrt.StartupSkip})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var wg sync.WaitGroup
	requests := make([]string, 2) // each follower's trace id
	for i := range requests {
		ctx, req := tp.Tracer("test").Start(t.Context(), "request")
		requests[i] = req.SpanContext().TraceID().String()
		wg.Go(func() {
			defer req.End()
			v, err := c.Fanout(ctx, key, func(context.Context) ([]byte, error) { return []byte("follower ran"), nil })
			if err != nil || string(v) != "v" {
				t.Errorf("follower = %q, %v; want the leader's v", v, err)
			}
		})
	}
	waitFor(t, "both followers to wait on the leader", func() bool {
		s := c.Snapshot()
		return len(s.Flights) == 1 && s.Flights[0].State == "waiting" && s.Flights[0].Callers == 2
	})
	fmt.Fprintln(stdin, "finish")
	waitGroup(t, &wg, 30*time.Second, "the followers")

	leader := map[string]exported{}
	for l := range lines {
		var e exported
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("the leader process printed %q: %v", l, err)
		}
		leader[e.Name] = e
	}
	if err := child.Wait(); err != nil {
		t.Fatalf("the leader process: %v", err)
	}
	flight, job := leader["dlock.flight"], leader["job"]
	if flight.Span == "" || job.Parent != flight.Span || flight.Parent != leader["request"].Span {
		t.Fatalf("leader's spans %+v; want the job under dlock.flight under the request", leader)
	}
	traces := map[string]bool{}
	for _, sp := range spans.Ended() {
		if sp.Name() != "dlock.fanout" {
			continue
		}
		tr := sp.SpanContext().TraceID().String()
		traces[tr] = true
		l := sp.Links()
		if attrs(sp)["dlock.fanout.role"] != "follower" || len(l) != 1 ||
			l[0].SpanContext.TraceID().String() != flight.Trace || l[0].SpanContext.SpanID().String() != flight.Span {
			t.Errorf("follower's dlock.fanout span: attributes %v, links %v; want role follower, one link to the leader's dlock.flight %s/%s",
				attrs(sp), l, flight.Trace, flight.Span)
		}
	}
	if len(traces) != 2 || !traces[requests[0]] || !traces[requests[1]] {
		t.Errorf("dlock.fanout spans in traces %v; want one in each follower's trace %v", traces, requests)
	}
}
