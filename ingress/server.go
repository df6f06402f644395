// Package ingress is edgegate's L7 HTTP(S) router: listeners (plain HTTP with h2c, HTTPS with
// per-SNI certificates, HTTP/2 via ALPN), routes modelled on Gateway API HTTPRoute, filters, and a
// reverse proxy to the backends of the services section, balanced by the same backend model (lb)
// as the L4 data path.
//
// Concurrency: the route table, certificates and upstreams of a listener form an immutable
// snapshot behind an atomic pointer; requests read it without locks and Reload swaps it.
package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgegate/edgegate/config"
)

// Options are the ingress's collaborators.
type Options struct {
	Logger     *slog.Logger          // nil: slog.Default()
	Registerer prometheus.Registerer // nil: no metrics
}

// Defaults for zero values in config.Ingress (the config package applies the same ones; they are
// repeated here so a Config built in code works too).
const (
	defaultReadHeaderTimeout = 10 * time.Second
	defaultIdleTimeout       = 120 * time.Second
	defaultMaxHeaderBytes    = 64 << 10
	defaultDrainTimeout      = 10 * time.Second
)

// Server is the L7 ingress: per configured listener an HTTP/1.x connection loop (plain listeners,
// see h1Server) and an http.Server (TLS, HTTP/2, h2c), sharing route tables,
// transports and metrics.
type Server struct {
	log       *slog.Logger
	metrics   *metrics
	h1, h2c   *http.Transport
	up        *h1Client // fast path for bodyless idempotent requests to HTTP/1.1 backends
	mirrorSem chan struct{}
	upgrades  sync.WaitGroup // hijacked (Upgrade) connections in flight
	tunnels   atomic.Int64   // Upgrade requests in flight (bounded by max_upgraded_connections)

	mu        sync.Mutex // serialises Start, Reload and Shutdown
	listeners map[string]*listener
	adopted   map[string]*os.File    // Adopt: sockets to serve instead of binding, by address
	draining  map[*listener]struct{} // removed or changed by a reload, still draining
	drains    sync.WaitGroup         // their drain goroutines
	lim       limits
	started   bool
	closed    bool
}

// limits are the listener settings that apply at listener creation.
type limits struct {
	readHeader, idle, drain time.Duration
	maxHeader               int
	body, send              time.Duration // request_body_timeout, send_timeout
	tunnelIdle              time.Duration // upgrade_idle_timeout
	maxTunnels              int64         // max_upgraded_connections
}

// Limits of the ingress that are not configuration keys.
const (
	// bodyDrainTime bounds the drain of a request body the handler left unread, after the
	// response was sent (the drain keeps the connection for another request).
	bodyDrainTime = time.Second
	// TCP keep-alive of client sockets: a client gone without FIN or RST is noticed after
	// keepAliveIdle + keepAliveCount*keepAliveInterval (2 minutes).
	keepAliveIdle     = 60 * time.Second
	keepAliveInterval = 15 * time.Second
	keepAliveCount    = 4
)

// listener is one configured listener and its live snapshot.
type listener struct {
	name  string
	addr  string // configured host:port
	tls   bool
	port  uint16 // actual port once listening (redirects default to it)
	state atomic.Pointer[lstate]
	certs atomic.Pointer[certSet]

	lim        limits         // as when the listener was opened
	srv        *http.Server   // TLS connections, and h2c ones handed over by h1 on plain listeners
	h1         *h1Server      // plain listeners: HTTP/1.x connections
	ln         *ownedListener // closed only by the listener (see ownedListener)
	serving    sync.WaitGroup // the accept loops (h1, net/http) until they have returned
	baseCtx    context.Context
	baseCancel context.CancelFunc // cancels every request context (ends tunnels) after the drain

	// TLS listeners (net/http): while draining, HTTP/1 responses say Connection: close, and
	// idle connections get idleGrace before net/http's Shutdown closes them (see tlsDrain).
	draining atomic.Bool
	connMu   sync.Mutex
	h1conns  map[net.Conn]h1mark // HTTP/1 connections after their first request
}

