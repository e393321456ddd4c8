// Package dlockrt is dlock's runtime: fleet-wide locks with fencing tokens
// and a watchdog, all-or-nothing multi-key locks, fanout and push (run a
// job once for every concurrent caller of a key, fleet-wide, and hand them
// all its result), and counting semaphores served first come first served;
// on Redis 7 (standalone, Sentinel or Cluster). The wrappers that dlockgen
// generates call it. Import it as dlockrt:
//
//	import dlockrt "github.com/dlock-go/dlock/runtime"
//
// See PROTOCOL.md in this directory for the Redis keys, scripts and states
// behind each primitive.
package dlockrt
