package ingress

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Upstreams resolves a service port to a backend address for one request (shared L4/L7 backend
// model: same schedulers, same health state). Implementations must be safe for concurrent use and
// should not allocate: Pick runs once per request (more on retries).
type Upstreams interface {
	Pick(service string, port uint16, client netip.Addr) (netip.AddrPort, bool)
}

// The proxy below is written against http.Transport directly instead of httputil.ReverseProxy
// (which serves only Upgrade requests here, see proxyUpgrade). Divergences, and why:
//   - retries: ReverseProxy has no retry loop; we re-pick a backend (avoiding the failed one) on
//     connection failure, and on 502/503 for idempotent requests, bounded by the rule;
//   - the inbound header map is edited in place to form the outbound one (ReverseProxy clones it):
//     the handler owns the request and net/http does not read these headers after the handler
//     starts, so the clone is a pure cost (about a dozen allocations per request);
//   - one pooled 32 KiB copy buffer, and flushes only for responses of unknown length (streaming,
//     gRPC, server-sent events) instead of a flush interval.

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Hop-by-hop headers (RFC 9110 7.6.1 plus the legacy ones ReverseProxy removes).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

var (
	protoHTTP    = []string{"http"}
	protoHTTPS   = []string{"https"}
	emptyUA      = []string{""} // present but empty: Transport then sends no User-Agent of its own
	teTrailers   = []string{"trailers"}
	errNoBackend = errors.New("no backend available")
)

// removeHopByHop deletes hop-by-hop headers, including those named in Connection, keeping
// "TE: trailers" on requests (gRPC needs it end to end).
func removeHopByHop(h http.Header, request bool) {
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = textTrim(tok); tok != "" {
				delete(h, http.CanonicalHeaderKey(tok))
			}
		}
	}
	keepTE := request && hasToken(h["Te"], "trailers")
	for _, k := range hopHeaders {
		delete(h, k)
	}
	if keepTE {
		h["Te"] = teTrailers
	}
}

// stripHopByHop removes the hop-by-hop headers of an inbound request and reports whether it asks
// for a protocol upgrade; an upgrade keeps "Connection: Upgrade" and its Upgrade header, which the
// upgrade proxy forwards.
func stripHopByHop(h http.Header) (upgrade bool) {
	upgrade = isUpgrade(h)
	var up []string
	if upgrade {
		up = h["Upgrade"]
	}
	removeHopByHop(h, true)
	if upgrade {
		h["Connection"] = connUpgrade
		h["Upgrade"] = up
	}
	return upgrade
}

var connUpgrade = []string{"Upgrade"}

func textTrim(s string) string { return strings.Trim(s, " \t") }

func hasToken(vs []string, token string) bool {
	for _, v := range vs {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textTrim(tok), token) {
				return true
			}
		}
	}
	return false
}

func isUpgrade(h http.Header) bool {
	return len(h["Upgrade"]) > 0 && hasToken(h["Connection"], "upgrade")
}

func idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// guardBody lets a request body be offered to more than one attempt: Transport closes the body of a
// failed attempt, which the guard ignores (net/http closes the real body after the handler), and it
// records whether any byte was consumed (then the body cannot be replayed).
type guardBody struct {
	rc   io.ReadCloser
	read bool
	err  error // the client's body failed (a timeout: request_body_timeout)
}

func (g *guardBody) Read(p []byte) (int, error) {
	n, err := g.rc.Read(p)
	if n > 0 {
		g.read = true
	}
	if err != nil && err != io.EOF {
		g.err = err
	}
	return n, err
}

func (g *guardBody) Close() error { return nil }

// recorder wraps the client's ResponseWriter to learn the status and byte count for the access log
// and metrics. Unwrap lets http.ResponseController reach Flush and Hijack of the real writer.
type recorder struct {
	w       http.ResponseWriter
	status  int
	bytes   int64
	aborted bool
	lim     *limits                  // the listener's
	ctl     *http.ResponseController // net/http connections: each write gets send_timeout
}

