// Package dlockrt is dlock's runtime: fleet-wide locks with fencing tokens
// and a watchdog, all-or-nothing multi-key locks, on Redis 7 (standalone,
// Sentinel or Cluster). Import it as dlockrt:
//
//	import dlockrt "github.com/dlock-go/dlock/runtime"
//
// See PROTOCOL.md in this directory for the Redis keys, scripts and states
// behind each primitive.
package dlockrt