// h1mark is a TLS listener's HTTP/1 connection as tlsDrain sees it.
type h1mark struct {
	active bool      // serving a request
	idleAt time.Time // when it last became idle
}

// lstate is the immutable per-listener snapshot the request path reads.
type lstate struct {
	table     *table
	ups       Upstreams
	active    ActiveUpstreams // ups when it implements it, else nil
	accessLog bool
	notFound  *routeMetrics
	trusted   []netip.Prefix // ingress.trusted_proxies
}

// New compiles cfg.Ingress (routes, filters, certificates) without listening yet.
func New(cfg *config.Config, ups Upstreams, opt Options) (*Server, error) {
	if cfg == nil || cfg.Ingress == nil {
		return nil, errors.New("ingress: config has no ingress section")
	}
	if ups == nil {
		return nil, errors.New("ingress: nil Upstreams")
	}
	s := &Server{
		log:       opt.Logger,
		mirrorSem: make(chan struct{}, maxMirrors),
		listeners: map[string]*listener{},
		draining:  map[*listener]struct{}{},
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	var err error
	if s.metrics, err = newMetrics(opt.Registerer); err != nil {
		return nil, fmt.Errorf("ingress: metrics: %w", err)
	}
	s.h1, s.h2c = newTransports()
	s.up = newH1Client()
	next, err := s.compile(cfg, ups)
	if err != nil {
		return nil, err
	}
	s.lim = limitsOf(cfg.Ingress)
	for _, nl := range next {
		s.listeners[nl.name] = nl
	}
	return s, nil
}

// newTransports returns the HTTP/1.1 and h2c transports to backends, tuned for a proxy: many idle
// connections per backend (a 64-connection load must not churn connections), no transparent
// compression (bodies pass through untouched), no HTTP/2 upgrade attempts on h1 backends.
func newTransports() (h1, h2c *http.Transport) {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	h1 = &http.Transport{
		DialContext:            dialer.DialContext,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		MaxIdleConns:           8192,
		MaxIdleConnsPerHost:    1024,
		IdleConnTimeout:        90 * time.Second,
		DisableCompression:     true,
		ForceAttemptHTTP2:      false,
		ExpectContinueTimeout:  time.Second,
		ReadBufferSize:         16 << 10,
		WriteBufferSize:        16 << 10,
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	h2c = &http.Transport{
		DialContext:            dialer.DialContext,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		MaxIdleConns:           1024,
		IdleConnTimeout:        90 * time.Second,
		DisableCompression:     true,
		Protocols:              &p,
	}
	return h1, h2c
}

func limitsOf(ing *config.Ingress) limits {
	l := limits{
		readHeader: time.Duration(ing.ReadHeaderTimeout),
		idle:       time.Duration(ing.IdleTimeout),
		drain:      time.Duration(ing.DrainTimeout),
		maxHeader:  ing.MaxHeaderBytes,
	}
	if l.readHeader <= 0 {
		l.readHeader = defaultReadHeaderTimeout
	}
	if l.idle <= 0 {
		l.idle = defaultIdleTimeout
	}
	if l.drain <= 0 {
		l.drain = defaultDrainTimeout
	}
	if l.maxHeader <= 0 {
		l.maxHeader = defaultMaxHeaderBytes
	}
	l.body = orDefault(time.Duration(ing.RequestBodyTimeout), config.DefaultRequestBodyTimeout.D())
	l.send = orDefault(time.Duration(ing.SendTimeout), config.DefaultSendTimeout.D())
	l.tunnelIdle = orDefault(time.Duration(ing.UpgradeIdleTimeout), config.DefaultUpgradeIdleTimeout.D())
	l.maxTunnels = int64(orDefault(ing.MaxUpgradedConnections, config.DefaultMaxUpgradedConnections))
	return l
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// compile builds a listener (not yet listening) with its snapshot for each configured listener.
func (s *Server) compile(cfg *config.Config, ups Upstreams) ([]*listener, error) {
	ing := cfg.Ingress
	rules := make([][]*rule, len(ing.Routes))
	for ri := range ing.Routes {
		rt := &ing.Routes[ri]
		for ki := range rt.Rules {
			r, err := compileRule(rt, &rt.Rules[ki], s.metrics)
			if err != nil {
				return nil, fmt.Errorf("ingress: route %q rule %d: %w", rt.Name, ki, err)
			}
			rules[ri] = append(rules[ri], r)
		}
	}
	accessLog := ing.AccessLog
	seen := map[string]bool{}
	var out []*listener
	for i := range ing.Listeners {
		cl := &ing.Listeners[i]
		name := listenerName(cl)
		if seen[name] {
			return nil, fmt.Errorf("ingress: duplicate listener %q", name)
		}
		seen[name] = true
		t, err := compileTable(ing, name, rules)
		if err != nil {
			return nil, fmt.Errorf("ingress: listener %q: %w", name, err)
		}
		l := &listener{name: name, addr: cl.Address}
		switch cl.Protocol {
		case "", "http":
		case "https":
			l.tls = true
			cs, err := loadCerts(cl.TLS)
			if err != nil {
				return nil, fmt.Errorf("ingress: listener %q: %w", name, err)
			}
			l.certs.Store(cs)
		default:
			return nil, fmt.Errorf("ingress: listener %q: unknown protocol %q", name, cl.Protocol)
		}
		active, _ := ups.(ActiveUpstreams)
		l.state.Store(&lstate{table: t, ups: ups, active: active, accessLog: accessLog, notFound: s.metrics.route(""),
			trusted: ing.TrustedProxies})
		out = append(out, l)
	}
	return out, nil
}

func listenerName(cl *config.Listener) string {
	if cl.Name != "" {
		return cl.Name
	}
	return cl.Address
}

// Start listens on every listener (kernel sockets) and serves them.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("ingress: server shut down")
	}
	if s.started {
		return errors.New("ingress: already started")
	}
	defer s.closeAdopted()
	var opened []*listener
	for _, l := range s.listeners {
		if err := s.listen(l); err != nil {
			for _, o := range opened {
				o.ln.Close()
			}
			return err
		}
		opened = append(opened, l)
	}
	for _, l := range opened {
		s.serveListener(l)
	}
	s.started = true
	return nil
}

// closeAdopted closes the adopted sockets no listener took (Start).
func (s *Server) closeAdopted() {
	for addr, f := range s.adopted {
		s.log.Info("ingress: closing an adopted socket no listener uses", "addr", addr)
		f.Close()
	}
	s.adopted = nil
}

func (s *Server) listen(l *listener) error {
	ln, err := s.socket(l)
	if err != nil {
		return fmt.Errorf("ingress: listener %q: %w", l.name, err)
	}
	l.ln = &ownedListener{Listener: ln}
	if ta, ok := ln.Addr().(*net.TCPAddr); ok {
		l.port = uint16(ta.Port)
	}
	l.baseCtx, l.baseCancel = context.WithCancel(context.Background())
	l.lim = s.lim
	var p http.Protocols
	p.SetHTTP1(true)
	if l.tls {
		p.SetHTTP2(true)
	} else {
		p.SetUnencryptedHTTP2(true) // h2c with prior knowledge (gRPC without TLS)
	}
	l.srv = &http.Server{
		Handler:           &handler{s: s, l: l},
		ReadHeaderTimeout: s.lim.readHeader,
		IdleTimeout:       s.lim.idle,
		MaxHeaderBytes:    s.lim.maxHeader,
		Protocols:         &p,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return l.baseCtx },
		HTTP2:             &http.HTTP2Config{MaxReadFrameSize: h2MaxReadFrameSize}, // h2c (TLS: configureH2)
	}
	if l.tls {
		l.h1conns = map[net.Conn]h1mark{}
		l.srv.ConnState = l.trackH1
		l.srv.TLSConfig = &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
				return l.certs.Load().get(hello.ServerName)
			},
		}
		if err := configureH2(l.srv); err != nil {
			ln.Close()
			return fmt.Errorf("ingress: listener %q: http/2: %w", l.name, err)
		}
	}
	return nil
}

