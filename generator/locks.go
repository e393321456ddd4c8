package generator

import (
	"go/types"
	"strings"
)

// Locks in carried structs. A lock (sync.Mutex, sync.RWMutex, a noCopy
// marker) carries nothing another process could use: struct codecs leave
// such fields out, and a struct that holds one by value is encoded and
// decoded through a pointer, never copied (go vet's copylocks holds for
// the generated file as for the user's).

// isLock reports whether t is a lock as go vet's copylocks sees one: *t
// has Lock and Unlock methods and t has not.
func isLock(t types.Type) bool {
	if _, isIface := t.Underlying().(*types.Interface); isIface {
		return false
	}
	return hasLockMethods(types.NewPointer(t)) && !hasLockMethods(t)
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

// heldLock describes a lock t holds by value ("its field mu, a
// sync.Mutex"), or is "": copying a value of t copies that lock.
func heldLock(t types.Type) string {
	path, lock := heldLockSeen(t, map[types.Type]bool{})
	switch {
	case lock == "":
		return ""
	case path == "":
		return "it is a " + lock
	}
	return "its field " + path + ", a " + lock
}

// heldLockSeen returns the field path to a lock in t ("" for t itself)
// and the lock's type, or "", "".
func heldLockSeen(t types.Type, seen map[types.Type]bool) (path, lock string) {
	if seen[t] {
		return "", ""
	}
	seen[t] = true
	if isLock(t) {
		return "", types.TypeString(t, byName)
	}
	switch u := t.Underlying().(type) {
	case *types.Struct:
		for i := 0; i < u.NumFields(); i++ {
			if p, l := heldLockSeen(u.Field(i).Type(), seen); l != "" {
				return strings.TrimSuffix(u.Field(i).Name()+"."+p, "."), l
			}
		}
	case *types.Array:
		if u.Len() > 0 {
			if p, l := heldLockSeen(u.Elem(), seen); l != "" {
				return strings.TrimSuffix("[0]."+p, "."), l
			}
		}
	}
	return "", ""
}

// byRef reports whether t's codecs take a pointer (to encode) and write
// through one (to decode): a struct that holds a lock.
func byRef(t types.Type) bool {
	_, isStruct := t.Underlying().(*types.Struct)
	return isStruct && heldLock(t) != ""
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
