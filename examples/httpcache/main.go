// Command httpcache is an HTTP service protected from a cache stampede: the
// product loader is annotated with //dlock:fanout, so however many requests
// (in however many replicas) ask for product 7 at once, the slow database
// is queried once and every request gets the answer.
//
//	go run ./examples/httpcache -addr :8080     # then GET /product?id=7
//	go run ./examples/httpcache -demo           # fires 100 concurrent requests at itself
//
// Set REDIS_URL to use your Redis; otherwise an embedded in-process server
// is used.
package main

//go:generate go run github.com/dlock-go/dlock/cmd/dlockgen

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/dlocktest"
	dlockrt "github.com/dlock-go/dlock/runtime"
)

// Product is what the API serves.
type Product struct {
	ID    int     `json:"id"`
	Name  string  `json:"name"`
	Price float64 `json:"price"`
}

// dbQueries counts the slow queries, to show the stampede was avoided.
var dbQueries atomic.Int64

// loadProduct is the slow database query.
//
//dlock:fanout key="product:{id}" ttl=5s timeout=10s
func loadProduct(ctx context.Context, id int) (Product, error) {
	dbQueries.Add(1)
	select {
	case <-time.After(200 * time.Millisecond): // the slow query
	case <-ctx.Done():
		return Product{}, ctx.Err()
	}
	return Product{ID: id, Name: "product " + strconv.Itoa(id), Price: 9.99}, nil
}

func handler(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.URL.Query().Get("id"))
	if err != nil {
		http.Error(w, "id must be a number", http.StatusBadRequest)
		return
	}
	p, err := LoadProduct(r.Context(), id)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(p)
}

func connect() (*dlockrt.Client, func(), error) {
	url := os.Getenv("REDIS_URL")
	var stop func()
	if url == "" {
		srv, err := dlocktest.Start()
		if err != nil {
			return nil, nil, err
		}
		url, stop = "redis://"+srv.Addr(), srv.Close
		log.Printf("REDIS_URL is not set: using an embedded in-process Redis-compatible server at %s", srv.Addr())
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, nil, err
	}
	rdb := redis.NewClient(opts)
	c, err := dlockrt.New(rdb, nil)
	if err != nil {
		return nil, nil, err
	}
	return c, func() {
		c.Close()
		rdb.Close()
		if stop != nil {
			stop()
		}
	}, nil
}

// demo serves on a free port and fires n concurrent requests for one
// product; it returns how many succeeded and how many queries ran.
func demo(n int) (ok int, queries int64, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(handler)}
	go srv.Serve(ln)
	defer srv.Close()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			resp, err := http.Get("http://" + ln.Addr().String() + "/product?id=7")
			if err != nil {
				return
			}
			defer resp.Body.Close()
			var p Product
			if resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&p) == nil && p.ID == 7 {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return ok, dbQueries.Load(), nil
}

func main() {
	addr := flag.String("addr", ":8080", "listen address")
	demoMode := flag.Bool("demo", false, "fire 100 concurrent requests at a local server, print the outcome and exit")
	flag.Parse()
	c, closeAll, err := connect()
	if err != nil {
		log.Fatal(err)
	}
	defer closeAll()
	dlockrt.SetDefault(c)
	if *demoMode {
		ok, queries, err := demo(100)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("100 concurrent requests for product 7: %d answered, %d database query.\n", ok, queries)
		return
	}
	http.HandleFunc("/product", handler)
	log.Printf("listening on %s", *addr)
	log.Fatal(http.ListenAndServe(*addr, nil))
}
