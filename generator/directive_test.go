package generator

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseDirective(t *testing.T) {
	for _, tc := range []struct {
		in   string
		verb string
		args map[string]string
		errs []string // substrings, in order
	}{
		{in: "//dlock:fanout", verb: "fanout", args: map[string]string{}},
		{in: `//dlock:fanout key="user:{id}" ttl=10s`, verb: "fanout", args: map[string]string{"key": "user:{id}", "ttl": "10s"}},
		{in: `//dlock:once key="a b\"c" wait=0`, verb: "once", args: map[string]string{"key": `a b"c`, "wait": "0"}},
		{in: "//dlock:semaphore limit=3\tkey=x", verb: "semaphore", args: map[string]string{"limit": "3", "key": "x"}},
		{in: "// dlock:once", errs: []string{"no space after //"}},
		{in: "//dlock:lock", errs: []string{"unknown directive //dlock:lock (want fanout, once or semaphore)"}},
		{in: "//dlock:onse", errs: []string{"did you mean //dlock:once?"}},
		{in: "//dlock:fanout wait=1s", errs: []string{`unknown argument "wait" for //dlock:fanout`}},
		{in: "//dlock:fanout ttl=1s ttl=2s", errs: []string{`"ttl" given twice`}},
		{in: "//dlock:fanout ttl", errs: []string{`"ttl" needs a value`}},
		{in: `//dlock:fanout key="open`, errs: []string{"unterminated quoted value"}},
		{in: "//dlock:once ttl=0", errs: []string{"ttl=0 must be positive"}},
		{in: "//dlock:semaphore", errs: []string{"needs limit=N"}},
		{in: "//dlock:semaphore limit=x", errs: []string{"limit=x must be a whole number"}},
		{in: `//dlock:fanout key=""`, errs: []string{"key= is empty"}},
	} {
		d, errs := parseDirective(tc.in)
		if len(errs) != len(tc.errs) {
			t.Errorf("parseDirective(%q) errors = %v; want %d like %q", tc.in, errs, len(tc.errs), tc.errs)
			continue
		}
		for i, e := range errs {
			if !strings.Contains(e.msg, tc.errs[i]) {
				t.Errorf("parseDirective(%q) error %d = %q; want it to contain %q", tc.in, i, e.msg, tc.errs[i])
			}
		}
		if tc.errs != nil {
			continue
		}
		got := map[string]string{}
		for n, a := range d.Args {
			got[n] = a.Value
		}
		if d.Verb != tc.verb || !reflect.DeepEqual(got, tc.args) {
			t.Errorf("parseDirective(%q) = %s %v; want %s %v", tc.in, d.Verb, got, tc.verb, tc.args)
		}
	}
}

func TestParseKeyTemplate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []keyPart
		err  string
	}{
		{in: "plain", want: []keyPart{{lit: "plain"}}},
		{in: "user:{id}", want: []keyPart{{lit: "user:"}, {param: "id", off: 5}}},
		{in: "{a.B}-{c}", want: []keyPart{{param: "a", field: "B"}, {lit: "-", off: 5}, {param: "c", off: 6}}},
		{in: "{{x}}:{y}", want: []keyPart{{lit: "{x}:"}, {param: "y", off: 6}}},
		{in: "a}b", err: "unmatched }"},
		{in: "a{b", err: "unclosed {"},
		{in: "{}", err: "must be {param} or {param.Field}"},
		{in: "{a.b.c}", err: "must be {param} or {param.Field}"},
	} {
		got, errs := parseKeyTemplate(tc.in)
		if tc.err != "" {
			if len(errs) == 0 || !strings.Contains(errs[0].msg, tc.err) {
				t.Errorf("parseKeyTemplate(%q) errors = %v; want %q", tc.in, errs, tc.err)
			}
			continue
		}
		if len(errs) > 0 || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseKeyTemplate(%q) = %+v, %v; want %+v", tc.in, got, errs, tc.want)
		}
	}
}

// The parser never panics, and every error lies within the comment.
func FuzzParseDirective(f *testing.F) {
	for _, s := range []string{"//dlock:fanout", `//dlock:fanout key="user:{id}" ttl=10s`, "// dlock:x", "//dlock:semaphore limit=2 wait=", `//dlock:once key="\"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		text := "//" + strings.TrimPrefix(s, "//")
		_, errs := parseDirective(text)
		for _, e := range errs {
			if e.off < 0 || e.off > len(text) {
				t.Fatalf("parseDirective(%q): error at %d, outside the comment: %s", text, e.off, e.msg)
			}
		}
	})
}

// Key templates never panic; holes and errors lie within the template.
func FuzzParseKeyTemplate(f *testing.F) {
	for _, s := range []string{"user:{id}", "{{}}", "{a.B}{c}", "}{", "{"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		parts, errs := parseKeyTemplate(s)
		for _, e := range errs {
			if e.off < 0 || e.off >= len(s) {
				t.Fatalf("parseKeyTemplate(%q): error at %d: %s", s, e.off, e.msg)
			}
		}
		for _, p := range parts {
			if p.off < 0 || p.off > len(s) {
				t.Fatalf("parseKeyTemplate(%q): part at %d", s, p.off)
			}
		}
	})
}
