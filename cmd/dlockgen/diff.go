package main

import (
	"fmt"
	"strings"
)

// diff returns a unified diff of old and new (3 lines of context, hunk
// headers), enough to see why -check failed.
func diff(name string, old, new []byte) string {
	a, b := lines(old), lines(new)
	// Common prefix and suffix first: the table below is then only as big
	// as the part that changed.
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	ops := make([]byte, 0, len(a)+len(b)) // ' ' keep, '-' delete, '+' insert
	for range pre {
		ops = append(ops, ' ')
	}
	ops = append(ops, lcsOps(a[pre:len(a)-suf], b[pre:len(b)-suf])...)
	for range suf {
		ops = append(ops, ' ')
	}
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s (on disk)\n+++ %s (generated)\n", name, name)
	const context = 3
	i, j := 0, 0 // line indexes in a and b at ops[k]
	for k := 0; k < len(ops); {
		if ops[k] == ' ' {
			k, i, j = k+1, i+1, j+1
			continue
		}
		// A hunk: from context lines before this change to context lines
		// after the last change within 2*context lines of the previous one.
		start := max(0, k-context)
		end := k
		for end < len(ops) {
			if ops[end] != ' ' {
				end++
				continue
			}
			run := end
			for run < len(ops) && ops[run] == ' ' {
				run++
			}
			if run == len(ops) || run-end > 2*context {
				end = min(end+context, len(ops))
				break
			}
			end = run
		}
		ai, bj := i-(k-start), j-(k-start)
		var body strings.Builder
		na, nb := 0, 0
		x, y := ai, bj
		for _, op := range ops[start:end] {
			switch op {
			case ' ':
				fmt.Fprintf(&body, " %s\n", a[x])
				x, y, na, nb = x+1, y+1, na+1, nb+1
			case '-':
				fmt.Fprintf(&body, "-%s\n", a[x])
				x, na = x+1, na+1
			case '+':
				fmt.Fprintf(&body, "+%s\n", b[y])
				y, nb = y+1, nb+1
			}
		}
		fmt.Fprintf(&out, "@@ -%s +%s @@\n%s", hunkRange(ai, na), hunkRange(bj, nb), body.String())
		i, j, k = x, y, end
	}
	return out.String()
}

// hunkRange renders a hunk's start (1-based) and length.
func hunkRange(start, n int) string {
	if n == 0 {
		return fmt.Sprintf("%d,0", start)
	}
	return fmt.Sprintf("%d,%d", start+1, n)
}

// lcsOps returns the edit script from a to b along a longest common
// subsequence.
func lcsOps(a, b []string) []byte {
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var ops []byte
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			ops = append(ops, ' ')
			i, j = i+1, j+1
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, '-') // deletions before insertions, as diff -u
			i++
		default:
			ops = append(ops, '+')
			j++
		}
	}
	return ops
}

func lines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}
