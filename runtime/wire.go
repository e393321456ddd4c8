package dlockrt

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// The envelope carries a fanout outcome between processes, as msgpack:
//
//	[version uint, generation str, status uint, payload bin, code str, message str]
//
// status 0 is a result (payload), 1 an error (code and message). The
// generation is the run that produced it: a waiter accepts only the outcome
// of the generation it waited on (see PROTOCOL.md). A message that does not
// decode as a version-2 envelope is dropped.
const wireVersion = 2

const (
	statusOK  = 0
	statusErr = 1
)

// Codes of dlock's own errors on the wire.
const (
	codeTooLarge = "dlock.result_too_large"
	codeTimeout  = "dlock.timeout"
	codeLost     = "dlock.lost"
)

var (
	// ErrTimeout: a Fanout or Push caller waited its whole timeout without
	// an outcome.
	ErrTimeout = errors.New("dlock: timed out waiting for the result")
	// ErrResultTooLarge: the leader's result exceeded Options.MaxResultSize;
	// every caller of that run gets it.
	ErrResultTooLarge = errors.New("dlock: result too large")
)

// envelope is a decoded outcome.
type envelope struct {
	gen     string
	status  int
	payload []byte
	code    string
	message string
}

func (e envelope) encode() []byte {
	var buf bytes.Buffer
	buf.Grow(len(e.payload) + len(e.message) + len(e.gen) + len(e.code) + 24)
	enc := msgpack.NewEncoder(&buf)
	enc.EncodeArrayLen(6)
	enc.EncodeUint(wireVersion)
	enc.EncodeString(e.gen)
	enc.EncodeUint(uint64(e.status))
	enc.EncodeBytes(e.payload)
	enc.EncodeString(e.code)
	enc.EncodeString(e.message)
	return buf.Bytes()
}

var errBadEnvelope = errors.New("dlock: malformed envelope")

// envelopeOverhead bounds what an envelope adds to its payload: the
// header, the generation, the error's code and message (a longer message is
// cut to maxMessage when it is sent).
const (
	maxMessage       = 16 << 10
	maxCodes         = 1 << 10 // the codes of an error, space-separated
	envelopeOverhead = maxMessage + 1<<10
)

// decodeEnvelope decodes an envelope read from Redis. It never allocates
// more than the input's length: every declared length is checked against
// the bytes that remain (msgpack's own decoder would allocate a declared
// length before reading it), a payload or message longer than max is
// refused, and so is an input longer than max + envelopeOverhead, before
// anything is copied.
func decodeEnvelope(b string, max int) (envelope, error) {
	var e envelope
	if len(b) > max+envelopeOverhead {
		return e, fmt.Errorf("%w: %d bytes", errBadEnvelope, len(b))
	}
	r := wireReader{b: b}
	if n := r.arrayLen(); n != 6 {
		return e, errBadEnvelope
	}
	if v := r.uint(); v != wireVersion {
		if r.err == nil {
			r.err = fmt.Errorf("%w: version %d", errBadEnvelope, v)
		}
		return e, r.err
	}
	e.gen = r.str(256)
	st := r.uint()
	e.payload = []byte(r.bin(max))
	e.code = r.str(maxCodes)
	e.message = r.str(maxMessage)
	switch {
	case r.err != nil:
		return envelope{}, r.err
	case st != statusOK && st != statusErr:
		return envelope{}, fmt.Errorf("%w: status %d", errBadEnvelope, st)
	case r.i != len(b):
		return envelope{}, fmt.Errorf("%w: %d trailing bytes", errBadEnvelope, len(b)-r.i)
	}
	e.status = int(st)
	return e, nil
}

// wireReader reads the few msgpack forms of an envelope from a string,
// checking each length against what remains. The first error sticks.
type wireReader struct {
	b   string
	i   int
	err error
}

func (r *wireReader) fail() {
	if r.err == nil {
		r.err = errBadEnvelope
	}
}

func (r *wireReader) byte() byte {
	if r.err != nil || r.i >= len(r.b) {
		r.fail()
		return 0
	}
	c := r.b[r.i]
	r.i++
	return c
}

// be reads an n-byte big-endian unsigned integer.
func (r *wireReader) be(n int) uint64 {
	var v uint64
	for range n {
		v = v<<8 | uint64(r.byte())
	}
	return v
}

func (r *wireReader) arrayLen() int {
	switch c := r.byte(); {
	case c >= 0x90 && c <= 0x9f:
		return int(c & 0x0f)
	case c == 0xdc:
		return int(r.be(2))
	}
	r.fail()
	return -1
}

func (r *wireReader) uint() uint64 {
	switch c := r.byte(); {
	case c <= 0x7f:
		return uint64(c)
	case c == 0xcc:
		return r.be(1)
	case c == 0xcd:
		return r.be(2)
	case c == 0xce:
		return r.be(4)
	case c == 0xcf:
		return r.be(8)
	}
	r.fail()
	return 0
}

