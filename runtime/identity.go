package dlockrt

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Identity says who holds (or waits for) a grant: the process that asked
// for it. Every lock, permit, semaphore place and fanout lead carries the
// identity of its client in its owner id, so Inspect can say who holds a
// key from Redis alone.
type Identity struct {
	Name  string    // the client's Options.Name (by default its executable's name)
	Host  string    // the host it runs on (os.Hostname)
	PID   int       // its process id
	Asked time.Time // when it asked for the grant, by its clock, to the millisecond
}

// String says who, as "name (pid 123 on host)".
func (id Identity) String() string {
	if id == (Identity{}) {
		return "unknown (a client before dlock 0.4)"
	}
	return fmt.Sprintf("%s (pid %d on %s)", id.Name, id.PID, id.Host)
}

// Owner ids are "<random>|<name>|<host>|<pid>|<asked>": 128 random bits in
// base 36 ("<a>.<b>", unique per acquisition, as before 0.4), then the
// identity, each part cut to a bound and stripped of anything but
// [A-Za-z0-9._:-] (so no space, '|', '/', or leading '-' the scripts read),
// the time in Unix milliseconds, base 36. At most 160 bytes. A permit id
// adds "/<limit>". Scripts compare owner ids whole, so processes before
// 0.4, whose ids are the random part alone, share keys with these.
const (
	maxNameLen = 40
	maxHostLen = 64
)

// identitySuffix is the part of this client's owner ids after the random
// part, but for the time: "|name|host|pid|".
func identitySuffix(name string) string {
	host, _ := os.Hostname()
	return "|" + idPart(name, maxNameLen) + "|" + idPart(host, maxHostLen) + "|" + strconv.Itoa(os.Getpid()) + "|"
}

// defaultName is the executable's name, the default Options.Name.
func defaultName() string {
	exe, err := os.Executable()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSuffix(filepath.Base(exe), ".exe")
}

// idPart keeps the bytes of s that owner ids allow, at most n of them.
func idPart(s string, n int) string {
	b := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(b) < n; i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':':
		case c == '-' && len(b) > 0:
		default:
			c = '_'
		}
		b = append(b, c)
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}

// newOwnerID returns a new owner id of this client: unique per
// acquisition, carrying the client's identity.
func (c *Client) newOwnerID() string {
	b := appendRandomID(make([]byte, 0, 27+len(c.idSuffix)+9))
	b = append(b, c.idSuffix...)
	b = strconv.AppendInt(b, time.Now().UnixMilli(), 36)
	return string(b)
}

// randomID returns 128 random bits as "<a>.<b>" in base 36.
func randomID() string { return string(appendRandomID(nil)) }

func appendRandomID(b []byte) []byte {
	b = strconv.AppendUint(b, rand.Uint64(), 36)
	b = append(b, '.')
	return strconv.AppendUint(b, rand.Uint64(), 36)
}

// A fanout generation of a client whose Observer is a FlightTracer ends
// in "|<traceparent>": the W3C trace context of the flight that leads it
// (55 bytes: version, trace id, parent id and flags in lower-case hex,
// joined by '-'), so an id is at most 216 bytes, within the 256 an
// envelope allows for a generation (since 0.2).
const traceparentLen = 55

// traceField returns "|"+tp when tp is a well-formed traceparent, else "".
func traceField(tp string) string {
	if !isTraceparent(tp) {
		return ""
	}
	return "|" + tp
}

func isTraceparent(tp string) bool {
	if len(tp) != traceparentLen || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' || tp[:2] == "ff" {
		return false
	}
	for i := 0; i < len(tp); i++ {
		c := tp[i]
		if i != 2 && i != 35 && i != 52 && !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// traceOf returns the traceparent an owner id ends with, or "".
func traceOf(id string) string {
	i := strings.LastIndexByte(id, '|')
	if i < 0 || !isTraceparent(id[i+1:]) {
		return ""
	}
	return id[i+1:]
}

// parseOwnerID reads the identity in an owner id (a permit's "/<limit>"
// ignored); ok is false for an id without one (a client before 0.4, or
// not dlock's).
func parseOwnerID(id string) (Identity, bool) {
	_, rest, found := strings.Cut(id, "|")
	if !found {
		return Identity{}, false
	}
	parts := strings.Split(rest, "|")
	if len(parts) == 5 && isTraceparent(parts[4]) {
		parts = parts[:4] // a fanout generation's trace context
	}
	if len(parts) != 4 {
		return Identity{}, false
	}
	asked, _, _ := strings.Cut(parts[3], "/")
	pid, err1 := strconv.Atoi(parts[2])
	ms, err2 := strconv.ParseInt(asked, 36, 64)
	if err1 != nil || err2 != nil {
		return Identity{}, false
	}
	return Identity{Name: parts[0], Host: parts[1], PID: pid, Asked: time.UnixMilli(ms)}, true
}