// socket returns l's listening socket: the one adopted for its address, else a new one.
func (s *Server) socket(l *listener) (net.Listener, error) {
	if f, ok := s.adopted[l.addr]; ok {
		delete(s.adopted, l.addr)
		defer f.Close()
		ln, err := net.FileListener(f)
		if err != nil {
			return nil, fmt.Errorf("adopted socket: %w", err)
		}
		if _, ok := ln.(*net.TCPListener); !ok {
			ln.Close()
			return nil, fmt.Errorf("adopted socket is %T, not a TCP listener", ln)
		}
		return ln, nil
	}
	// TCP keep-alive is set on the listening socket, whose options Linux copies to every
	// accepted one; KeepAlive -1 keeps Go from setting it again per connection (four setsockopt
	// calls each). An adopted socket has them from the process that opened it.
	lc := net.ListenConfig{KeepAlive: -1, Control: keepAliveControl}
	return lc.Listen(context.Background(), "tcp", l.addr)
}

// Adopt gives s listening sockets to serve instead of binding (hand-over upgrade: the sockets of
// the process being replaced, so no connection is refused while it hands over), keyed by the
// configured listener address they were opened for. s owns the files from now on: Start serves
// those whose address a listener has and closes the rest. Call before Start.
func (s *Server) Adopt(files map[string]*os.File) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.adopted = files
}

