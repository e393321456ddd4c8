package dlockrt

import "strings"

// MaxKeyLen is the longest user key, in bytes, that the client accepts.
const MaxKeyLen = 1024

// tag returns "<prefix>:{<key>}", the stem of every Redis key and channel of
// a user key. All of them share the hash tag, so they live in one cluster
// slot. Braces and '%' in the key are percent-encoded, so that no user key
// can end or empty the hash tag, and distinct keys never share a stem.
func (c *Client) tag(key string) (string, error) {
	switch {
	case key == "":
		return "", invalid("empty key")
	case len(key) > MaxKeyLen:
		return "", invalid("key of %d bytes is longer than %d", len(key), MaxKeyLen)
	}
	if strings.ContainsAny(key, "{}%") {
		key = keyEscaper.Replace(key)
	}
	return c.opts.Prefix + ":{" + key + "}", nil
}

var keyEscaper = strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D")
