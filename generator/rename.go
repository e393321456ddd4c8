package generator

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"sort"
)

// A wrapper's key space holds its package path, type and function name
// (unless space= pins it): renaming any of them gives the new build other
// keys than the old one, and during a deploy old and new replicas stop
// excluding each other (two "once" jobs run, a semaphore's limit doubles).
// renamedSpaces compares the key spaces of the wrappers ws, to be written
// to path, with those of the dlock_gen.go file they replace, and warns of
// each that changes, naming the space= that keeps the old one.

// spaceMark finds a wrapper's key space in its doc comment: "(key space
// S); if it stops compiling". A method's space holds parentheses of its
// own ("pkg.(Store).Get"), a space none.
var spaceMark = regexp.MustCompile(`\(key space (\S+)\); `)

// renamedSpaces returns a warning for each wrapper of ws whose key space
// differs from the space of the wrapper the file at path declares under
// the same name, or, failing that, from a space that the file had and the
// package no longer uses (when exactly one such pair is left). A file that
// is not dlockgen's, or that names no spaces, yields none.
func renamedSpaces(path string, ws []*wrapper) []Diagnostic {
	if !ours(path) {
		return nil
	}
	if b, err := os.ReadFile(path); err == nil && allMarked(b, ws) {
		return nil // no space changed (the usual run): no need to parse the file
	}
	old := oldSpaces(path)
	if len(old) == 0 {
		return nil
	}
	now := map[string]bool{}
	for _, w := range ws {
		now[w.named] = true
	}
	was := map[string]bool{}
	for _, sp := range old {
		was[sp] = true
	}
	var warnings []Diagnostic
	var unmatched []*wrapper
	for _, w := range ws {
		if was[w.named] {
			continue
		}
		if sp, ok := old[wrapperID(w)]; ok && !now[sp] {
			warnings = append(warnings, renameWarning(w, sp))
			delete(was, sp)
			continue
		}
		unmatched = append(unmatched, w)
	}
	var gone []string
	for sp := range was {
		if !now[sp] {
			gone = append(gone, sp)
		}
	}
	sort.Strings(gone)
	if len(unmatched) == 1 && len(gone) == 1 {
		warnings = append(warnings, renameWarning(unmatched[0], gone[0]))
	}
	return warnings
}

// allMarked reports whether the generated file src names every key space
// of ws as spaceMark reads it: then no wrapper's space changed.
func allMarked(src []byte, ws []*wrapper) bool {
	for _, w := range ws {
		if !bytes.Contains(src, []byte("(key space "+w.named+"); ")) {
			return false
		}
	}
	return true
}

func renameWarning(w *wrapper, old string) Diagnostic {
	return Diagnostic{Pos: w.pos, Warning: true, Msg: fmt.Sprintf(
		"%s's key space changes from %q to %q: while a deploy runs old and new replicas side by side, they would not exclude each other; to keep the old space, add space=%q to the directive",
		w.name, old, w.named, old)}
}

// wrapperID names a wrapper in a generated file: its function, or
// Type.Method for a decorator's.
func wrapperID(w *wrapper) string {
	if w.recv != nil {
		return w.recv.Obj().Name() + "WithDlock." + w.name
	}
	return w.name
}

// oldSpaces reads the wrappers' key spaces from a generated file, by
// wrapperID.
func oldSpaces(path string) map[string]string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	f, err := parser.ParseFile(token.NewFileSet(), path, b, parser.ParseComments|parser.SkipObjectResolution)
	if err != nil {
		return nil
	}
	spaces := map[string]string{}
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Doc == nil {
			continue
		}
		m := spaceMark.FindStringSubmatch(fd.Doc.Text())
		if m == nil {
			continue
		}
		id := fd.Name.Name
		if fd.Recv != nil && len(fd.Recv.List) == 1 {
			if star, ok := fd.Recv.List[0].Type.(*ast.StarExpr); ok {
				if ident, ok := star.X.(*ast.Ident); ok {
					id = ident.Name + "." + id
				}
			}
		}
		spaces[id] = m[1]
	}
	return spaces
}