func (r *recorder) Header() http.Header { return r.w.Header() }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		r.status = code
	}
	r.w.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.sendDeadline()
	n, err := r.w.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Flush() {
	r.sendDeadline()
	if f, ok := r.w.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.w }

// sendDeadline bounds the next write to a net/http connection by send_timeout (the HTTP/1 loop
// bounds its writes itself).
func (r *recorder) sendDeadline() {
	if r.ctl != nil {
		r.ctl.SetWriteDeadline(time.Now().Add(r.lim.send))
	}
}

// Hijack hands over the client connection for an Upgrade tunnel, wrapped so that the tunnel ends
// after upgrade_idle_timeout without a byte either way and each write waits at most send_timeout.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(r.w).Hijack()
	if err != nil {
		return nil, nil, err
	}
	nc.SetWriteDeadline(time.Now().Add(r.lim.send)) // the 101 response, written through brw
	tc := &tunnelConn{Conn: nc, idle: r.lim.tunnelIdle, send: r.lim.send}
	tc.last.Store(time.Now().UnixNano())
	return tc, brw, nil
}

// tunnelConn is the client side of an Upgrade tunnel; both directions of the tunnel pass through
// it (reads from the client, writes of what the backend sent), so it sees all activity.
type tunnelConn struct {
	net.Conn
	idle, send time.Duration
	last       atomic.Int64 // unix nanoseconds of the last byte either way
}

func (c *tunnelConn) Read(p []byte) (int, error) {
	for {
		c.Conn.SetReadDeadline(time.Unix(0, c.last.Load()).Add(c.idle))
		n, err := c.Conn.Read(p)
		if n > 0 {
			c.last.Store(time.Now().UnixNano())
			return n, err
		}
		if err != nil && isTimeout(err) && time.Since(time.Unix(0, c.last.Load())) < c.idle {
			continue // the other direction carried bytes meanwhile
		}
		return n, err
	}
}

func (c *tunnelConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.send))
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.last.Store(time.Now().UnixNano())
	}
	return n, err
}

// bodyTimeout bounds each read of a request body on a net/http connection by
// request_body_timeout (the HTTP/1 loop does this itself).
type bodyTimeout struct {
	rc   io.ReadCloser
	ctl  *http.ResponseController
	idle time.Duration
}

func (b *bodyTimeout) Read(p []byte) (int, error) {
	b.ctl.SetReadDeadline(time.Now().Add(b.idle))
	return b.rc.Read(p)
}

func (b *bodyTimeout) Close() error { return b.rc.Close() }

var recorderPool = sync.Pool{New: func() any { return new(recorder) }}