// ListenerFiles returns duplicates of the listening sockets being served (the caller closes
// them), with the configured address of each: what a successor Adopts.
func (s *Server) ListenerFiles() (addrs []string, files []*os.File, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		if l.ln == nil || l.ln.closed.Load() {
			continue
		}
		tl, ok := l.ln.Listener.(*net.TCPListener)
		if !ok {
			continue
		}
		f, ferr := tl.File()
		if ferr != nil {
			err = errors.Join(err, fmt.Errorf("ingress: listener %q: %w", l.name, ferr))
			continue
		}
		addrs, files = append(addrs, l.addr), append(files, f)
	}
	return addrs, files, err
}

func (s *Server) serveListener(l *listener) {
	s.log.Info("ingress listening", "listener", l.name, "addr", l.ln.Addr().String(), "tls", l.tls)
	// An accept loop's error is reported unless the loop ended because the listener was shut
	// down (ErrServerClosed) or closed its socket (see ownedListener).
	report := func(err error) {
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !l.ln.stopped(err) {
			s.log.Error("ingress listener stopped", "listener", l.name, "err", err)
		}
	}
	if l.tls {
		l.serving.Go(func() { report(l.srv.ServeTLS(tlsListener{l.ln}, "", "")) })
		return
	}
	h2 := newHandoffListener(l.ln.Addr())
	l.h1 = newH1Server(l.srv.Handler, s.log, s.lim, l.baseCtx, h2)
	l.serving.Go(func() { report(l.srv.Serve(h2)) }) // h2c connections handed over by h1
	l.serving.Go(func() { report(l.h1.serve(l.ln)) })
}

