package genrt

import (
	"fmt"
	"reflect"
	"slices"
)

// MustFields pins, at program start, the fields (their names, in order; ""
// for an embedded field) of a struct that generated codecs carry, where the
// generated code could not pin them at compile time (a field it cannot
// name: an unexported or blank field of another package). When t's fields
// are no longer names, the dlock_gen.go that calls it is stale: its codecs
// would drop a new field without a word, so it panics, saying to run go
// generate.
func MustFields(t reflect.Type, names ...string) struct{} {
	var now []string
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); f.Anonymous {
			now = append(now, "")
		} else {
			now = append(now, f.Name)
		}
	}
	if !slices.Equal(now, names) {
		panic(fmt.Sprintf("dlock: dlock_gen.go is stale: %v has the fields %v, its codecs were generated for %v; run go generate", t, now, names))
	}
	return struct{}{}
}