// handler serves one listener: route, filter, proxy, then log and count.
type handler struct {
	s *Server
	l *listener
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	st := h.l.state.Load()
	rw := recorderPool.Get().(*recorder)
	*rw = recorder{w: w, lim: &h.l.lim}
	if _, own := w.(*h1Response); !own {
		if r.ProtoMajor == 1 && h.l.draining.Load() && !isUpgrade(r.Header) {
			w.Header().Set("Connection", "close") // TLS listener draining (tlsDrain)
		}
		rw.ctl = http.NewResponseController(w)
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &bodyTimeout{rc: r.Body, ctl: rw.ctl, idle: h.l.lim.body}
		}
	}
	route := ""
	var upstream netip.AddrPort
	var m *routeMetrics
	r.URL.RawQuery = escapeQuery(r.URL.RawQuery)
	if !normalizePath(r.URL) {
		m = st.notFound
		http.Error(rw, "400 path climbs above the root", http.StatusBadRequest)
	} else if e := st.table.match(r.Host, r.Method, r.URL.Path, r.Header, r.URL); e != nil {
		route, m = e.rule.route, e.rule.m
		upstream = h.s.serve(rw, r, e, st, h.l)
	} else {
		m = st.notFound
		http.Error(rw, "404 no route", http.StatusNotFound)
	}
	status := rw.status
	if status == 0 {
		status = http.StatusOK
	}
	d := time.Since(start)
	m.observe(status, d.Seconds())
	if st.accessLog {
		up := ""
		if upstream.IsValid() {
			up = upstream.String()
		}
		h.s.log.LogAttrs(r.Context(), slog.LevelInfo, "http",
			slog.String("host", r.Host), slog.String("method", r.Method),
			slog.String("path", r.URL.Path), slog.Int("status", status),
			slog.Int64("bytes", rw.bytes), slog.Duration("duration", d),
			slog.String("route", route), slog.String("upstream", up),
			slog.String("client", r.RemoteAddr), slog.String("listener", h.l.name))
	}
	if rw.ctl != nil {
		// net/http writes the rest of the response and drains an unread body after we return.
		rw.sendDeadline()
		if _, ok := r.Body.(*bodyTimeout); ok {
			rw.ctl.SetReadDeadline(time.Now().Add(min(bodyDrainTime, h.l.lim.body)))
		}
	}
	aborted := rw.aborted
	*rw = recorder{}
	recorderPool.Put(rw)
	if aborted {
		// The response was cut mid-body: make net/http drop the connection (or reset the HTTP/2
		// stream) so the client cannot take a truncated body for a complete one.
		panic(http.ErrAbortHandler)
	}
}

// statusClientClosed is logged (never sent) when the client went away before the response.
const statusClientClosed = 499

// serve handles a matched request and returns the upstream address used (invalid for none).
func (s *Server) serve(rw *recorder, r *http.Request, e *matchEntry, st *lstate, l *listener) netip.AddrPort {
	ru := e.rule
	matched := e.path
	if e.kind == pathRegex {
		matched = ""
	}
	// Hop-by-hop headers (and those the client's Connection header names) go first, so a client
	// cannot remove what the route's filter sets.
	upgrade := stripHopByHop(r.Header)
	client, _ := netip.ParseAddrPort(r.RemoteAddr)
	clientIP := client.Addr().Unmap()
	fwd := newForwarded(r, l.tls, clientIP, st.trusted)
	if ru.redirect != nil {
		ru.reqHdr.apply(r.Header)
		rw.Header()["Location"] = []string{ru.redirect.location(r, l.tls, l.port, matched)}
		ru.respHdr.apply(rw.Header())
		rw.WriteHeader(ru.redirect.status)
		return netip.AddrPort{}
	}
	if ru.total == 0 {
		// Gateway API: every backend weight 0 means 500.
		http.Error(rw, "500 no backend with weight", http.StatusInternalServerError)
		return netip.AddrPort{}
	}
	ctx := r.Context()
	if ru.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ru.timeout)
		defer cancel()
	}

	ru.reqHdr.apply(r.Header)
	path, rawPath := r.URL.Path, r.URL.RawPath
	if ru.rewrite != nil && ru.rewrite.path != nil {
		path, rawPath = ru.rewrite.path.apply(r.URL.Path, matched), ""
	}
	host := r.Host
	if ru.rewrite != nil && ru.rewrite.host != "" {
		host = ru.rewrite.host
	}
	if len(ru.mirrors) > 0 {
		s.mirror(r, ru, st, clientIP, host, path, rawPath, &fwd)
	}
	if upgrade {
		return s.proxyUpgrade(rw, r, ru, st, clientIP, host, path, rawPath, &fwd)
	}

	// Outbound headers: the inbound map edited in place (see the note at the top of the file;
	// outbound).
	bodyless := r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0
	fastOK := bodyless && idempotent(r.Method)

	var out *http.Request // built on first use by the Transport path
	var guard *guardBody
	if !bodyless {
		guard = &guardBody{rc: r.Body}
	}
	replayable := func() bool { return guard == nil || !guard.read }

	var tried [8]netip.AddrPort
	for attempt := 0; ; attempt++ {
		ref, addr, active, ok := s.pick(st, ru, clientIP, tried[:min(attempt, len(tried))])
		if !ok {
			ru.m.upstreamError("no_backend")
			http.Error(rw, "503 "+errNoBackend.Error(), http.StatusServiceUnavailable)
			return netip.AddrPort{}
		}
		if attempt < len(tried) {
			tried[attempt] = addr
		}
		a := attemptState{active: active}
		if active != nil {
			active.Add(1) // least_conn / two_choices see L7 requests in flight
		}
		var resp *http.Response
		var err error
		if fastOK && !ref.h2c {
			resp, err = s.up.roundTrip(ctx, &a.x, addr, r, host, path, rawPath, &fwd, ru.backendTimeout)
		} else {
			if out == nil {
				out = outbound(ctx, r, &fwd, guard, host, path, rawPath)
			}
			out.URL.Host = addr.String()
			req := out
			if ru.backendTimeout > 0 {
				var actx context.Context
				actx, a.cancel = context.WithTimeout(ctx, ru.backendTimeout)
				req = out.WithContext(actx)
			}
			tr := s.h1
			if ref.h2c {
				tr = s.h2c
			}
			resp, err = tr.RoundTrip(req)
		}
		if err != nil {
			a.end(false)
			if s.attemptFailed(ctx, rw, r, ru, guard, addr, err, attempt < ru.retries && replayable()) {
				continue
			}
			return addr
		}
		if (resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable) &&
			attempt < ru.retries && idempotent(r.Method) && replayable() {
			ru.m.upstreamError("status_5xx")
			// Reading a small rest of the body lets the connection be reused.
			_, cerr := io.CopyN(io.Discard, resp.Body, 64<<10)
			finish(&a, resp, cerr == io.EOF && !resp.Close)
			continue
		}
		complete := s.copyResponse(rw, resp, ru)
		finish(&a, resp, complete && !resp.Close)
		return addr
	}
}

