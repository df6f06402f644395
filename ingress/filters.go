package ingress

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/edgegate/edgegate/config"
)

// rule is one compiled HTTPRoute rule: what to do with a request once a match selected it.
// Immutable after compile; shared by every listener's table of the same config.
type rule struct {
	route          string // route name (metrics label, access log)
	refs           []backendRef
	total          int // sum of ref weights; 0 with refs: every weight is 0 -> 500
	reqHdr         *headerMod
	respHdr        *headerMod
	redirect       *redirect
	rewrite        *rewrite
	mirrors        []backendRef
	timeout        time.Duration
	backendTimeout time.Duration
	retries        int
	m              *routeMetrics
}

// backendRef is a weighted service port reference; cum is the running weight total (for the
// weighted pick).
type backendRef struct {
	service string
	port    uint16
	weight  int
	cum     int
	h2c     bool
}

// headerMod is a compiled header filter: canonical names, applied set, add, then remove.
type headerMod struct {
	set    []headerKV
	add    []headerKV
	remove []string
}

type headerKV struct{ name, value string }

// compileHeaderMod canonicalises the names and refuses invalid names and values (a CR or LF in a
// configured value would otherwise inject headers on the fast path, which writes them verbatim).
func compileHeaderMod(f *config.HeaderFilter) (*headerMod, error) {
	for _, kv := range []map[string]string{f.Set, f.Add} {
		for k, v := range kv {
			if !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) {
				return nil, fmt.Errorf("invalid header %q: %q", k, v)
			}
		}
	}
	for _, k := range f.Remove {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, fmt.Errorf("invalid header name %q", k)
		}
	}
	m := &headerMod{}
	for _, k := range sortedKeys(f.Set) {
		m.set = append(m.set, headerKV{http.CanonicalHeaderKey(k), f.Set[k]})
	}
	for _, k := range sortedKeys(f.Add) {
		m.add = append(m.add, headerKV{http.CanonicalHeaderKey(k), f.Add[k]})
	}
	for _, k := range f.Remove {
		m.remove = append(m.remove, http.CanonicalHeaderKey(k))
	}
	return m, nil
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// apply modifies h in place; names are canonical so the map is indexed directly.
func (m *headerMod) apply(h http.Header) {
	if m == nil {
		return
	}
	for _, kv := range m.set {
		h[kv.name] = []string{kv.value}
	}
	for _, kv := range m.add {
		h[kv.name] = append(h[kv.name], kv.value)
	}
	for _, k := range m.remove {
		delete(h, k)
	}
}

// pathRewrite is a compiled full-path or prefix replacement.
type pathRewrite struct {
	prefix bool
	value  string
}

// apply rewrites path; matched is the matched prefix (stored without trailing slash) for prefix
// replacement. Gateway API joining: /api -> / and /api/ -> / both turn /api/foo into /foo and
// /api into /.
func (p *pathRewrite) apply(path, matched string) string {
	if !p.prefix {
		return p.value
	}
	rest := path[len(matched):] // "" or starts with "/" (element-wise prefix match)
	v := p.value
	switch {
	case rest == "":
		if v == "" {
			return "/"
		}
		return v
	case strings.HasSuffix(v, "/"):
		return v + rest[1:]
	default:
		return v + rest
	}
}

func compilePathRewrite(p *config.PathRewrite) (*pathRewrite, error) {
	if p == nil {
		return nil, nil
	}
	switch p.Type {
	case "full":
		return &pathRewrite{value: p.Value}, nil
	case "prefix":
		return &pathRewrite{prefix: true, value: p.Value}, nil
	}
	return nil, fmt.Errorf("unknown path rewrite type %q", p.Type)
}

// redirect answers with a Location instead of proxying.
type redirect struct {
	scheme string
	host   string
	port   uint16
	path   *pathRewrite
	status int
}

func compileRedirect(r *config.RedirectFilter) (*redirect, error) {
	rd := &redirect{scheme: strings.ToLower(r.Scheme), host: r.Hostname, port: r.Port, status: r.StatusCode}
	if rd.status == 0 {
		rd.status = http.StatusFound
	}
	switch rd.status {
	case 301, 302, 307, 308:
	default:
		return nil, fmt.Errorf("redirect status %d not one of 301, 302, 307, 308", rd.status)
	}
	var err error
	if rd.path, err = compilePathRewrite(r.Path); err != nil {
		return nil, fmt.Errorf("redirect: %w", err)
	}
	return rd, nil
}

