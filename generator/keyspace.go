package generator

import (
	"fmt"
	"strconv"
)

// checkKeySpaces diagnoses wrappers of one package that share a key space
// but would not exclude each other as their directives promise: a
// //dlock:once and a //dlock:semaphore (a lock and a semaphore of one key
// are different Redis keys), or semaphores with different limits (the
// runtime grants no more than the smallest limit in force, so the larger
// one is never what it says).
func (c *checker) checkKeySpaces(ws []*wrapper) {
	first := map[string]*wrapper{}
	for _, w := range ws {
		if w.d.Verb != "once" && w.d.Verb != "semaphore" {
			continue
		}
		o, ok := first[w.space]
		if !ok {
			first[w.space] = w
			continue
		}
		switch {
		case o.d.Verb != w.d.Verb:
			c.diags = append(c.diags, Diagnostic{Pos: w.pos, Msg: fmt.Sprintf(
				"//dlock:%s shares the key space %s with the //dlock:%s at %s, but a lock and a semaphore of one key do not exclude each other: give one of them another space=, or the same verb",
				w.d.Verb, w.named, o.d.Verb, shortPosition(o.pos))})
		case w.d.Verb == "semaphore" && limitOf(w) != limitOf(o):
			c.diags = append(c.diags, Diagnostic{Pos: w.pos, Msg: fmt.Sprintf(
				"//dlock:semaphore limit=%d shares the key space %s with the one at %s of limit=%d: one key has one limit; give both the same limit=, or one another space=",
				limitOf(w), w.named, shortPosition(o.pos), limitOf(o))})
		}
	}
}

// limitOf is a semaphore directive's limit (checked already).
func limitOf(w *wrapper) int {
	n, _ := strconv.Atoi(w.d.Args["limit"].Value)
	return n
}
