package ingress

import (
	"net/url"
	"strings"
)

// Request path normalisation, applied before routing; the resolved path is what routes match and
// what the backend receives.
//
// Dot segments ("." and "..") are resolved as RFC 3986 section 5.2.4 describes, on the
// percent-decoded path (url.URL.Path): so "%2e" counts as a dot and "%2f" as a slash, as Envoy does
// with normalize_path plus path_with_escaped_slashes_action UNESCAPE_AND_FORWARD. A ".." that would
// climb above the root is refused with 400 (nginx and Envoy do the same) instead of being clamped
// to the root as the RFC allows. A path without dot segments is left byte for byte as the client
// sent it (its escaping included); one that was resolved is forwarded in canonical escaping.
// Empty segments ("//") and backslashes are left alone.

// hasDotSegment reports whether the path has a "." or ".." segment.
func hasDotSegment(p string) bool {
	for i := strings.Index(p, "/."); i >= 0; {
		rest := p[i+2:]
		if rest == "" || rest[0] == '/' || rest == "." || strings.HasPrefix(rest, "./") {
			return true
		}
		j := strings.Index(rest, "/.")
		if j < 0 {
			return false
		}
		i += 2 + j
	}
	return false
}

// resolveDotSegments removes the dot segments of an absolute path; ok is false when a ".." climbs
// above the root. A final "." or ".." segment leaves a trailing slash (/a/b/.. is /a/).
func resolveDotSegments(p string) (resolved string, ok bool) {
	if !strings.HasPrefix(p, "/") || !hasDotSegment(p) {
		return p, true
	}
	segs := strings.Split(p[1:], "/")
	out := segs[:0] // in place: out never grows past the segment being read
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
		case "..":
			if len(out) == 0 {
				return "", false
			}
			out = out[:len(out)-1]
		default:
			out = append(out, s)
			continue
		}
		if last {
			out = append(out, "")
		}
	}
	return "/" + strings.Join(out, "/"), true
}

// normalizePath resolves the dot segments of u's path in place (the escaped form is then derived
// from the resolved path); false when the path climbs above the root (answer 400).
func normalizePath(u *url.URL) bool {
	p, ok := resolveDotSegments(u.Path)
	if !ok {
		return false
	}
	if len(p) != len(u.Path) {
		u.Path, u.RawPath = p, ""
	}
	return true
}

// escapeQuery percent-encodes the bytes of a raw query that cannot stand in an HTTP/1.1 request
// line (controls, space, DEL, non-ASCII) and '#': HTTP/2 carries :path as a header value, where a
// space is legal, and the query must not reach an HTTP/1.1 backend as a broken request line. A
// query without such bytes is returned unchanged (no allocation).
func escapeQuery(q string) string {
	i := 0
	for i < len(q) && !badQueryByte(q[i]) {
		i++
	}
	if i == len(q) {
		return q
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(q)+16)
	b = append(b, q[:i]...)
	for ; i < len(q); i++ {
		if c := q[i]; badQueryByte(c) {
			b = append(b, '%', hex[c>>4], hex[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

func badQueryByte(c byte) bool { return c <= ' ' || c >= 0x7f || c == '#' }