// outbound builds the request the Transport path sends upstream (on the first attempt that takes
// that path): the inbound request shallow-copied with its (edited) header map, addressed to the
// rewritten host and path, its body behind guard.
func outbound(ctx context.Context, r *http.Request, fwd *forwarded, guard *guardBody, host, path, rawPath string) *http.Request {
	h := r.Header
	fwd.set(h)
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = emptyUA
	}
	out := new(http.Request)
	*out = *r // shallow copy keeps the context and the (edited) header map
	if ctx != r.Context() {
		out = out.WithContext(ctx)
	}
	out.URL = &url.URL{Scheme: "http", Path: path, RawPath: rawPath, RawQuery: r.URL.RawQuery}
	out.Host = host
	out.RequestURI = ""
	out.Close = false
	out.Proto, out.ProtoMajor, out.ProtoMinor = "HTTP/1.1", 1, 1
	out.Body = nil
	if guard != nil {
		out.Body = guard
	}
	return out
}

// attemptFailed answers the client for an attempt that got no response (err), or reports that
// the attempt is retried (a connect error while retry allows it).
func (s *Server) attemptFailed(ctx context.Context, rw *recorder, r *http.Request, ru *rule, guard *guardBody, addr netip.AddrPort, err error, retry bool) bool {
	switch {
	case guard != nil && guard.err != nil && isTimeout(guard.err):
		http.Error(rw, "408 request body timeout", http.StatusRequestTimeout)
		return false
	case r.Context().Err() != nil:
		rw.status = statusClientClosed
		return false
	case ctx.Err() == context.DeadlineExceeded || isTimeout(err) || errors.Is(err, context.DeadlineExceeded):
		ru.m.upstreamError("timeout")
		http.Error(rw, "504 upstream timeout", http.StatusGatewayTimeout)
		return false
	case isDialError(err):
		ru.m.upstreamError("connect")
		if retry {
			s.log.Debug("ingress retry after connect error", "upstream", addr, "err", err)
			return true
		}
	default:
		ru.m.upstreamError("protocol")
	}
	s.log.Warn("ingress upstream error", "route", ru.route, "upstream", addr, "err", err)
	http.Error(rw, "502 bad gateway", http.StatusBadGateway)
	return false
}