// location builds the redirect target following Gateway API: the scheme defaults to the request's,
// the host to the request's (without port); the port to the scheme's well-known port when the scheme
// is set, else the listener port; well-known ports are omitted.
func (rd *redirect) location(r *http.Request, tls bool, listenerPort uint16, matched string) string {
	scheme := rd.scheme
	if scheme == "" {
		scheme = "http"
		if tls {
			scheme = "https"
		}
	}
	host := rd.host
	if host == "" {
		host = hostOnly(r.Host)
	}
	port := rd.port
	if port == 0 {
		if rd.scheme != "" {
			port = wellKnownPort(scheme)
		} else {
			port = listenerPort
		}
	}
	path := r.URL.Path
	if rd.path != nil {
		path = rd.path.apply(path, matched)
	}
	var b strings.Builder
	b.Grow(len(scheme) + len(host) + len(path) + len(r.URL.RawQuery) + 16)
	b.WriteString(scheme)
	b.WriteString("://")
	if strings.IndexByte(host, ':') >= 0 { // IPv6 literal
		b.WriteByte('[')
		b.WriteString(host)
		b.WriteByte(']')
	} else {
		b.WriteString(host)
	}
	if port != 0 && port != wellKnownPort(scheme) {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(int(port)))
	}
	b.WriteString((&url.URL{Path: path}).EscapedPath())
	if r.URL.RawQuery != "" {
		b.WriteByte('?')
		b.WriteString(r.URL.RawQuery)
	}
	return b.String()
}

func wellKnownPort(scheme string) uint16 {
	switch scheme {
	case "http":
		return 80
	case "https":
		return 443
	}
	return 0
}

// hostOnly strips the port (and IPv6 brackets) from a Host header value.
func hostOnly(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		return h[:i]
	}
	return h
}

// rewrite changes the host and path before proxying.
type rewrite struct {
	host string
	path *pathRewrite
}

func compileRule(rt *config.HTTPRoute, cr *config.Rule, m *metrics) (*rule, error) {
	r := &rule{
		route:          rt.Name,
		timeout:        time.Duration(cr.Timeout),
		backendTimeout: time.Duration(cr.BackendTimeout),
		retries:        min(max(cr.Retries, 0), 5),
		m:              m.route(rt.Name),
	}
	for _, b := range cr.Backends {
		ref := compileRef(&b)
		r.total += ref.weight
		ref.cum = r.total
		r.refs = append(r.refs, ref)
	}
	for i := range cr.Filters {
		f := &cr.Filters[i]
		switch {
		case f.RequestHeaders != nil:
			m, err := compileHeaderMod(f.RequestHeaders)
			if err != nil {
				return nil, fmt.Errorf("request header filter: %w", err)
			}
			r.reqHdr = m
		case f.ResponseHeaders != nil:
			m, err := compileHeaderMod(f.ResponseHeaders)
			if err != nil {
				return nil, fmt.Errorf("response header filter: %w", err)
			}
			r.respHdr = m
		case f.Redirect != nil:
			rd, err := compileRedirect(f.Redirect)
			if err != nil {
				return nil, err
			}
			r.redirect = rd
		case f.URLRewrite != nil:
			p, err := compilePathRewrite(f.URLRewrite.Path)
			if err != nil {
				return nil, fmt.Errorf("url rewrite: %w", err)
			}
			if h := f.URLRewrite.Hostname; h != "" && !httpguts.ValidHostHeader(h) {
				return nil, fmt.Errorf("url rewrite: invalid hostname %q", h)
			}
			r.rewrite = &rewrite{host: f.URLRewrite.Hostname, path: p}
		case f.Mirror != nil:
			r.mirrors = append(r.mirrors, compileRef(f.Mirror))
		default:
			return nil, fmt.Errorf("filter %d sets nothing", i)
		}
	}
	if r.redirect == nil && len(r.refs) == 0 {
		return nil, fmt.Errorf("rule has neither backends nor a redirect")
	}
	return r, nil
}

func compileRef(b *config.BackendRef) backendRef {
	return backendRef{service: b.Service, port: b.Port, weight: max(b.Weight, 0), h2c: b.Protocol == "h2c"}
}