// shutdown stops accepting, closes idle connections and waits for active ones until ctx ends,
// then closes the rest; it returns ctx's error when it had to. It returns once the accept loops
// have (so nothing they log comes after it). Safe to call more than once.
func (l *listener) shutdown(ctx context.Context) error {
	lnErr := l.ln.Close()
	if l.tls {
		l.tlsDrain(ctx)
	}
	var h1err error
	var wg sync.WaitGroup
	if l.h1 != nil {
		wg.Add(1)
		go func() { defer wg.Done(); h1err = l.h1.shutdown(ctx) }()
	}
	err := l.srv.Shutdown(ctx)
	if err != nil {
		l.srv.Close()
	}
	wg.Wait()
	l.serving.Wait()
	return errors.Join(lnErr, err, h1err)
}

// trackH1 follows a TLS listener's HTTP/1 connections (http.Server.ConnState); HTTP/2 ones end
// with GOAWAY in Shutdown and need no tracking.
func (l *listener) trackH1(c net.Conn, st http.ConnState) {
	l.connMu.Lock()
	defer l.connMu.Unlock()
	switch st {
	case http.StateActive, http.StateIdle:
		if _, h2 := c.(*h2Guard); h2 { // HTTP/2 (configureH2 wraps its connections)
			return
		}
		if tc, ok := c.(*tls.Conn); ok && tc.ConnectionState().NegotiatedProtocol == "h2" {
			return
		}
		m := h1mark{active: st == http.StateActive}
		if !m.active {
			m.idleAt = time.Now()
		}
		l.h1conns[c] = m
	case http.StateClosed, http.StateHijacked:
		delete(l.h1conns, c)
	}
}

