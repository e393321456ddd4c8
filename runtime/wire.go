package dlockrt

import (
	"bytes"
	"errors"
	"fmt"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// The envelope carries a fanout outcome between processes, as msgpack:
//
//	[version uint, status uint, payload bin, code str, message str]
//
// status 0 is a result (payload), 1 an error (code and message). A message
// that does not decode as a version-1 envelope is dropped.
const wireVersion = 1

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
	status  int
	payload []byte
	code    string
	message string
}

func (e envelope) encode() []byte {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.EncodeArrayLen(5)
	enc.EncodeUint(wireVersion)
	enc.EncodeUint(uint64(e.status))
	enc.EncodeBytes(e.payload)
	enc.EncodeString(e.code)
	enc.EncodeString(e.message)
	return buf.Bytes()
}

var errBadEnvelope = errors.New("dlock: malformed envelope")

func decodeEnvelope(b []byte) (envelope, error) {
	var e envelope
	r := bytes.NewReader(b)
	dec := msgpack.NewDecoder(r)
	n, err := dec.DecodeArrayLen()
	if err != nil || n != 5 {
		return e, errBadEnvelope
	}
	v, err := dec.DecodeUint()
	if err != nil || v != wireVersion {
		return e, fmt.Errorf("%w: version %d", errBadEnvelope, v)
	}
	st, err := dec.DecodeUint()
	if err != nil || (st != statusOK && st != statusErr) {
		return e, errBadEnvelope
	}
	e.status = int(st)
	if e.payload, err = dec.DecodeBytes(); err != nil {
		return e, errBadEnvelope
	}
	if e.code, err = dec.DecodeString(); err != nil {
		return e, errBadEnvelope
	}
	if e.message, err = dec.DecodeString(); err != nil {
		return e, errBadEnvelope
	}
	if r.Len() != 0 {
		return e, errBadEnvelope
	}
	if e.payload == nil {
		e.payload = []byte{}
	}
	return e, nil
}

// outcome turns an envelope into what a caller receives.
func (e envelope) outcome() ([]byte, error) {
	if e.status == statusOK {
		return e.payload, nil
	}
	return nil, &RemoteError{Code: e.code, Message: e.message}
}

// failure builds the envelope of a job's error.
func failure(err error) envelope {
	return envelope{status: statusErr, code: errorCode(err), message: err.Error()}
}

// RemoteError is a job's error as every caller of a fanout receives it,
// the leader's own process included. errors.Is matches the error registered
// under Code (see RegisterError), and dlock's own errors (ErrTimeout,
// ErrResultTooLarge, ErrLost).
type RemoteError struct {
	Code    string // the registered code, or "" for an unregistered error
	Message string // the job error's Error() text
}

func (e *RemoteError) Error() string { return e.Message }

// Is reports whether target is the error registered under e.Code.
func (e *RemoteError) Is(target error) bool {
	if e.Code == "" {
		return false
	}
	registry.RLock()
	reg := registry.byCode[e.Code]
	registry.RUnlock()
	return reg != nil && (reg == target || errors.Is(reg, target))
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
	if code == "" || err == nil {
		panic("dlock: RegisterError needs a code and an error")
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

// errorCode returns the code err is registered under, or "".
func errorCode(err error) string {
	registry.RLock()
	defer registry.RUnlock()
	for _, code := range registry.codes {
		if errors.Is(err, registry.byCode[code]) {
			return code
		}
	}
	return ""
}

func init() {
	RegisterError(codeTooLarge, ErrResultTooLarge)
	RegisterError(codeTimeout, ErrTimeout)
	RegisterError(codeLost, ErrLost)
}
