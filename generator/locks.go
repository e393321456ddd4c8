package generator

import "go/types"

// Locks in carried structs. A lock (sync.Mutex, sync.RWMutex, a noCopy
// marker) carries nothing another process could use: struct codecs leave
// such fields out, and a struct that holds one by value (wireType.lock) is
// encoded and decoded through a pointer, never copied (go vet's copylocks
// holds for the generated file as for the user's).

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
