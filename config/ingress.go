package config

import "net/netip"

// The ingress section: an HTTP(S) router modelled on Gateway API HTTPRoute. Types only here;
// validation of this section lives beside them in ingress_validate.go.

// Ingress is the L7 router configuration.
type Ingress struct {
	Listeners []Listener  `yaml:"listeners"`
	Routes    []HTTPRoute `yaml:"routes"`
	// Limits and timeouts that apply to every listener.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"` // default 10s (slowloris)
	IdleTimeout       Duration `yaml:"idle_timeout"`        // default 120s
	MaxHeaderBytes    int      `yaml:"max_header_bytes"`    // default 64 KiB
	DrainTimeout      Duration `yaml:"drain_timeout"`       // default 10s on shutdown
	AccessLog         bool     `yaml:"access_log"`          // default true
	// RequestBodyTimeout bounds the wait for each read of a request body (nginx's
	// client_body_timeout); a client that stops sending gets 408 and is disconnected.
	RequestBodyTimeout Duration `yaml:"request_body_timeout"` // default 60s
	// SendTimeout bounds each write to a client (nginx's send_timeout): a client that stops reading
	// is disconnected.
	SendTimeout Duration `yaml:"send_timeout"` // default 60s
	// UpgradeIdleTimeout ends an Upgrade tunnel (WebSocket) with no byte in either direction for
	// this long (HAProxy's timeout tunnel).
	UpgradeIdleTimeout Duration `yaml:"upgrade_idle_timeout"` // default 1h
	// MaxUpgradedConnections bounds the Upgrade tunnels open at once; more get 503.
	MaxUpgradedConnections int `yaml:"max_upgraded_connections"` // default 10000
	// TrustedProxies are the client addresses whose X-Forwarded-*, X-Real-IP and Forwarded headers
	// are kept (X-Forwarded-For then gets the client address appended); from any other client they
	// are replaced. Default none: the ingress is the edge.
	TrustedProxies []netip.Prefix `yaml:"trusted_proxies"`
}

// Listener is one address:port, plain HTTP or HTTPS.
type Listener struct {
	Name     string        `yaml:"name"`
	Address  string        `yaml:"address"`  // host:port
	Protocol string        `yaml:"protocol"` // http (default) or https
	TLS      []Certificate `yaml:"tls"`      // https: one per host name set; the first is the default
}

// Certificate is a PEM certificate/key pair served for some SNI host names.
type Certificate struct {
	Hostnames []string `yaml:"hostnames"` // exact or *.suffix; empty: default certificate
	CertFile  string   `yaml:"cert_file"`
	KeyFile   string   `yaml:"key_file"`
}

// HTTPRoute routes requests by host name and matches to weighted backends.
type HTTPRoute struct {
	Name      string   `yaml:"name"`
	Listeners []string `yaml:"listeners"` // empty: all
	Hostnames []string `yaml:"hostnames"` // empty: any host
	Rules     []Rule   `yaml:"rules"`
}

// Rule is one HTTPRoute rule: any of Matches selects it.
type Rule struct {
	Matches        []Match      `yaml:"matches"` // empty: prefix "/"
	Filters        []Filter     `yaml:"filters"`
	Backends       []BackendRef `yaml:"backends"`
	Timeout        Duration     `yaml:"timeout"`         // whole request, 504 on expiry; 0: none
	BackendTimeout Duration     `yaml:"backend_timeout"` // per upstream attempt
	Retries        int          `yaml:"retries"`         // extra attempts, default 1, max 5
}

// Match is one HTTPRouteMatch: all given conditions must hold.
type Match struct {
	Path        *PathMatch   `yaml:"path"`
	Method      string       `yaml:"method"`
	Headers     []ValueMatch `yaml:"headers"`
	QueryParams []ValueMatch `yaml:"query_params"`
}

// PathMatch: type exact, prefix (default, element-wise) or regex.
type PathMatch struct {
	Type  string `yaml:"type"`
	Value string `yaml:"value"`
}

// ValueMatch matches a header or query parameter: type exact (default) or regex.
type ValueMatch struct {
	Name  string `yaml:"name"`
	Type  string `yaml:"type"`
	Value string `yaml:"value"`
}

// Filter is one HTTPRoute filter; exactly one field is set.
type Filter struct {
	RequestHeaders  *HeaderFilter   `yaml:"request_headers"`
	ResponseHeaders *HeaderFilter   `yaml:"response_headers"`
	Redirect        *RedirectFilter `yaml:"redirect"`
	URLRewrite      *RewriteFilter  `yaml:"url_rewrite"`
	Mirror          *BackendRef     `yaml:"mirror"`
}

// HeaderFilter sets, adds and removes headers.
type HeaderFilter struct {
	Set    map[string]string `yaml:"set"`
	Add    map[string]string `yaml:"add"`
	Remove []string          `yaml:"remove"`
}

// RedirectFilter answers with a redirect instead of proxying.
type RedirectFilter struct {
	Scheme     string       `yaml:"scheme"`
	Hostname   string       `yaml:"hostname"`
	Port       uint16       `yaml:"port"`
	Path       *PathRewrite `yaml:"path"`
	StatusCode int          `yaml:"status_code"` // 301, 302 (default), 307, 308
}

// RewriteFilter rewrites the request before proxying.
type RewriteFilter struct {
	Hostname string       `yaml:"hostname"`
	Path     *PathRewrite `yaml:"path"`
}

// PathRewrite: type full (replace_full_path) or prefix (replace_prefix_match).
type PathRewrite struct {
	Type  string `yaml:"type"`
	Value string `yaml:"value"`
}

// BackendRef points at a port of a service in the services section.
type BackendRef struct {
	Service string `yaml:"service"`
	Port    uint16 `yaml:"port"`   // the service port (its target_port is dialled on the backend)
	Weight  int    `yaml:"weight"` // default 1 (DefaultWeight); 0: no requests
	// Protocol spoken to the backend: http (default, HTTP/1.1) or h2c (HTTP/2 with prior
	// knowledge, needed for gRPC backends without TLS).
	Protocol string `yaml:"protocol"`
}