// finish releases an attempt after its response. The connection is released (closed unless
// reusable) before the body is closed: closing an unfinished http.ReadResponse body would first
// read the rest of it, which for a streaming response whose client has gone never ends.
func finish(a *attemptState, resp *http.Response, reuse bool) {
	a.end(reuse)
	resp.Body.Close()
}

// attemptState holds what one upstream attempt must release: the in-flight count, the backend
// timeout context (Transport path) and the pooled connection (fast path).
type attemptState struct {
	active *atomic.Int64
	cancel context.CancelFunc
	x      h1Exchange
}

func (a *attemptState) end(reuse bool) {
	if a.active != nil {
		a.active.Add(-1)
		a.active = nil
	}
	if a.cancel != nil {
		a.cancel()
		a.cancel = nil
	}
	a.x.end(reuse)
}

// isDialError reports a failure to connect (nothing was sent, so a retry elsewhere is safe).
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// pick chooses a weighted backend reference and asks the upstreams for an address, avoiding the
// addresses already tried when another is available. active is the backend's in-flight counter
// when the upstreams keep one (ActiveUpstreams), else nil.
func (s *Server) pick(st *lstate, ru *rule, client netip.Addr, tried []netip.AddrPort) (ref backendRef, addr netip.AddrPort, active *atomic.Int64, ok bool) {
	var fbRef backendRef
	var fb netip.AddrPort
	var fbActive *atomic.Int64
	for range 8 {
		ref := ru.chooseRef()
		var addr netip.AddrPort
		var active *atomic.Int64
		var ok bool
		if st.active != nil {
			addr, active, ok = st.active.PickActive(ref.service, ref.port, client)
		} else {
			addr, ok = st.ups.Pick(ref.service, ref.port, client)
		}
		if !ok {
			continue
		}
		if !slices.Contains(tried, addr) {
			return ref, addr, active, true
		}
		fbRef, fb, fbActive = ref, addr, active
	}
	return fbRef, fb, fbActive, fb.IsValid()
}

// chooseRef draws a backend reference in proportion to the weights.
func (ru *rule) chooseRef() backendRef {
	if len(ru.refs) == 1 {
		return ru.refs[0]
	}
	n := rand.IntN(ru.total)
	for _, ref := range ru.refs {
		if n < ref.cum {
			return ref
		}
	}
	return ru.refs[len(ru.refs)-1]
}

// copyResponse streams the backend response to the client; true when the body was read to its
// end (the backend connection may then be reused). The caller closes the body (see finish).
func (s *Server) copyResponse(rw *recorder, resp *http.Response, ru *rule) bool {
	dst := rw.Header()
	removeHopByHop(resp.Header, false)
	for k, vv := range resp.Header {
		dst[k] = vv
	}
	ru.respHdr.apply(dst)
	rw.WriteHeader(resp.StatusCode)
	streaming := resp.ContentLength == -1
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := rw.Write(buf[:n]); werr != nil {
				return false // client gone; nothing more to do
			}
			if streaming {
				rw.Flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			ru.m.upstreamError("body")
			rw.aborted = true
			return false
		}
	}
	for k, vv := range resp.Trailer {
		dst[http.TrailerPrefix+k] = vv
	}
	return true
}

