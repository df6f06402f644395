package config

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"gopkg.in/yaml.v3"
)

// Ingress defaults and limits.
const (
	DefaultReadHeaderTimeout      = Duration(10 * time.Second)
	DefaultIdleTimeout            = Duration(120 * time.Second)
	DefaultMaxHeaderBytes         = 64 << 10
	DefaultDrainTimeout           = Duration(10 * time.Second)
	DefaultRequestBodyTimeout     = Duration(60 * time.Second)
	DefaultSendTimeout            = Duration(60 * time.Second)
	DefaultUpgradeIdleTimeout     = Duration(time.Hour)
	DefaultMaxUpgradedConnections = 10000
	DefaultRetries                = 1
	DefaultRedirectStatus         = 302
	MaxRetries                    = 5
	MinMaxHeaderBytes             = 1 << 10
	MaxMaxHeaderBytes             = 16 << 20
)

// Accepted values of the ingress enumerations.
const (
	ListenerHTTP  = "http"
	ListenerHTTPS = "https"

	PathExact  = "exact"
	PathPrefix = "prefix"
	PathRegex  = "regex"

	ValueExact = "exact"
	ValueRegex = "regex"

	RewriteFull   = "full"
	RewritePrefix = "prefix"

	BackendHTTP = "http"
	BackendH2C  = "h2c"
)

// Methods are the HTTP methods a match may name (Gateway API's HTTPMethod).
var Methods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

// Regexp compiles a regex path match, anchored so it must match the whole path (as Gateway API
// RegularExpression matches are commonly implemented); nil for other match types.
func (m *PathMatch) Regexp() (*regexp.Regexp, error) {
	if m == nil || m.Type != PathRegex {
		return nil, nil
	}
	return anchored(m.Value)
}

// Regexp compiles a regex header/query match; nil for exact. Unlike path regexes it is not
// anchored (it matches anywhere in the value; write ^...$ to anchor), as the router applies it.
func (m *ValueMatch) Regexp() (*regexp.Regexp, error) {
	if m.Type != ValueRegex {
		return nil, nil
	}
	return regexp.Compile(m.Value)
}

// anchored compiles expr to match whole strings; errors name the expression as written.
// The ingress router compiles path regexes the same way.
func anchored(expr string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(expr); err != nil {
		return nil, err
	}
	return regexp.Compile(`^(?:` + expr + `)$`)
}

// Load reads the certificate/key pair (paths are already absolute after Parse).
func (c Certificate) Load() (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load certificate %s: %w", c.CertFile, err)
	}
	return cert, nil
}

// ListenerByName returns the named listener, or nil.
func (i *Ingress) ListenerByName(name string) *Listener {
	for j := range i.Listeners {
		if i.Listeners[j].Name == name {
			return &i.Listeners[j]
		}
	}
	return nil
}

