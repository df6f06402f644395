package ingress

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/edgegate/edgegate/config"
)

// The route table is compiled once per config (and per listener) into an immutable structure that
// the request path reads without locks:
//
//	host -> exact-host group | longest matching wildcard group | catch-all group
//
// Each group is a slice of matches already merged and sorted in Gateway API precedence, so a
// request walks one slice and takes the first match that holds. Host-name specificity comes first
// (Gateway API: rules of the route with the most specific matching host name win), and a group
// falls through to less specific host names (its slice ends with theirs), so a request for
// foo.example.com that matches none of the exact-host rules can still be served by *.example.com or
// by routes without host names.

// Path match kinds in precedence order. Gateway API leaves regex precedence to the implementation:
// here a regex ranks below every exact match and above every prefix match, so a regex rule is not
// shadowed by the ubiquitous prefix "/" catch-all.
const (
	pathExact uint8 = iota
	pathRegex
	pathPrefix
)

// table is the compiled route table of one listener.
type table struct {
	exact map[string][]*matchEntry // lower-case host -> merged, sorted entries
	wild  map[string][]*matchEntry // wildcard suffix ("example.com" for *.example.com) -> merged entries
	any   []*matchEntry            // routes without host names
}

// matchEntry is one HTTPRouteMatch of one rule, compiled.
type matchEntry struct {
	kind    uint8
	path    string // exact value, or prefix without trailing slash ("" for "/")
	re      *regexp.Regexp
	method  string
	headers []valueMatch
	query   []valueMatch
	rule    *rule
	order   int // config order: route, rule, match
}

// valueMatch is a compiled header or query parameter match.
type valueMatch struct {
	name  string // canonical MIME header key for headers, literal for query parameters
	value string
	re    *regexp.Regexp
}

func (v *valueMatch) matches(s string, ok bool) bool {
	if !ok {
		return false
	}
	if v.re != nil {
		return v.re.MatchString(s)
	}
	return s == v.value
}

// compileTable builds the route table of the listener named listener from cfg; rules maps each
// config rule to its compiled form (shared between listeners).
func compileTable(ing *config.Ingress, listener string, rules [][]*rule) (*table, error) {
	t := &table{exact: map[string][]*matchEntry{}, wild: map[string][]*matchEntry{}}
	own := map[string][]*matchEntry{} // "=host" or "*suffix" -> entries of that host name only
	var anyOwn []*matchEntry
	order := 0
	for ri := range ing.Routes {
		rt := &ing.Routes[ri]
		if len(rt.Listeners) > 0 && !slices.Contains(rt.Listeners, listener) {
			order += 1 << 16
			continue
		}
		var entries []*matchEntry
		for ki := range rt.Rules {
			cr := &rt.Rules[ki]
			matches := cr.Matches
			if len(matches) == 0 {
				matches = []config.Match{{}}
			}
			for mi := range matches {
				e, err := compileMatch(&matches[mi])
				if err != nil {
					return nil, fmt.Errorf("route %q rule %d match %d: %w", rt.Name, ki, mi, err)
				}
				e.rule = rules[ri][ki]
				e.order = order
				order++
				entries = append(entries, e)
			}
		}
		if len(rt.Hostnames) == 0 {
			anyOwn = append(anyOwn, entries...)
			continue
		}
		for _, h := range rt.Hostnames {
			h = strings.TrimSuffix(strings.ToLower(h), ".")
			key := "=" + h
			if rest, ok := strings.CutPrefix(h, "*."); ok {
				key = "*" + rest
			}
			own[key] = append(own[key], entries...)
		}
	}
	sortEntries(anyOwn)
	t.any = anyOwn
	for k := range own {
		sortEntries(own[k])
	}
	// Wildcard groups first (exact groups fall through into them): own entries, then those of the
	// longest shorter wildcard that covers this one, then the catch-all.
	var wildKeys []string
	for k := range own {
		if k[0] == '*' {
			wildKeys = append(wildKeys, k[1:])
		}
	}
	// Shorter suffixes first, so a longer suffix finds its fallback already merged.
	slices.SortFunc(wildKeys, func(a, b string) int { return cmp.Compare(len(a), len(b)) })
	for _, s := range wildKeys {
		t.wild[s] = concat(own["*"+s], t.wildFallback(s))
	}
	for k, es := range own {
		if k[0] == '=' {
			h := k[1:]
			t.exact[h] = concat(es, t.wildFallback(h))
		}
	}
	return t, nil
}

