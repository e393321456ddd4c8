package generator

import (
	"fmt"
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
		if w.verb != verbOnce && w.verb != verbSemaphore {
			continue
		}
		o, ok := first[w.space]
		if !ok {
			first[w.space] = w
			continue
		}
		switch {
		case o.verb != w.verb:
			c.diags = append(c.diags, Diagnostic{Pos: w.pos, Msg: fmt.Sprintf(
				"//dlock:%s shares the key space %s with the //dlock:%s at %s, but a lock and a semaphore of one key do not exclude each other: give one of them another space=, or the same verb",
				w.verb, w.named, o.verb, shortPosition(o.pos))})
		case w.verb == verbSemaphore && w.limit != o.limit:
			c.diags = append(c.diags, Diagnostic{Pos: w.pos, Msg: fmt.Sprintf(
				"//dlock:semaphore limit=%d shares the key space %s with the one at %s of limit=%d: one key has one limit; give both the same limit=, or one another space=",
				w.limit, w.named, shortPosition(o.pos), o.limit)})
		}
	}
}
