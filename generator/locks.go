package generator

import (
	"go/types"
	"strings"
)

// Locks in carried structs. A sync.Mutex, a sync.RWMutex or a noCopy
// marker (a lock of no size) carries nothing another process could use:
// struct codecs leave such fields out. A type that holds a lock by value,
// as go vet's copylocks sees one (wireType.lock: any type whose pointer
// has Lock and Unlock, a struct embedding a mutex included), is encoded
// and decoded through a pointer, never copied, and its other fields are
// carried.

// isLock reports whether t is a lock as go vet's copylocks sees one: *t
// has Lock and Unlock methods and t has not.
func isLock(t types.Type) bool {
	if _, isIface := t.Underlying().(*types.Interface); isIface {
		return false
	}
	return hasLockMethods(types.NewPointer(t)) && !hasLockMethods(t)
}

// bareLock reports whether a field of type t carries nothing but a lock: a
// sync.Mutex, a sync.RWMutex, or a lock of no size (a noCopy marker). A
// struct that embeds a mutex beside data is no bare lock: its data is
// carried.
func bareLock(t types.Type) bool {
	if n, ok := types.Unalias(t).(*types.Named); ok && n.Obj().Pkg() != nil && n.Obj().Pkg().Path() == "sync" {
		switch n.Obj().Name() {
		case "Mutex", "RWMutex":
			return true
		}
	}
	return isLock(t) && zeroSize(t)
}

// heldLock says where t holds a lock by value ("it is a sync.Mutex", "its
// field inner.mu, a sync.Mutex"), or is "": copying a t copies it. By
// value, types cannot contain themselves, so the walk ends.
func heldLock(t types.Type) string {
	path, lock := lockPath(t)
	switch {
	case lock == "":
		return ""
	case path == "":
		return "it is a " + lock
	}
	return "its field " + path + ", a " + lock
}

func lockPath(t types.Type) (path, lock string) {
	if isLock(t) {
		if u, ok := t.Underlying().(*types.Struct); ok {
			// A struct with Lock and Unlock of its own: name what it
			// embeds when that is the lock (a sync.Mutex beside data).
			for i := 0; i < u.NumFields(); i++ {
				if p, l := lockPath(u.Field(i).Type()); l != "" && u.Field(i).Embedded() {
					return strings.TrimSuffix(u.Field(i).Name()+"."+p, "."), l
				}
			}
		}
		return "", types.TypeString(t, byName)
	}
	switch u := t.Underlying().(type) {
	case *types.Struct:
		for i := 0; i < u.NumFields(); i++ {
			if p, l := lockPath(u.Field(i).Type()); l != "" {
				return strings.TrimSuffix(u.Field(i).Name()+"."+p, "."), l
			}
		}
	case *types.Array: // of any length, as go vet counts them
		if p, l := lockPath(u.Elem()); l != "" {
			return strings.TrimSuffix("[0]."+p, "."), l
		}
	}
	return "", ""
}

func hasLockMethods(t types.Type) bool {
	ms := types.NewMethodSet(t)
	for _, name := range []string{"Lock", "Unlock"} {
		sel := ms.Lookup(nil, name)
		if sel == nil {
			return false
		}
		if sig := sel.Type().(*types.Signature); sig.Params().Len() != 0 || sig.Results().Len() != 0 {
			return false
		}
	}
	return true
}

// zeroSize reports whether a value of t takes no memory (struct{},
// [0]T): a field of it carries nothing.
func zeroSize(t types.Type) bool {
	switch u := t.Underlying().(type) {
	case *types.Struct:
		for i := 0; i < u.NumFields(); i++ {
			if !zeroSize(u.Field(i).Type()) {
				return false
			}
		}
		return true
	case *types.Array:
		return u.Len() == 0 || zeroSize(u.Elem())
	}
	return false
}