// proxyUpgrade hands Upgrade requests (WebSocket, ...) to httputil.ReverseProxy, which hijacks the
// connection and copies both ways. No retries (the handshake is not replayed) and the rule's timeout
// does not apply: the tunnel lives until either side closes or the listener is shut down.
func (s *Server) proxyUpgrade(rw *recorder, r *http.Request, ru *rule, st *lstate, client netip.Addr, host, path, rawPath string, fwd *forwarded) netip.AddrPort {
	_, addr, active, ok := s.pick(st, ru, client, nil)
	if active != nil {
		active.Add(1)
		defer active.Add(-1)
	}
	if !ok {
		ru.m.upstreamError("no_backend")
		http.Error(rw, "503 "+errNoBackend.Error(), http.StatusServiceUnavailable)
		return netip.AddrPort{}
	}
	if s.tunnels.Add(1) > rw.lim.maxTunnels {
		s.tunnels.Add(-1)
		ru.m.upstreamError("upgrade_limit")
		http.Error(rw, "503 too many upgraded connections", http.StatusServiceUnavailable)
		return netip.AddrPort{}
	}
	defer s.tunnels.Add(-1)
	target := addr.String()
	s.upgrades.Add(1)
	defer s.upgrades.Done()
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", target
			pr.Out.URL.Path, pr.Out.URL.RawPath = path, rawPath
			pr.Out.Host = host
			// The same forwarded headers as every other request. ReverseProxy drops Forwarded
			// before Rewrite; r's header holds it only when it came from a trusted proxy.
			fwd.set(pr.Out.Header)
			if v := pr.In.Header["Forwarded"]; v != nil {
				pr.Out.Header["Forwarded"] = v
			}
		},
		Transport: s.h1,
		ModifyResponse: func(resp *http.Response) error {
			ru.respHdr.apply(resp.Header)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			if isDialError(err) {
				ru.m.upstreamError("connect")
			} else {
				ru.m.upstreamError("protocol")
			}
			s.log.Warn("ingress upgrade error", "route", ru.route, "upstream", target, "err", err)
			w.WriteHeader(http.StatusBadGateway)
		},
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	rp.ServeHTTP(rw, r)
	return addr
}

// mirror sends a copy of the request to each mirror backend, fire and forget. Bodies up to
// mirrorBodyMax with a known length are buffered (and then also replayable for retries); larger or
// streamed bodies are not mirrored (counted as reason mirror_skipped) so mirroring never turns a
// streaming request into a buffered one. In-flight mirrors are bounded; excess ones are dropped.
func (s *Server) mirror(r *http.Request, ru *rule, st *lstate, client netip.Addr, host, path, rawPath string, fwd *forwarded) {
	var body []byte
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		if r.ContentLength < 0 || r.ContentLength > mirrorBodyMax {
			ru.m.upstreamError("mirror_skipped")
			return
		}
		b, err := io.ReadAll(io.LimitReader(r.Body, r.ContentLength))
		if err != nil {
			return // the main request will fail on the same body
		}
		body = b
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	for _, ref := range ru.mirrors {
		addr, ok := st.ups.Pick(ref.service, ref.port, client)
		if !ok {
			ru.m.upstreamError("mirror_no_backend")
			continue
		}
		select {
		case s.mirrorSem <- struct{}{}:
		default:
			ru.m.upstreamError("mirror_dropped")
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), mirrorTimeout)
		mr := r.Clone(ctx)
		fwd.set(mr.Header)
		mr.URL = &url.URL{Scheme: "http", Host: addr.String(), Path: path, RawPath: rawPath, RawQuery: r.URL.RawQuery}
		mr.Host = host
		mr.RequestURI = ""
		mr.Body = nil
		if body != nil {
			mr.Body = io.NopCloser(bytes.NewReader(body))
		}
		if _, ok := mr.Header["User-Agent"]; !ok {
			mr.Header["User-Agent"] = emptyUA
		}
		tr := s.h1
		if ref.h2c {
			tr = s.h2c
		}
		go func() {
			defer func() { <-s.mirrorSem }()
			defer cancel()
			resp, err := tr.RoundTrip(mr)
			if err != nil {
				ru.m.upstreamError("mirror")
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
}

const (
	mirrorBodyMax = 64 << 10
	mirrorTimeout = 10 * time.Second
	maxMirrors    = 256
)