// wildFallback returns the merged entries of the most specific wildcard that covers host (a proper
// suffix at a label boundary: for host a.example.com or wildcard suffix a.example.com that is
// *.example.com, then *.com), or the catch-all.
func (t *table) wildFallback(host string) []*matchEntry {
	for i := strings.IndexByte(host, '.'); i >= 0; {
		suffix := host[i+1:]
		if es, ok := t.wild[suffix]; ok {
			return es
		}
		j := strings.IndexByte(suffix, '.')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return t.any
}

func concat(a, b []*matchEntry) []*matchEntry {
	out := make([]*matchEntry, 0, len(a)+len(b))
	return append(append(out, a...), b...)
}

// sortEntries orders matches by Gateway API precedence: exact path, (regex), longest prefix,
// method, most header matches, most query matches, config order.
func sortEntries(es []*matchEntry) {
	slices.SortStableFunc(es, func(a, b *matchEntry) int {
		if c := cmp.Compare(a.kind, b.kind); c != 0 {
			return c
		}
		if a.kind != pathExact {
			if c := cmp.Compare(len(b.path), len(a.path)); c != 0 {
				return c
			}
		}
		am, bm := a.method != "", b.method != ""
		if am != bm {
			if am {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(len(b.headers), len(a.headers)); c != 0 {
			return c
		}
		if c := cmp.Compare(len(b.query), len(a.query)); c != 0 {
			return c
		}
		return cmp.Compare(a.order, b.order)
	})
}

func compileMatch(m *config.Match) (*matchEntry, error) {
	e := &matchEntry{kind: pathPrefix}
	if p := m.Path; p != nil {
		switch p.Type {
		case "exact":
			e.kind, e.path = pathExact, p.Value
		case "", "prefix":
			e.path = strings.TrimRight(p.Value, "/")
		case "regex":
			re, err := regexp.Compile("^(?:" + p.Value + ")$")
			if err != nil {
				return nil, fmt.Errorf("path regex: %w", err)
			}
			e.kind, e.re, e.path = pathRegex, re, p.Value
		default:
			return nil, fmt.Errorf("unknown path match type %q", p.Type)
		}
	}
	e.method = strings.ToUpper(m.Method)
	var err error
	if e.headers, err = compileValues(m.Headers, true); err != nil {
		return nil, fmt.Errorf("header match: %w", err)
	}
	if e.query, err = compileValues(m.QueryParams, false); err != nil {
		return nil, fmt.Errorf("query match: %w", err)
	}
	return e, nil
}

func compileValues(vs []config.ValueMatch, header bool) ([]valueMatch, error) {
	var out []valueMatch
	for _, v := range vs {
		name := v.Name
		if header {
			name = http.CanonicalHeaderKey(name)
		}
		// Gateway API: only the first entry with an equivalent name counts.
		if slices.ContainsFunc(out, func(o valueMatch) bool { return o.name == name }) {
			continue
		}
		vm := valueMatch{name: name, value: v.Value}
		switch v.Type {
		case "", "exact":
		case "regex":
			re, err := regexp.Compile(v.Value)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", v.Name, err)
			}
			vm.re = re
		default:
			return nil, fmt.Errorf("%s: unknown match type %q", v.Name, v.Type)
		}
		out = append(out, vm)
	}
	return out, nil
}

// normalizeHost strips the port and a trailing dot and lower-cases the Host header value; it
// allocates only for mixed-case hosts.
func normalizeHost(h string) string {
	if len(h) > 0 && h[0] == '[' { // IPv6 literal
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[:i+1]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// candidates returns the merged entries for a normalized host name.
func (t *table) candidates(host string) []*matchEntry {
	if es, ok := t.exact[host]; ok {
		return es
	}
	if len(t.wild) == 0 {
		return t.any
	}
	return t.wildFallback(host)
}

// match finds the entry for a request, or nil (404). path is the request's URL path.
func (t *table) match(host, method, path string, h http.Header, u *url.URL) *matchEntry {
	es := t.candidates(normalizeHost(host))
	if path == "" {
		path = "/"
	}
	var q url.Values
	for _, e := range es {
		switch e.kind {
		case pathExact:
			if path != e.path {
				continue
			}
		case pathPrefix:
			if !prefixMatch(path, e.path) {
				continue
			}
		case pathRegex:
			if !e.re.MatchString(path) {
				continue
			}
		}
		if e.method != "" && e.method != method {
			continue
		}
		if !valuesMatch(e.headers, h) {
			continue
		}
		if len(e.query) > 0 {
			if q == nil {
				q = u.Query() // parsed lazily: only routes with query matches pay for it
			}
			if !valuesMatch(e.query, q) {
				continue
			}
		}
		return e
	}
	return nil
}

// prefixMatch is the element-wise prefix match: prefix "/foo" (stored without trailing slash)
// matches /foo, /foo/ and /foo/bar but not /foobar; "" (from "/") matches everything.
func prefixMatch(path, prefix string) bool {
	if prefix == "" {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

// valuesMatch applies header or query matches (http.Header and url.Values are both
// map[string][]string): each must hold for the first value of its name.
func valuesMatch(ms []valueMatch, vals map[string][]string) bool {
	for i := range ms {
		vs := vals[ms[i].name]
		var v string
		if len(vs) > 0 {
			v = vs[0]
		}
		if !ms[i].matches(v, len(vs) > 0) {
			return false
		}
	}
	return true
}