// resolvePath anchors a relative file path at the config file's directory, so a config works
// from any working directory.
func (v *validator) resolvePath(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	if v.c.Source != "" {
		p = filepath.Join(filepath.Dir(v.c.Source), p)
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

func (v *validator) ingressDefaults() {
	in := v.c.Ingress
	if !v.set(&in.ReadHeaderTimeout) {
		in.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if !v.set(&in.IdleTimeout) {
		in.IdleTimeout = DefaultIdleTimeout
	}
	if !v.set(&in.MaxHeaderBytes) {
		in.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if !v.set(&in.DrainTimeout) {
		in.DrainTimeout = DefaultDrainTimeout
	}
	if !v.set(&in.RequestBodyTimeout) {
		in.RequestBodyTimeout = DefaultRequestBodyTimeout
	}
	if !v.set(&in.SendTimeout) {
		in.SendTimeout = DefaultSendTimeout
	}
	if !v.set(&in.UpgradeIdleTimeout) {
		in.UpgradeIdleTimeout = DefaultUpgradeIdleTimeout
	}
	if !v.set(&in.MaxUpgradedConnections) {
		in.MaxUpgradedConnections = DefaultMaxUpgradedConnections
	}
	setDefault(v, &in.AccessLog, DefaultAccessLog)
	for i := range in.Listeners {
		l := &in.Listeners[i]
		if l.Protocol == "" {
			l.Protocol = ListenerHTTP
		}
		for j := range l.TLS {
			l.TLS[j].CertFile = v.resolvePath(l.TLS[j].CertFile)
			l.TLS[j].KeyFile = v.resolvePath(l.TLS[j].KeyFile)
		}
	}
	for i := range in.Routes {
		r := &in.Routes[i]
		for j := range r.Rules {
			v.ruleDefaults(&r.Rules[j])
		}
	}
}

// ruleDefaults fills a route rule's matches (a prefix "/" match when none), retries, redirect
// status and backend references.
func (v *validator) ruleDefaults(ru *Rule) {
	if len(ru.Matches) == 0 {
		ru.Matches = []Match{{}}
	}
	for k := range ru.Matches {
		m := &ru.Matches[k]
		if m.Path == nil {
			m.Path = &PathMatch{}
		}
		if m.Path.Type == "" {
			m.Path.Type = PathPrefix
		}
		if m.Path.Value == "" && m.Path.Type != PathRegex {
			m.Path.Value = "/"
		}
		for x := range m.Headers {
			if m.Headers[x].Type == "" {
				m.Headers[x].Type = ValueExact
			}
		}
		for x := range m.QueryParams {
			if m.QueryParams[x].Type == "" {
				m.QueryParams[x].Type = ValueExact
			}
		}
	}
	if !v.set(&ru.Retries) {
		ru.Retries = DefaultRetries
	}
	for k := range ru.Filters {
		f := &ru.Filters[k]
		if f.Redirect != nil && !v.set(&f.Redirect.StatusCode) {
			f.Redirect.StatusCode = DefaultRedirectStatus
		}
		if f.Mirror != nil {
			v.backendRefDefaults(f.Mirror)
		}
	}
	for k := range ru.Backends {
		v.backendRefDefaults(&ru.Backends[k])
	}
}

// backendRefDefaults sets weight 1 and, when the service has a single TCP port, that port.
func (v *validator) backendRefDefaults(b *BackendRef) {
	setDefault(v, &b.Weight, DefaultWeight)
	if b.Protocol == "" {
		b.Protocol = BackendHTTP
	}
	if b.Port != 0 || v.set(&b.Port) {
		return
	}
	for i := range v.c.Services {
		s := &v.c.Services[i]
		if s.Name != b.Service {
			continue
		}
		var tcp []uint16
		for _, p := range s.Ports {
			if p.Protocol == ProtocolTCP || p.Protocol == "" {
				tcp = append(tcp, p.Port)
			}
		}
		if len(tcp) == 1 {
			b.Port = tcp[0]
		}
	}
}

// hostnameError says why h is not a valid host name; wildcard allows a leading "*.".
func hostnameError(h string, wildcard bool) string {
	rest := h
	if wildcard && strings.HasPrefix(h, "*.") {
		rest = h[2:]
	}
	if _, err := netip.ParseAddr(rest); err == nil {
		return "must be a host name, not an IP address"
	}
	if len(rest) == 0 || len(rest) > 253 {
		return "must be 1..253 characters"
	}
	for _, label := range strings.Split(rest, ".") {
		if !isDNSLabel(label) {
			if wildcard {
				return "must be lowercase DNS labels separated by dots, optionally with a leading \"*.\""
			}
			return "must be lowercase DNS labels separated by dots"
		}
	}
	return ""
}

// pathError says why p is not a usable exact/prefix path or rewrite value.
func pathError(p string) string {
	switch {
	case !strings.HasPrefix(p, "/"):
		return "must start with '/'"
	case strings.ContainsAny(p, "?# \t\r\n"):
		return "must not contain '?', '#' or white space"
	case strings.Contains(p, "//"), strings.Contains(p, "/./"), strings.Contains(p, "/../"),
		strings.HasSuffix(p, "/."), strings.HasSuffix(p, "/.."):
		return "must be a normalized path (no '//', '/./' or '/../')"
	}
	return ""
}

func (v *validator) validateIngress() {
	c := v.c
	in := c.Ingress
	if len(in.Listeners) == 0 {
		v.errorf(v.at(&in.Listeners, in), "ingress: at least one listener is required")
	}
	if in.ReadHeaderTimeout <= 0 {
		v.errorf(v.at(&in.ReadHeaderTimeout), "ingress.read_header_timeout: must be positive")
	}
	if in.IdleTimeout <= 0 {
		v.errorf(v.at(&in.IdleTimeout), "ingress.idle_timeout: must be positive")
	}
	for _, d := range []struct {
		p   *Duration
		key string
	}{{&in.RequestBodyTimeout, "request_body_timeout"}, {&in.SendTimeout, "send_timeout"}, {&in.UpgradeIdleTimeout, "upgrade_idle_timeout"}} {
		if *d.p <= 0 {
			v.errorf(v.at(d.p), "ingress.%s: must be positive", d.key)
		}
	}
	if in.MaxUpgradedConnections < 1 {
		v.errorf(v.at(&in.MaxUpgradedConnections), "ingress.max_upgraded_connections: must be at least 1")
	}
	if in.MaxHeaderBytes < MinMaxHeaderBytes || in.MaxHeaderBytes > MaxMaxHeaderBytes {
		v.errorf(v.at(&in.MaxHeaderBytes), "ingress.max_header_bytes: %d out of range %d..%d", in.MaxHeaderBytes, MinMaxHeaderBytes, MaxMaxHeaderBytes)
	}
	for i := range in.TrustedProxies {
		v.prefix(&in.TrustedProxies[i], fmt.Sprintf("ingress.trusted_proxies[%d]", i))
	}
	names := map[string]*yaml.Node{}
	type bound struct {
		host, port, what string
		node             *yaml.Node
	}
	var binds []bound
	if c.Admin.Listen != AdminOff {
		if h, p, err := net.SplitHostPort(c.Admin.Listen); err == nil {
			binds = append(binds, bound{h, p, "admin.listen", v.node(&c.Admin.Listen)})
		}
	}
	for i := range in.Listeners {
		l := &in.Listeners[i]
		what := fmt.Sprintf("ingress.listeners[%d]", i)
		v.name(&l.Name, what, l, names)
		if l.Name != "" {
			what = fmt.Sprintf("listener %q", l.Name)
		}
		if l.Address == "" {
			v.errorf(v.at(&l.Address, l), "%s: address (host:port) is required", what)
		} else if err := validListen(l.Address); err != nil {
			v.errorf(v.at(&l.Address), "%s: address %v", what, err)
		} else {
			h, p, _ := net.SplitHostPort(l.Address)
			for _, b := range binds {
				if b.port == p && (b.host == h || anyHost(b.host) || anyHost(h)) {
					where := "(default)"
					if b.node != nil {
						where = fmt.Sprintf("(line %d)", b.node.Line)
					}
					v.errorf(v.at(&l.Address), "%s: address %s conflicts with %s %s", what, l.Address, b.what, where)
					break
				}
			}
			binds = append(binds, bound{h, p, what, v.at(&l.Address)})
		}
		v.oneOf(&l.Protocol, what+": protocol", ListenerHTTP, ListenerHTTPS)
		switch {
		case l.Protocol == ListenerHTTPS && len(l.TLS) == 0:
			v.errorf(v.at(&l.TLS, &l.Protocol, l), "%s: https needs at least one tls certificate", what)
		case l.Protocol == ListenerHTTP && len(l.TLS) > 0:
			v.errorf(v.at(&l.TLS), "%s: tls is only used with protocol https", what)
		}
		v.validateCerts(l, what)
	}
	routeNames := map[string]*yaml.Node{}
	for i := range in.Routes {
		r := &in.Routes[i]
		what := fmt.Sprintf("ingress.routes[%d]", i)
		v.name(&r.Name, what, r, routeNames)
		if r.Name != "" {
			what = fmt.Sprintf("route %q", r.Name)
		}
		for j := range r.Listeners {
			p := &r.Listeners[j]
			switch {
			case in.ListenerByName(*p) == nil:
				v.errorf(v.at(p), "%s: listeners[%d]: no listener named %q", what, j, *p)
			case slices.Index(r.Listeners, *p) != j:
				v.errorf(v.at(p), "%s: listeners[%d]: %q is listed twice", what, j, *p)
			}
		}
		for j := range r.Hostnames {
			p := &r.Hostnames[j]
			if why := hostnameError(*p, true); why != "" {
				v.errorf(v.at(p), "%s: hostnames[%d]: %q %s", what, j, *p, why)
			} else if slices.Index(r.Hostnames, *p) != j {
				v.errorf(v.at(p), "%s: hostnames[%d]: %q is listed twice", what, j, *p)
			}
		}
		if len(r.Rules) == 0 {
			v.errorf(v.at(&r.Rules, r), "%s: at least one rule is required", what)
		}
		for j := range r.Rules {
			v.validateRule(&r.Rules[j], fmt.Sprintf("%s: rules[%d]", what, j))
		}
	}
}

func anyHost(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }

func (v *validator) validateCerts(l *Listener, what string) {
	defaults := 0
	hosts := map[string]*yaml.Node{}
	for j := range l.TLS {
		ct := &l.TLS[j]
		cw := fmt.Sprintf("%s: tls[%d]", what, j)
		if len(ct.Hostnames) == 0 {
			if defaults++; defaults == 2 {
				v.errorf(v.at(ct), "%s: only one certificate may have no hostnames (the default)", cw)
			}
		}
		for k := range ct.Hostnames {
			p := &ct.Hostnames[k]
			if why := hostnameError(*p, true); why != "" {
				v.errorf(v.at(p), "%s.hostnames[%d]: %q %s", cw, k, *p, why)
			} else if first, dup := hosts[*p]; dup {
				v.errorf(v.at(p), "%s.hostnames[%d]: %q already has a certificate (line %d)", cw, k, *p, first.Line)
			} else {
				hosts[*p] = v.at(p)
			}
		}
		switch {
		case ct.CertFile == "":
			v.errorf(v.at(&ct.CertFile, ct), "%s: cert_file is required", cw)
		case ct.KeyFile == "":
			v.errorf(v.at(&ct.KeyFile, ct), "%s: key_file is required", cw)
		default:
			if _, err := ct.Load(); err != nil {
				v.errorf(v.at(&ct.CertFile), "%s: %v", cw, err)
			}
		}
	}
}

func (v *validator) validateRule(ru *Rule, what string) {
	allPrefix := true
	for k := range ru.Matches {
		m := &ru.Matches[k]
		mw := fmt.Sprintf("%s.matches[%d]", what, k)
		if m.Path.Type != PathPrefix {
			allPrefix = false
		}
		v.validatePathMatch(m, mw)
		if m.Method != "" && !slices.Contains(Methods, m.Method) {
			v.errorf(v.at(&m.Method), "%s.method: unknown method %q (want one of: %s)", mw, m.Method, strings.Join(Methods, ", "))
		}
		v.validateValueMatches(m.Headers, mw+".headers", true)
		v.validateValueMatches(m.QueryParams, mw+".query_params", false)
	}
	var redirect, rewrite *yaml.Node
	seenKind := map[string]*yaml.Node{}
	for k := range ru.Filters {
		f := &ru.Filters[k]
		fw := fmt.Sprintf("%s.filters[%d]", what, k)
		var set []string
		if f.RequestHeaders != nil {
			set = append(set, "request_headers")
			v.validateHeaderFilter(f.RequestHeaders, fw+".request_headers")
		}
		if f.ResponseHeaders != nil {
			set = append(set, "response_headers")
			v.validateHeaderFilter(f.ResponseHeaders, fw+".response_headers")
		}
		if f.Redirect != nil {
			set = append(set, "redirect")
			redirect = v.at(f.Redirect, f)
			v.validateRedirect(f.Redirect, fw+".redirect", allPrefix)
		}
		if f.URLRewrite != nil {
			set = append(set, "url_rewrite")
			rewrite = v.at(f.URLRewrite, f)
			v.validateRewrite(f.URLRewrite, fw+".url_rewrite", allPrefix)
		}
		if f.Mirror != nil {
			set = append(set, "mirror")
			v.validateBackendRef(f.Mirror, fw+".mirror")
		}
		switch {
		case len(set) == 0:
			v.errorf(v.at(f), "%s: a filter needs exactly one of request_headers, response_headers, redirect, url_rewrite, mirror", fw)
		case len(set) > 1:
			v.errorf(v.at(f), "%s: a filter has exactly one field, got %s", fw, strings.Join(set, " and "))
		case set[0] != "mirror":
			if first, dup := seenKind[set[0]]; dup {
				v.errorf(v.at(f), "%s: a rule may have only one %s filter (first at line %d)", fw, set[0], first.Line)
			} else {
				seenKind[set[0]] = v.at(f)
			}
		}
	}
	switch {
	case redirect != nil && rewrite != nil:
		v.errorf(rewrite, "%s: redirect and url_rewrite cannot be combined in one rule", what)
	case redirect != nil && len(ru.Backends) > 0:
		v.errorf(v.at(&ru.Backends), "%s: backends are never used by a rule with a redirect filter", what)
	case redirect == nil && len(ru.Backends) == 0:
		v.errorf(v.at(&ru.Backends, ru), "%s: at least one backend (or a redirect filter) is required", what)
	}
	for k := range ru.Backends {
		v.validateBackendRef(&ru.Backends[k], fmt.Sprintf("%s.backends[%d]", what, k))
	}
	if ru.Retries < 0 || ru.Retries > MaxRetries {
		v.errorf(v.at(&ru.Retries), "%s.retries: %d out of range 0..%d", what, ru.Retries, MaxRetries)
	}
	if ru.Timeout > 0 && ru.BackendTimeout > ru.Timeout {
		v.errorf(v.at(&ru.BackendTimeout), "%s.backend_timeout: %s is longer than the request timeout %s", what, ru.BackendTimeout, ru.Timeout)
	}
}

func (v *validator) validatePathMatch(m *Match, mw string) {
	p := m.Path
	v.oneOf(&p.Type, mw+".path.type", PathExact, PathPrefix, PathRegex)
	switch p.Type {
	case PathExact, PathPrefix:
		if why := pathError(p.Value); why != "" {
			v.errorf(v.at(&p.Value, p, m), "%s.path.value: %q %s", mw, p.Value, why)
		}
	case PathRegex:
		if p.Value == "" {
			v.errorf(v.at(&p.Value, p), "%s.path.value: a regex is required", mw)
		} else if _, err := p.Regexp(); err != nil {
			v.errorf(v.at(&p.Value), "%s.path.value: %v", mw, err)
		}
	}
}

func (v *validator) validateValueMatches(ms []ValueMatch, what string, header bool) {
	seen := map[string]*yaml.Node{}
	for i := range ms {
		m := &ms[i]
		w := fmt.Sprintf("%s[%d]", what, i)
		key := m.Name
		switch {
		case m.Name == "":
			v.errorf(v.at(&m.Name, m), "%s.name: required", w)
		case header && !httpguts.ValidHeaderFieldName(m.Name):
			v.errorf(v.at(&m.Name), "%s.name: %q is not a valid header name", w, m.Name)
		default:
			if header {
				key = strings.ToLower(key)
			}
			if first, dup := seen[key]; dup {
				v.errorf(v.at(&m.Name), "%s.name: %q is matched twice (first at line %d)", w, m.Name, first.Line)
			} else {
				seen[key] = v.at(&m.Name)
			}
		}
		v.oneOf(&m.Type, w+".type", ValueExact, ValueRegex)
		if m.Type == ValueRegex {
			if _, err := m.Regexp(); err != nil {
				v.errorf(v.at(&m.Value, m), "%s.value: %v", w, err)
			}
		}
	}
}

func (v *validator) validateHeaderFilter(h *HeaderFilter, what string) {
	if len(h.Set) == 0 && len(h.Add) == 0 && len(h.Remove) == 0 {
		v.errorf(v.at(h), "%s: needs at least one of set, add, remove", what)
	}
	seen := map[string]string{}
	check := func(name, value, kind string, n *yaml.Node) {
		switch {
		case !httpguts.ValidHeaderFieldName(name):
			v.errorf(n, "%s.%s: %q is not a valid header name", what, kind, name)
		case !httpguts.ValidHeaderFieldValue(value):
			v.errorf(n, "%s.%s: value of %q is not a valid header value", what, kind, name)
		default:
			k := strings.ToLower(name)
			if prev, dup := seen[k]; dup {
				v.errorf(n, "%s.%s: header %q is already in %s", what, kind, name, prev)
			} else {
				seen[k] = kind
			}
		}
	}
	for _, name := range sortedKeys(h.Set) {
		check(name, h.Set[name], "set", v.at(&h.Set, h))
	}
	for _, name := range sortedKeys(h.Add) {
		check(name, h.Add[name], "add", v.at(&h.Add, h))
	}
	for i := range h.Remove {
		check(h.Remove[i], "", "remove", v.at(&h.Remove[i]))
	}
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func (v *validator) validatePathRewrite(p *PathRewrite, what string, allPrefix bool) {
	v.oneOf(&p.Type, what+".type", RewriteFull, RewritePrefix)
	if p.Type == RewritePrefix && !allPrefix {
		v.errorf(v.at(&p.Type), "%s.type: prefix rewrite needs every match of the rule to be a prefix path match", what)
	}
	if why := pathError(p.Value); why != "" {
		v.errorf(v.at(&p.Value, p), "%s.value: %q %s", what, p.Value, why)
	}
}

func (v *validator) validateRedirect(r *RedirectFilter, what string, allPrefix bool) {
	if r.Scheme != "" {
		v.oneOf(&r.Scheme, what+".scheme", "http", "https")
	}
	if r.Hostname != "" {
		if why := hostnameError(r.Hostname, false); why != "" {
			v.errorf(v.at(&r.Hostname), "%s.hostname: %q %s", what, r.Hostname, why)
		}
	}
	if r.Path != nil {
		v.validatePathRewrite(r.Path, what+".path", allPrefix)
	}
	switch r.StatusCode {
	case 301, 302, 307, 308:
	default:
		v.errorf(v.at(&r.StatusCode), "%s.status_code: %d is not a redirect status (want 301, 302, 307 or 308)", what, r.StatusCode)
	}
}

func (v *validator) validateRewrite(r *RewriteFilter, what string, allPrefix bool) {
	if r.Hostname == "" && r.Path == nil {
		v.errorf(v.at(r), "%s: needs hostname or path", what)
	}
	if r.Hostname != "" {
		if why := hostnameError(r.Hostname, false); why != "" {
			v.errorf(v.at(&r.Hostname), "%s.hostname: %q %s", what, r.Hostname, why)
		}
	}
	if r.Path != nil {
		v.validatePathRewrite(r.Path, what+".path", allPrefix)
	}
}

func (v *validator) validateBackendRef(b *BackendRef, what string) {
	if w := b.Weight; w < 0 || w > MaxWeight {
		v.errorf(v.at(&b.Weight), "%s.weight: %d out of range 0..%d", what, w, MaxWeight)
	}
	v.oneOf(&b.Protocol, what+".protocol", BackendHTTP, BackendH2C)
	if b.Service == "" {
		v.errorf(v.at(&b.Service, b), "%s.service: required", what)
		return
	}
	var svc *Service
	for i := range v.c.Services {
		if v.c.Services[i].Name == b.Service {
			svc = &v.c.Services[i]
		}
	}
	if svc == nil {
		v.errorf(v.at(&b.Service), "%s.service: no service named %q", what, b.Service)
		return
	}
	if b.Port == 0 {
		v.errorf(v.at(&b.Port, b), "%s.port: required unless service %q has exactly one TCP port", what, b.Service)
		return
	}
	if svc.Port(ProtocolTCP, b.Port) == nil {
		v.errorf(v.at(&b.Port), "%s.port: service %q has no TCP port %d", what, b.Service, b.Port)
	}
}
