package generator

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A directive is one parsed //dlock: comment:
//
//	Directive = "//dlock:" Verb { " " Arg } .
//	Arg       = Name "=" ( GoQuotedString | Bare ) .
type directive struct {
	Verb string
	Args map[string]arg
}

// arg is one name=value argument with the offsets (from the start of the
// comment) of its name and value.
type arg struct {
	Name, Value       string
	NameOff, ValueOff int
}

// offError is a parse error at a byte offset of the comment text.
type offError struct {
	off int
	msg string
}

const prefix = "//dlock:"

// verbArgs are the arguments each verb accepts.
var verbArgs = map[string][]string{
	"fanout":    {"key", "ttl", "timeout", "name", "space"},
	"once":      {"key", "ttl", "wait", "name", "space"},
	"semaphore": {"limit", "key", "ttl", "wait", "name", "space"},
}

// isDirectiveLike reports whether a comment looks like a dlock directive,
// well formed or not (so that "// dlock:fanout" is diagnosed, not ignored).
func isDirectiveLike(text string) bool {
	return strings.HasPrefix(text, prefix) || strings.HasPrefix(strings.TrimLeft(strings.TrimPrefix(text, "//"), " \t"), "dlock:")
}

// parseDirective parses the text of one comment (starting with "//").
// It returns every error it finds, each at its offset in text.
func parseDirective(text string) (*directive, []offError) {
	if !strings.HasPrefix(text, prefix) {
		return nil, []offError{{0, "a directive has no space after //: write //dlock:" + strings.TrimPrefix(strings.TrimLeft(text[2:], " \t"), "dlock:")}}
	}
	var errs []offError
	rest := text[len(prefix):]
	verbEnd := strings.IndexAny(rest, " \t")
	if verbEnd < 0 {
		verbEnd = len(rest)
	}
	d := &directive{Verb: rest[:verbEnd], Args: map[string]arg{}}
	allowed, ok := verbArgs[d.Verb]
	if !ok {
		msg := fmt.Sprintf("unknown directive //dlock:%s", d.Verb)
		if s := suggest(d.Verb, []string{"fanout", "once", "semaphore"}); s != "" {
			msg += "; did you mean //dlock:" + s + "?"
		} else {
			msg += " (want fanout, once or semaphore)"
		}
		return nil, []offError{{len(prefix), msg}}
	}
	i := len(prefix) + verbEnd
	for i < len(text) {
		if text[i] == ' ' || text[i] == '\t' {
			i++
			continue
		}
		if strings.HasPrefix(text[i:], "//") {
			break // a comment after the directive
		}
		start := i
		for i < len(text) && text[i] != '=' && text[i] != ' ' && text[i] != '\t' {
			i++
		}
		name := text[start:i]
		if i >= len(text) || text[i] != '=' {
			errs = append(errs, offError{start, fmt.Sprintf("argument %q needs a value: write %s=...", name, name)})
			continue
		}
		i++ // '='
		valOff := i
		var value string
		if i < len(text) && text[i] == '"' {
			end := quotedEnd(text, i)
			if end < 0 {
				errs = append(errs, offError{valOff, "unterminated quoted value"})
				return d, errs
			}
			v, err := strconv.Unquote(text[i:end])
			if err != nil {
				errs = append(errs, offError{valOff, "bad quoted value: " + err.Error()})
			}
			value, i = v, end
		} else {
			for i < len(text) && text[i] != ' ' && text[i] != '\t' {
				i++
			}
			value = text[valOff:i]
		}
		switch {
		case !slices.Contains(allowed, name):
			msg := fmt.Sprintf("unknown argument %q for //dlock:%s", name, d.Verb)
			if s := suggest(name, allowed); s != "" {
				msg += "; did you mean " + s + "?"
			} else {
				msg += " (want " + strings.Join(allowed, ", ") + ")"
			}
			errs = append(errs, offError{start, msg})
		case d.Args[name].Name != "":
			errs = append(errs, offError{start, fmt.Sprintf("argument %q given twice", name)})
		default:
			d.Args[name] = arg{Name: name, Value: value, NameOff: start, ValueOff: valOff}
		}
	}
	errs = append(errs, d.checkValues()...)
	return d, errs
}

// quotedEnd returns the offset just past the Go quoted string starting at
// text[i], or -1.
func quotedEnd(text string, i int) int {
	for j := i + 1; j < len(text); j++ {
		switch text[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// checkValues checks the values that need no type information.
func (d *directive) checkValues() []offError {
	var errs []offError
	for _, n := range []string{"ttl", "timeout", "wait"} {
		a, ok := d.Args[n]
		if !ok {
			continue
		}
		v, err := time.ParseDuration(a.Value)
		switch {
		case err != nil:
			errs = append(errs, offError{a.ValueOff, fmt.Sprintf("%s=%s is not a duration (e.g. 10s, 500ms)", n, a.Value)})
		case v < 0 || (v == 0 && n != "wait"):
			errs = append(errs, offError{a.ValueOff, fmt.Sprintf("%s=%s must be positive", n, a.Value)})
		case v%time.Millisecond != 0:
			// Redis counts leases in milliseconds: 500us would become 1ms.
			errs = append(errs, offError{a.ValueOff, fmt.Sprintf("%s=%s is not a whole number of milliseconds: dlock counts time in milliseconds (write %v)", n, a.Value, max(v.Round(time.Millisecond), time.Millisecond))})
		}
	}
	if d.Verb == "semaphore" {
		a, ok := d.Args["limit"]
		if !ok {
			errs = append(errs, offError{0, "//dlock:semaphore needs limit=N"})
		} else if n, err := strconv.Atoi(a.Value); err != nil || n < 1 {
			errs = append(errs, offError{a.ValueOff, fmt.Sprintf("limit=%s must be a whole number >= 1", a.Value)})
		}
	}
	if a, ok := d.Args["name"]; ok && !isIdent(a.Value) {
		errs = append(errs, offError{a.ValueOff, fmt.Sprintf("name=%s is not a Go identifier", a.Value)})
	}
	if a, ok := d.Args["key"]; ok && a.Value == "" {
		errs = append(errs, offError{a.ValueOff, "key= is empty"})
	}
	return errs
}

// has reports whether the directive gives the argument.
func (d *directive) has(name string) bool { _, ok := d.Args[name]; return ok }

// duration returns the parsed duration argument, or 0 when absent.
func (d *directive) duration(name string) time.Duration {
	v, _ := time.ParseDuration(d.Args[name].Value)
	return v
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r != '_' && !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || i > 0 && '0' <= r && r <= '9') {
			return false
		}
	}
	return true
}

// suggest returns the candidate within edit distance 2 of s, if any.
func suggest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