// tlsDrain is the drain's first step on a TLS listener: net/http's Shutdown closes idle HTTP/1
// connections at once, under a busy keep-alive client's next request, and a response begun
// before it without Connection: close. From now on responses say Connection: close (handler),
// and it waits until every HTTP/1 connection left has been idle for idleGrace (a request arriving
// meanwhile is served and its connection closed), or ctx ends; Shutdown then closes the rest.
func (l *listener) tlsDrain(ctx context.Context) {
	l.draining.Store(true)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		busy := false
		l.connMu.Lock()
		for _, m := range l.h1conns {
			busy = busy || m.active || time.Since(m.idleAt) < idleGrace
		}
		l.connMu.Unlock()
		if !busy {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Addrs returns the actual listening addresses (port 0 resolved), in no particular order; empty
// before Start.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Addr
	for _, l := range s.listeners {
		if l.ln != nil {
			out = append(out, l.ln.Addr())
		}
	}
	return out
}

// Addr returns the listening address of the named listener (name, or address when unnamed).
func (s *Server) Addr(name string) (net.Addr, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.listeners[name]
	if !ok || l.ln == nil {
		return nil, false
	}
	return l.ln.Addr(), true
}

// Check compiles cfg's ingress (routes, filters, certificates) without applying it: Reload
// would fail with this error before changing anything. A reload spanning L4 and L7 checks
// first, so a bad ingress changes nothing anywhere.
func (s *Server) Check(cfg *config.Config, ups Upstreams) error {
	if cfg == nil || cfg.Ingress == nil {
		return errors.New("ingress: config has no ingress section")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.compile(cfg, ups)
	return err
}

// Reload swaps every listener's route table, certificates and upstreams atomically (requests in
// flight finish on the snapshot they started with). Listeners that are new or whose address or
// protocol changed are opened; removed or changed ones stop accepting at once and drain in the
// background for drain_timeout. Limits (timeouts, header size) apply to listeners opened afterwards.
// A config that does not compile changes nothing; a listener that cannot be opened is reported
// while the rest of the new config takes effect.
func (s *Server) Reload(cfg *config.Config, ups Upstreams) error {
	if cfg == nil || cfg.Ingress == nil {
		return errors.New("ingress: config has no ingress section")
	}
	if ups == nil {
		return errors.New("ingress: nil Upstreams")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("ingress: server shut down")
	}
	next, err := s.compile(cfg, ups)
	if err != nil {
		return err
	}
	keep := map[string]*listener{}
	var fresh []*listener
	for _, nl := range next {
		if old, ok := s.listeners[nl.name]; ok && old.addr == nl.addr && old.tls == nl.tls {
			keep[nl.name] = old
			old.certs.Store(nl.certs.Load())
			old.state.Store(nl.state.Load())
			continue
		}
		fresh = append(fresh, nl)
	}
	// Stop removed and changed listeners first: a changed one may reuse its address.
	drain := s.lim.drain
	for name, old := range s.listeners {
		if keep[name] == old {
			continue
		}
		delete(s.listeners, name)
		if old.ln == nil {
			continue
		}
		if err := old.ln.Close(); err != nil { // stop accepting now; the drain's close is a no-op
			s.log.Warn("ingress reload: closing listener", "listener", old.name, "err", err)
		}
		s.draining[old] = struct{}{}
		s.drains.Add(1)
		go s.drainListener(old, drain)
	}
	s.lim = limitsOf(cfg.Ingress)
	var errs []error
	for _, nl := range fresh {
		if s.started {
			if err := s.listen(nl); err != nil {
				// The rest of the new config is live; this listener is not (its address may be
				// taken). Reported so the caller can retry with a fixed config.
				errs = append(errs, fmt.Errorf("ingress reload: %w", err))
				continue
			}
			s.serveListener(nl)
		}
		s.listeners[nl.name] = nl
	}
	for name, l := range keep {
		s.listeners[name] = l
	}
	return errors.Join(errs...)
}

// drainListener drains a listener a reload removed or changed, for at most d (Shutdown cuts it
// short).
func (s *Server) drainListener(l *listener, d time.Duration) {
	defer s.drains.Done()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := l.shutdown(ctx); err != nil {
		s.log.Warn("ingress reload: listener drain incomplete", "listener", l.name, "err", err)
	}
	l.baseCancel()
	s.mu.Lock()
	delete(s.draining, l)
	s.mu.Unlock()
}

// DrainTimeout is the configured drain_timeout (default 10s): the bound a caller should give
// Shutdown's context.
func (s *Server) DrainTimeout() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lim.drain
}

// Shutdown stops accepting, lets requests in flight (and Upgrade tunnels) finish until ctx ends,
// then closes what is left, listeners still draining after a reload included; when it returns,
// every listener's goroutines have.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	ls := make([]*listener, 0, len(s.listeners))
	for _, l := range s.listeners {
		if l.srv != nil {
			ls = append(ls, l)
		}
	}
	for l := range s.draining { // shut down twice (here and by the drain): the first to end wins
		ls = append(ls, l)
	}
	s.mu.Unlock()

	var wg sync.WaitGroup
	errs := make([]error, len(ls))
	for i, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.shutdown(ctx); err != nil {
				errs[i] = fmt.Errorf("ingress: listener %q: %w", l.name, err)
			}
		}()
	}
	wg.Wait()
	s.drains.Wait() // the drains' shutdowns end with the ones above
	tunnels := make(chan struct{})
	go func() { s.upgrades.Wait(); close(tunnels) }()
	select {
	case <-tunnels:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("ingress: upgraded connections still open: %w", ctx.Err()))
	}
	for _, l := range ls {
		l.baseCancel()
	}
	s.h1.CloseIdleConnections()
	s.h2c.CloseIdleConnections()
	s.up.closeIdle(true)
	return errors.Join(errs...)
}

// keepAliveControl turns TCP keep-alive on for a listening socket (see keepAliveIdle).
func keepAliveControl(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		for _, o := range [...]struct{ level, opt, v int }{
			{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
			{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, int(keepAliveIdle / time.Second)},
			{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, int(keepAliveInterval / time.Second)},
			{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, keepAliveCount},
		} {
			if serr == nil {
				serr = syscall.SetsockoptInt(int(fd), o.level, o.opt, o.v)
			}
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("tcp keep-alive: %w", err)
	}
	return nil
}
