package dlockrt

import "errors"

// Helpers for the codecs that dlockgen generates live in the genrt
// subpackage.

// ErrDecode: a fanout result did not decode into the wrapper's result types
// (a leader built from a different signature, or corrupt bytes).
var ErrDecode = errors.New("dlock: cannot decode result")
