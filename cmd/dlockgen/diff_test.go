package main

import (
	"strings"
	"testing"
)

// -check's diff is a unified diff with hunk headers and 3 lines of context.
func TestDiff_unifiedHunks(t *testing.T) {
	var old, new []string
	for i := 1; i <= 20; i++ {
		line := "line " + string(rune('a'+i-1))
		old = append(old, line)
		switch i {
		case 5:
			new = append(new, "changed e")
		case 15:
			// deleted
		default:
			new = append(new, line)
		}
	}
	new = append(new, "added")
	got := diff("f.go", []byte(strings.Join(old, "\n")+"\n"), []byte(strings.Join(new, "\n")+"\n"))
	want := `--- f.go (on disk)
+++ f.go (generated)
@@ -2,7 +2,7 @@
 line b
 line c
 line d
-line e
+changed e
 line f
 line g
 line h
@@ -12,9 +12,9 @@
 line l
 line m
 line n
-line o
 line p
 line q
 line r
 line s
 line t
+added
`
	if got != want {
		t.Fatalf("diff =\n%s\nwant\n%s", got, want)
	}
}
