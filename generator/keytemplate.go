package generator

import (
	"fmt"
	"strings"
)

// A key template is literal text with {param} or {param.Field} holes;
// {{ and }} stand for literal braces.
type keyPart struct {
	lit   string // literal text, when param is ""
	param string
	field string
	off   int // offset of the part in the template
}

func parseKeyTemplate(s string) ([]keyPart, []offError) {
	var parts []keyPart
	var errs []offError
	var lit strings.Builder
	litOff := 0
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, keyPart{lit: lit.String(), off: litOff})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		switch {
		case strings.HasPrefix(s[i:], "{{"):
			lit.WriteByte('{')
			i++
		case strings.HasPrefix(s[i:], "}}"):
			lit.WriteByte('}')
			i++
		case s[i] == '}':
			errs = append(errs, offError{i, "key template has an unmatched }; write }} for a literal brace"})
		case s[i] == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				errs = append(errs, offError{i, "key template has an unclosed {; write {{ for a literal brace"})
				return parts, errs
			}
			expr := s[i+1 : i+end]
			name, field, _ := strings.Cut(expr, ".")
			if !isIdent(name) || (strings.Contains(expr, ".") && !isIdent(field)) {
				errs = append(errs, offError{i, fmt.Sprintf("key template hole {%s} must be {param} or {param.Field}", expr)})
			} else {
				flush()
				parts = append(parts, keyPart{param: name, field: field, off: i})
			}
			i += end
			litOff = i + 1
		default:
			if lit.Len() == 0 {
				litOff = i
			}
			lit.WriteByte(s[i])
		}
	}
	flush()
	return parts, errs
}