// raw reads n bytes, refusing n beyond max or beyond the input.
func (r *wireReader) raw(n uint64, max int) string {
	if r.err != nil || n > uint64(max) || n > uint64(len(r.b)-r.i) {
		r.fail()
		return ""
	}
	s := r.b[r.i : r.i+int(n)]
	r.i += int(n)
	return s
}

func (r *wireReader) str(max int) string {
	switch c := r.byte(); {
	case c >= 0xa0 && c <= 0xbf:
		return r.raw(uint64(c&0x1f), max)
	case c == 0xd9:
		return r.raw(r.be(1), max)
	case c == 0xda:
		return r.raw(r.be(2), max)
	case c == 0xdb:
		return r.raw(r.be(4), max)
	}
	r.fail()
	return ""
}

func (r *wireReader) bin(max int) string {
	switch c := r.byte(); {
	case c == 0xc4:
		return r.raw(r.be(1), max)
	case c == 0xc5:
		return r.raw(r.be(2), max)
	case c == 0xc6:
		return r.raw(r.be(4), max)
	case c == 0xc0: // nil: an empty payload
		return ""
	}
	r.fail()
	return ""
}

// outcome turns an envelope into what a caller receives.
func (e envelope) outcome() ([]byte, error) {
	if e.status == statusOK {
		return e.payload, nil
	}
	codes := strings.Fields(e.code)
	re := &RemoteError{Message: e.message, codes: codes}
	if len(codes) > 0 {
		re.Code = codes[0]
	}
	return nil, re
}

// failure builds the envelope of a job's error.
// Its message is cut to maxMessage bytes (at a rune boundary).
func failure(gen string, err error) envelope {
	msg := err.Error()
	if len(msg) > maxMessage {
		msg = strings.ToValidUTF8(msg[:maxMessage-3], "") + "..."
	}
	code := strings.Join(errorCodes(err), " ")
	for len(code) > maxCodes { // drop the last codes that do not fit
		code = code[:strings.LastIndexByte(code, ' ')]
	}
	return envelope{gen: gen, status: statusErr, code: code, message: msg}
}

// RemoteError is a job's error as every caller of a fanout receives it,
// the leader's own process included. errors.Is matches every registered
// error (see RegisterError) that the job's error matched, wrapped or not,
// and dlock's own errors (ErrTimeout, ErrResultTooLarge, ErrLost). Types
// for errors.As do not cross: only the message and the codes do.
type RemoteError struct {
	Code    string // the first registered code the job's error matched, or ""
	Message string // the job error's Error() text
	codes   []string
}

func (e *RemoteError) Error() string { return e.Message }

// Is reports whether target is an error registered under one of the codes
// the job's error matched.
func (e *RemoteError) Is(target error) bool {
	codes := e.codes
	if len(codes) == 0 && e.Code != "" {
		codes = []string{e.Code}
	}
	registry.RLock()
	defer registry.RUnlock()
	for _, code := range codes {
		if reg := registry.byCode[code]; reg != nil && (reg == target || errors.Is(reg, target)) {
			return true
		}
	}
	return false
}

var registry = struct {
	sync.RWMutex
	byCode map[string]error
	codes  []string // registration order, for a stable lookup
}{byCode: map[string]error{}}

// RegisterError makes err cross the wire: when a fanout job fails with an
// error that matches err (errors.Is), every caller, in every process that
// registered the same code, gets an error that matches err. Register the
// same codes in every process, at init. Registering a code twice with
// different errors, an empty code or a nil error panics: these are
// programming mistakes.
func RegisterError(code string, err error) {
	if code == "" || err == nil || len(code) > 256 || strings.ContainsAny(code, " \t\n") {
		panic("dlock: RegisterError needs a code (at most 256 bytes, no spaces) and an error")
	}
	registry.Lock()
	defer registry.Unlock()
	if old, ok := registry.byCode[code]; ok {
		if old != err {
			panic("dlock: RegisterError: code " + code + " registered twice")
		}
		return
	}
	registry.byCode[code] = err
	registry.codes = append(registry.codes, code)
}

// errorCodes returns the codes of every registered error that err matches
// (errors.Is: wrapped, joined or itself), in registration order.
func errorCodes(err error) []string {
	registry.RLock()
	defer registry.RUnlock()
	var codes []string
	for _, code := range registry.codes {
		if errors.Is(err, registry.byCode[code]) {
			codes = append(codes, code)
		}
	}
	return codes
}

func init() {
	RegisterError(codeTooLarge, ErrResultTooLarge)
	RegisterError(codeTimeout, ErrTimeout)
	RegisterError(codeLost, ErrLost)
}
