package ingress

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/edgegate/edgegate/config"
)

// rt builds a one-rule route whose backend service names the case (so a test can tell which rule
// matched).
func rt(name string, hosts []string, svc string, ms ...config.Match) config.HTTPRoute {
	return config.HTTPRoute{Name: name, Hostnames: hosts, Listeners: []string{"main"},
		Rules: []config.Rule{{Matches: ms, Backends: []config.BackendRef{{Service: svc, Port: 80, Weight: 1}}}}}
}

func exact(p string) *config.PathMatch  { return &config.PathMatch{Type: "exact", Value: p} }
func prefix(p string) *config.PathMatch { return &config.PathMatch{Type: "prefix", Value: p} }
func regex(p string) *config.PathMatch  { return &config.PathMatch{Type: "regex", Value: p} }
func hdr(kv ...string) []config.ValueMatch {
	var out []config.ValueMatch
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, config.ValueMatch{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

func routingConfig() *config.Ingress {
	onHosts := func(r config.HTTPRoute) config.HTTPRoute { r.Listeners = []string{"hosts"}; return r }
	return &config.Ingress{
		Listeners: []config.Listener{{Name: "main", Address: "127.0.0.1:0"}, {Name: "hosts", Address: "127.0.0.1:0"}},
		Routes: []config.HTTPRoute{
			rt("root", nil, "root", config.Match{Path: prefix("/")}),
			rt("exact", nil, "exact", config.Match{Path: exact("/exact")}),
			rt("exact-prefix", nil, "exact-prefix", config.Match{Path: prefix("/exact")}),
			rt("foo", nil, "foo", config.Match{Path: prefix("/foo")}),
			rt("foo-bar", nil, "foo-bar", config.Match{Path: prefix("/foo/bar")}),
			rt("trail", nil, "trail", config.Match{Path: prefix("/trail/")}),
			rt("exact-slash", nil, "exact-slash", config.Match{Path: exact("/es/")}),
			rt("m-any", nil, "m-any", config.Match{Path: prefix("/m")}),
			rt("m-post", nil, "m-post", config.Match{Path: prefix("/m"), Method: "POST"}),
			rt("h1", nil, "h1", config.Match{Path: prefix("/h"), Headers: hdr("x-a", "1")}),
			rt("h2", nil, "h2", config.Match{Path: prefix("/h"), Headers: hdr("X-A", "1", "x-b", "2")}),
			rt("hre", nil, "hre", config.Match{Path: prefix("/hre"), Headers: []config.ValueMatch{{Name: "x-v", Type: "regex", Value: "^v[0-9]+$"}}}),
			rt("q0", nil, "q0", config.Match{Path: prefix("/q")}),
			rt("q1", nil, "q1", config.Match{Path: prefix("/q"), QueryParams: hdr("a", "1")}),
			rt("mh-headers", nil, "mh-headers", config.Match{Path: prefix("/mh"), Headers: hdr("x-a", "1", "x-b", "2")}),
			rt("mh-method", nil, "mh-method", config.Match{Path: prefix("/mh"), Method: "get"}),
			rt("hq-query", nil, "hq-query", config.Match{Path: prefix("/hq"), QueryParams: hdr("a", "1", "b", "2")}),
			rt("hq-header", nil, "hq-header", config.Match{Path: prefix("/hq"), Headers: hdr("x-a", "1")}),
			rt("dup-first", nil, "dup-first", config.Match{Path: prefix("/dup")}),
			rt("dup-second", nil, "dup-second", config.Match{Path: prefix("/dup")}),
			rt("re", nil, "re", config.Match{Path: regex("/re/[0-9]+")}),
			rt("any-match", nil, "any-match", config.Match{Path: exact("/one")}, config.Match{Path: exact("/two")}),
			// Host names, on their own listener (no catch-all there).
			onHosts(rt("host-exact", []string{"foo.example.com"}, "host-exact", config.Match{Path: prefix("/x")})),
			onHosts(rt("host-wild", []string{"*.example.com"}, "host-wild")),
			onHosts(rt("host-wild-deep", []string{"*.bar.example.com"}, "host-wild-deep")),
			onHosts(rt("host-other", []string{"other.test", "*.other.test"}, "host-other", config.Match{Path: exact("/only")})),
		},
	}
}

func compileForTest(t testing.TB, ing *config.Ingress, listener string) *table {
	t.Helper()
	rules := make([][]*rule, len(ing.Routes))
	for ri := range ing.Routes {
		for ki := range ing.Routes[ri].Rules {
			r, err := compileRule(&ing.Routes[ri], &ing.Routes[ri].Rules[ki], nil)
			if err != nil {
				t.Fatal(err)
			}
			rules[ri] = append(rules[ri], r)
		}
	}
	tb, err := compileTable(ing, listener, rules)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// TestRouting is a conformance-style table of Gateway API HTTPRoute matching semantics.
func TestRouting(t *testing.T) {
	ing := routingConfig()
	tables := map[string]*table{"main": compileForTest(t, ing, "main"), "hosts": compileForTest(t, ing, "hosts")}
	cases := []struct {
		name     string
		listener string
		host     string
		method   string
		target   string // path?query
		headers  []string
		want     string // service of the matched rule, "" for 404
	}{
		{"root catch-all", "main", "a.test", "GET", "/nothing", nil, "root"},
		{"empty path is /", "main", "a.test", "GET", "", nil, "root"},
		{"exact beats prefix", "main", "a.test", "GET", "/exact", nil, "exact"},
		{"exact is exact", "main", "a.test", "GET", "/exact/", nil, "exact-prefix"},
		{"prefix element", "main", "a.test", "GET", "/foo", nil, "foo"},
		{"prefix trailing slash", "main", "a.test", "GET", "/foo/", nil, "foo"},
		{"prefix below", "main", "a.test", "GET", "/foo/baz", nil, "foo"},
		{"foo never matches foobar", "main", "a.test", "GET", "/foobar", nil, "root"},
		{"longest prefix", "main", "a.test", "GET", "/foo/bar/x", nil, "foo-bar"},
		{"longest prefix exact element", "main", "a.test", "GET", "/foo/bar", nil, "foo-bar"},
		{"longest prefix not partial element", "main", "a.test", "GET", "/foo/barx", nil, "foo"},
		{"prefix with trailing slash matches bare", "main", "a.test", "GET", "/trail", nil, "trail"},
		{"prefix with trailing slash matches below", "main", "a.test", "GET", "/trail/x", nil, "trail"},
		{"prefix with trailing slash not partial", "main", "a.test", "GET", "/trailer", nil, "root"},
		{"exact with trailing slash", "main", "a.test", "GET", "/es/", nil, "exact-slash"},
		{"exact with trailing slash needs it", "main", "a.test", "GET", "/es", nil, "root"},
		{"method match wins", "main", "a.test", "POST", "/m/x", nil, "m-post"},
		{"method mismatch falls back", "main", "a.test", "PUT", "/m/x", nil, "m-any"},
		{"more headers win", "main", "a.test", "GET", "/h", []string{"X-A", "1", "X-B", "2"}, "h2"},
		{"one header", "main", "a.test", "GET", "/h", []string{"X-A", "1"}, "h1"},
		{"header value mismatch", "main", "a.test", "GET", "/h", []string{"X-A", "2"}, "root"},
		{"header regex", "main", "a.test", "GET", "/hre", []string{"X-V", "v12"}, "hre"},
		{"header regex mismatch", "main", "a.test", "GET", "/hre", []string{"X-V", "w12"}, "root"},
		{"query match wins", "main", "a.test", "GET", "/q?a=1", nil, "q1"},
		{"query mismatch", "main", "a.test", "GET", "/q?a=2", nil, "q0"},
		{"query escaped", "main", "a.test", "GET", "/q?a=%31", nil, "q1"},
		{"method beats headers", "main", "a.test", "GET", "/mh", []string{"X-A", "1", "X-B", "2"}, "mh-method"},
		{"headers when method differs", "main", "a.test", "POST", "/mh", []string{"X-A", "1", "X-B", "2"}, "mh-headers"},
		{"header beats query", "main", "a.test", "GET", "/hq?a=1&b=2", []string{"X-A", "1"}, "hq-header"},
		{"query without header", "main", "a.test", "GET", "/hq?a=1&b=2", nil, "hq-query"},
		{"config order breaks ties", "main", "a.test", "GET", "/dup", nil, "dup-first"},
		{"regex", "main", "a.test", "GET", "/re/42", nil, "re"},
		{"regex anchored", "main", "a.test", "GET", "/re/42/x", nil, "root"},
		{"any of the matches", "main", "a.test", "GET", "/two", nil, "any-match"},
		// Host names.
		{"exact host", "hosts", "foo.example.com", "GET", "/x/1", nil, "host-exact"},
		{"exact host with port", "hosts", "foo.example.com:8443", "GET", "/x", nil, "host-exact"},
		{"host case and trailing dot", "hosts", "FOO.Example.COM.", "GET", "/x", nil, "host-exact"},
		{"exact host falls through to wildcard", "hosts", "foo.example.com", "GET", "/y", nil, "host-wild"},
		{"wildcard one label", "hosts", "bar.example.com", "GET", "/", nil, "host-wild"},
		{"wildcard several labels", "hosts", "a.b.example.com", "GET", "/", nil, "host-wild"},
		{"longest wildcard", "hosts", "x.bar.example.com", "GET", "/", nil, "host-wild-deep"},
		{"longest wildcard, several labels", "hosts", "y.x.bar.example.com:80", "GET", "/", nil, "host-wild-deep"},
		{"wildcard never matches the bare suffix", "hosts", "example.com", "GET", "/", nil, ""},
		{"wildcard needs a label boundary", "hosts", "fooexample.com", "GET", "/", nil, ""},
		{"unknown host 404", "hosts", "nope.test", "GET", "/", nil, ""},
		{"exact and wildcard on one route", "hosts", "other.test", "GET", "/only", nil, "host-other"},
		{"route with matches that miss is 404", "hosts", "a.other.test", "GET", "/other", nil, ""},
		{"ipv6 host literal", "hosts", "[2001:db8::1]:8080", "GET", "/", nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u, err := url.ParseRequestURI("http://x" + c.target)
			if err != nil && c.target != "" {
				t.Fatal(err)
			}
			if u == nil {
				u = &url.URL{}
			}
			h := http.Header{}
			for i := 0; i+1 < len(c.headers); i += 2 {
				h.Add(c.headers[i], c.headers[i+1])
			}
			e := tables[c.listener].match(c.host, c.method, u.Path, h, u)
			got := ""
			if e != nil {
				got = e.rule.refs[0].service
			}
			if got != c.want {
				t.Fatalf("%s %s%s: matched %q, want %q", c.method, c.host, c.target, got, c.want)
			}
		})
	}
}

func TestNormalizeHost(t *testing.T) {
	for in, want := range map[string]string{
		"a.test": "a.test", "A.Test:80": "a.test", "a.test.": "a.test", "[::1]:80": "[::1]", "[::1]": "[::1]",
		"": "", "a.test.:8080": "a.test",
	} {
		if got := normalizeHost(in); got != want {
			t.Errorf("normalizeHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPathRewrite(t *testing.T) {
	cases := []struct {
		path, matched string
		rw            pathRewrite
		want          string
	}{
		{"/api/foo", "/api", pathRewrite{true, "/"}, "/foo"},       // /api -> /
		{"/api", "/api", pathRewrite{true, "/"}, "/"},              // bare prefix -> /
		{"/api/", "/api", pathRewrite{true, "/"}, "/"},             // /api/ -> /
		{"/api/foo/", "/api", pathRewrite{true, "/"}, "/foo/"},     // trailing slash kept
		{"/api/foo", "/api", pathRewrite{true, "/v2"}, "/v2/foo"},  // no double or missing slash
		{"/api/foo", "/api", pathRewrite{true, "/v2/"}, "/v2/foo"}, // replacement with slash
		{"/api", "/api", pathRewrite{true, "/v2"}, "/v2"},
		{"/api", "/api", pathRewrite{true, ""}, "/"},
		{"/foo", "", pathRewrite{true, "/v2"}, "/v2/foo"}, // prefix "/" matched
		{"/anything", "/any", pathRewrite{false, "/fixed"}, "/fixed"},
	}
	for _, c := range cases {
		if got := c.rw.apply(c.path, c.matched); got != c.want {
			t.Errorf("%+v.apply(%q, %q) = %q, want %q", c.rw, c.path, c.matched, got, c.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	bad := []config.HTTPRoute{
		rt("bad-regex", nil, "s", config.Match{Path: regex("(")}),
		rt("bad-type", nil, "s", config.Match{Path: &config.PathMatch{Type: "glob", Value: "/"}}),
		rt("bad-header-regex", nil, "s", config.Match{Headers: []config.ValueMatch{{Name: "a", Type: "regex", Value: "["}}}),
	}
	for _, r := range bad {
		ing := &config.Ingress{Listeners: []config.Listener{{Name: "main"}}, Routes: []config.HTTPRoute{r}}
		rules := [][]*rule{{&rule{}}}
		if _, err := compileTable(ing, "main", rules); err == nil {
			t.Errorf("route %s compiled without error", r.Name)
		}
	}
	noBackend := config.HTTPRoute{Name: "x", Rules: []config.Rule{{}}}
	if _, err := compileRule(&noBackend, &noBackend.Rules[0], nil); err == nil {
		t.Error("rule without backends or redirect compiled")
	}
	badHeader := config.HTTPRoute{Name: "x", Rules: []config.Rule{{Backends: []config.BackendRef{{Service: "s", Weight: 1}},
		Filters: []config.Filter{{RequestHeaders: &config.HeaderFilter{Set: map[string]string{"X-A": "v\r\nX-Injected: 1"}}}}}}}
	if _, err := compileRule(&badHeader, &badHeader.Rules[0], nil); err == nil {
		t.Error("header value with CRLF compiled")
	}
	badStatus := config.HTTPRoute{Name: "x", Rules: []config.Rule{{Filters: []config.Filter{{Redirect: &config.RedirectFilter{StatusCode: 303}}}}}}
	if _, err := compileRule(&badStatus, &badStatus.Rules[0], nil); err == nil {
		t.Error("redirect with status 303 compiled")
	}
}

// BenchmarkMatch measures a table lookup for a host with wildcards and a few precedence levels.
func BenchmarkMatch(b *testing.B) {
	ing := routingConfig()
	tb := compileForTest(b, ing, "main")
	th := compileForTest(b, ing, "hosts")
	u, _ := url.ParseRequestURI("/foo/bar/baz")
	h := http.Header{"X-A": {"1"}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if tb.match("a.test", "GET", u.Path, h, u) == nil || th.match("x.y.bar.example.com", "GET", "/", h, u) == nil {
			b.Fatal("no match")
		}
	}
}

// FuzzMatch checks the matcher never panics and that prefix matches honour element boundaries.
func FuzzMatch(f *testing.F) {
	for _, s := range []string{"/", "/foo", "/foo/bar", "/foobar", "/trail/", "//", "/re/1"} {
		f.Add("foo.example.com:80", s)
	}
	f.Add("[::1", "/x")
	f.Add("A.B.EXAMPLE.COM.", "")
	ing := routingConfig()
	tb := compileForTest(f, ing, "main")
	th := compileForTest(f, ing, "hosts")
	f.Fuzz(func(t *testing.T, host, path string) {
		u := &url.URL{Path: path}
		e := tb.match(host, "GET", path, http.Header{}, u)
		if e == nil {
			t.Fatalf("catch-all route missed %q", path)
		}
		if e.kind == pathPrefix && !prefixMatch(path, e.path) && path != "" {
			t.Fatalf("prefix %q matched %q", e.path, path)
		}
		th.match(host, "GET", path, http.Header{}, u)
	})
}

// FuzzPathRewrite: prefix replacement never panics and always yields an absolute path.
func FuzzPathRewrite(f *testing.F) {
	f.Add("/api/foo", "/api", "/")
	f.Add("/api", "/api", "")
	f.Add("/api/", "/api", "/v2/")
	f.Fuzz(func(t *testing.T, path, prefix, repl string) {
		prefix = strings.TrimRight(prefix, "/")
		if !prefixMatch(path, prefix) || !strings.HasPrefix(path, "/") || !strings.HasPrefix(repl, "/") {
			return // only requests the prefix matched, and valid replacements, reach apply
		}
		got := (&pathRewrite{prefix: true, value: repl}).apply(path, prefix)
		if !strings.HasPrefix(got, "/") {
			t.Fatalf("apply(%q, %q) with %q = %q: not absolute", path, prefix, repl, got)
		}
		if strings.Contains(got, "//") && !strings.Contains(path, "//") && !strings.Contains(repl, "//") {
			t.Fatalf("apply(%q, %q) with %q = %q: double slash from joining", path, prefix, repl, got)
		}
	})
}

func TestResolveDotSegments(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"/", "/", true},
		{"/a/b", "/a/b", true},
		{"/.well-known/x", "/.well-known/x", true},
		{"/a/..b/c.", "/a/..b/c.", true},
		{"/a/./b", "/a/b", true},
		{"/a/b/..", "/a/", true},
		{"/a/b/.", "/a/b/", true},
		{"/a/..", "/", true},
		{"/.", "/", true},
		{"/public/../admin", "/admin", true},
		{"/a/b/../../c/./d/", "/c/d/", true},
		{"/a//../b", "/a/b", true},
		{"/..", "", false},
		{"/../etc/passwd", "", false},
		{"/a/../../b", "", false},
		{"*", "*", true},
		{"", "", true},
	} {
		got, ok := resolveDotSegments(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("resolveDotSegments(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func FuzzResolveDotSegments(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "/..", "/a/./b/..", "/.well-known", "//..//."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, ok := resolveDotSegments(p)
		if !ok {
			return
		}
		if strings.HasPrefix(p, "/") && hasDotSegment(got) {
			t.Fatalf("resolveDotSegments(%q) = %q still has dot segments", p, got)
		}
		if again, ok := resolveDotSegments(got); !ok || again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", p, got, again, ok)
		}
	})
}

func FuzzEscapeQuery(f *testing.F) {
	for _, s := range []string{"", "a=1&b=2", "x y", "\xc3\xa9#\x00\x7f", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		got := escapeQuery(q)
		if strings.IndexFunc(got, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == '#' }) >= 0 {
			t.Fatalf("escapeQuery(%q) = %q keeps a byte a request line cannot carry", q, got)
		}
		if dec, err := url.PathUnescape(got); strings.Contains(q, "%") == false && (err != nil || dec != q) {
			t.Fatalf("escapeQuery(%q) = %q does not decode back (%q, %v)", q, got, dec, err)
		}
	})
}
