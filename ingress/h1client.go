package ingress

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"
)

// h1Client is the proxy's fast path to plain HTTP/1.1 backends for requests without a body and
// with an idempotent method (the bulk of proxied traffic). Divergence from http.Transport, and why:
// Transport hands every request to a per-connection write goroutine and the response back from a
// read goroutine through channels (two goroutine switches, ~30 allocations per request); here the
// handler goroutine writes the request and reads the response head itself on a pooled connection,
// and the response is parsed by http.ReadResponse. Everything else (bodies, h2c, upgrades) still
// goes through http.Transport / httputil.ReverseProxy.
type h1Client struct {
	dialer      net.Dialer
	maxIdle     int           // per backend
	idleTimeout time.Duration // idle connections older than this are closed instead of reused

	mu        sync.Mutex
	idle      map[netip.AddrPort][]*upConn // LIFO stacks
	lastSweep time.Time
	closed    bool
}

// maxResponseHeaderBytes bounds a backend's response head on every path (fast path, both
// Transports, upgrades and mirrors); a larger one is answered 502. Envoy's default
// (max_response_headers_kb) is 60 KiB.
const maxResponseHeaderBytes = 64 << 10

const upReadBuf = 16 << 10

var errResponseHeaderTooLarge = errors.New("backend response header larger than 64 KiB")

// headLimit is an upConn's read source: while a response head is read it may deliver at most
// remain bytes (the head plus a buffer of slack), then fails.
type headLimit struct {
	nc     net.Conn
	remain int64
}

func (l *headLimit) Read(p []byte) (int, error) {
	if l.remain <= 0 {
		return 0, errResponseHeaderTooLarge
	}
	if int64(len(p)) > l.remain {
		p = p[:l.remain]
	}
	n, err := l.nc.Read(p)
	l.remain -= int64(n)
	return n, err
}

// upConn is one pooled backend connection.
type upConn struct {
	nc        net.Conn
	lim       headLimit
	br        *bufio.Reader
	bw        *bufio.Writer
	addr      netip.AddrPort
	idleSince time.Time
	reused    bool
	abort     func() // unblocks reads and writes (context cancelled)
}

var aLongTimeAgo = time.Unix(1, 0)

func newH1Client() *h1Client {
	return &h1Client{
		dialer:      net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second},
		maxIdle:     1024,
		idleTimeout: 90 * time.Second,
		idle:        map[netip.AddrPort][]*upConn{},
	}
}

// get pops the most recently used idle connection to addr, or dials one.
func (c *h1Client) get(ctx context.Context, addr netip.AddrPort) (*upConn, error) {
	now := time.Now()
	c.mu.Lock()
	stack := c.idle[addr]
	for len(stack) > 0 {
		uc := stack[len(stack)-1]
		stack[len(stack)-1] = nil
		stack = stack[:len(stack)-1]
		if now.Sub(uc.idleSince) < c.idleTimeout {
			c.idle[addr] = stack
			c.mu.Unlock()
			uc.reused = true
			return uc, nil
		}
		uc.nc.Close()
	}
	c.idle[addr] = stack
	c.mu.Unlock()
	nc, err := c.dialer.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, err
	}
	uc := &upConn{nc: nc, lim: headLimit{nc: nc, remain: noLimit}, bw: bufio.NewWriterSize(nc, 8<<10), addr: addr}
	uc.br = bufio.NewReaderSize(&uc.lim, upReadBuf)
	uc.abort = func() { uc.nc.SetDeadline(aLongTimeAgo) }
	return uc, nil
}

// put returns a healthy connection (response fully read, no deadline pending) to the pool.
func (c *h1Client) put(uc *upConn) {
	uc.idleSince = time.Now()
	c.mu.Lock()
	if c.closed || len(c.idle[uc.addr]) >= c.maxIdle {
		c.mu.Unlock()
		uc.nc.Close()
		return
	}
	c.idle[uc.addr] = append(c.idle[uc.addr], uc)
	if uc.idleSince.Sub(c.lastSweep) > c.idleTimeout {
		c.sweepLocked(uc.idleSince)
	}
	c.mu.Unlock()
}

// sweepLocked closes connections idle for longer than idleTimeout, so backends that are no longer
// picked (removed by a reload, unhealthy) do not keep sockets open. Runs at most once per
// idleTimeout, from put.
func (c *h1Client) sweepLocked(now time.Time) {
	c.lastSweep = now
	for a, stack := range c.idle {
		keep := stack[:0]
		for _, uc := range stack { // oldest first
			if now.Sub(uc.idleSince) >= c.idleTimeout {
				uc.nc.Close()
				continue
			}
			keep = append(keep, uc)
		}
		clear(stack[len(keep):])
		if len(keep) == 0 {
			delete(c.idle, a)
		} else {
			c.idle[a] = keep
		}
	}
}

// closeIdle closes every pooled connection; with final, later puts close theirs too.
func (c *h1Client) closeIdle(final bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = c.closed || final
	for a, stack := range c.idle {
		for _, uc := range stack {
			uc.nc.Close()
		}
		delete(c.idle, a)
	}
}

// h1Exchange is one request on one pooled connection; end releases it.
type h1Exchange struct {
	c        *h1Client
	uc       *upConn
	stop     func() bool // stops the context watch; nil when the context can't be cancelled
	deadline bool        // a backend timeout deadline is set on the connection
}

// end releases the connection: back to the pool when reuse is true and nothing interrupted it.
func (x *h1Exchange) end(reuse bool) {
	if x.uc == nil {
		return
	}
	if x.stop != nil && !x.stop() {
		reuse = false // the context fired: the connection's deadline is in the past
	}
	if reuse && x.deadline {
		if err := x.uc.nc.SetDeadline(time.Time{}); err != nil {
			reuse = false
		}
	}
	if reuse {
		x.c.put(x.uc)
	} else {
		x.uc.nc.Close()
	}
	x.uc = nil
}

// roundTrip writes the request head and reads the response head. On success the response body
// reads from the connection and x.end must be called once the body is done (reuse only after
// EOF without "Connection: close"). A stale pooled connection (closed by the backend while idle) is
// replaced by a fresh one transparently: the request is bodyless and idempotent.
func (c *h1Client) roundTrip(ctx context.Context, x *h1Exchange, addr netip.AddrPort, r *http.Request,
	host, path, rawPath string, fwd *forwarded, backendTimeout time.Duration) (*http.Response, error) {
	for try := 0; ; try++ {
		uc, err := c.get(ctx, addr)
		if err != nil {
			return nil, err
		}
		*x = h1Exchange{c: c, uc: uc}
		if ctx.Done() != nil {
			x.stop = context.AfterFunc(ctx, uc.abort)
		}
		if backendTimeout > 0 {
			x.deadline = true
			uc.nc.SetDeadline(time.Now().Add(backendTimeout))
		}
		resp, err := c.exchange(uc, r, host, path, rawPath, fwd)
		if err == nil {
			return resp, nil
		}
		reused := uc.reused
		x.end(false)
		if reused && try == 0 && ctx.Err() == nil && !isTimeout(err) && !errors.Is(err, errResponseHeaderTooLarge) {
			continue // the backend closed the idle connection: retry once on a fresh one
		}
		return nil, err
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// exchange writes the request head (Host, the edited header map, X-Forwarded-*) and parses the
// response head, skipping 1xx interim responses.
func (c *h1Client) exchange(uc *upConn, r *http.Request, host, path, rawPath string, fwd *forwarded) (*http.Response, error) {
	bw := uc.bw
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	u := url.URL{Path: path, RawPath: rawPath}
	bw.WriteString(u.EscapedPath())
	if r.URL.RawQuery != "" {
		bw.WriteByte('?')
		bw.WriteString(r.URL.RawQuery)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	for k, vv := range r.Header {
		switch k {
		case "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Host", "Content-Length":
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	fwd.write(bw)
	bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	for {
		uc.lim.remain = maxResponseHeaderBytes + upReadBuf
		resp, err := http.ReadResponse(uc.br, r)
		uc.lim.remain = noLimit
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
		// 1xx interim response (100 Continue, 103 Early Hints): not forwarded; read the final one.
	}
}

// forwarded carries the X-Forwarded-* values of one request, so the fast path writes them
// straight to the wire and the Transport path puts them in the header map.
//
// At the edge a client must not choose the address a backend sees: unless the client is one of
// ingress.trusted_proxies, its X-Forwarded-For, -Proto and -Host are replaced and its X-Real-IP
// and Forwarded removed. A trusted proxy's values are kept, and its address is appended to
// X-Forwarded-For (Traefik's forwardedHeaders.trustedIPs).
type forwarded struct {
	prior []string // X-Forwarded-For values received
	ip    string   // client address
	proto string   // http or https
	host  string   // original Host
}

func (f *forwarded) write(bw *bufio.Writer) {
	if f.ip != "" || len(f.prior) > 0 {
		bw.WriteString("X-Forwarded-For: ")
		for i, p := range f.prior {
			if i > 0 {
				bw.WriteString(", ")
			}
			bw.WriteString(p)
		}
		if f.ip != "" {
			if len(f.prior) > 0 {
				bw.WriteString(", ")
			}
			bw.WriteString(f.ip)
		}
		bw.WriteString("\r\n")
	}
	bw.WriteString("X-Forwarded-Proto: ")
	bw.WriteString(f.proto)
	bw.WriteString("\r\nX-Forwarded-Host: ")
	bw.WriteString(f.host)
	bw.WriteString("\r\n")
}

// set puts the values into a header map (Transport path).
func (f *forwarded) set(h http.Header) {
	xff := strings.Join(f.prior, ", ")
	switch {
	case f.ip == "":
	case xff == "":
		xff = f.ip
	default:
		xff += ", " + f.ip
	}
	if xff != "" {
		h["X-Forwarded-For"] = []string{xff}
	}
	switch f.proto {
	case "https":
		h["X-Forwarded-Proto"] = protoHTTPS
	case "http":
		h["X-Forwarded-Proto"] = protoHTTP
	default:
		h["X-Forwarded-Proto"] = []string{f.proto}
	}
	h["X-Forwarded-Host"] = []string{f.host}
}

// newForwarded takes the forwarded headers out of r's header map (they are written from the
// result) and applies the trust rule above; client is the peer address.
func newForwarded(r *http.Request, tls bool, client netip.Addr, trusted []netip.Prefix) forwarded {
	h := r.Header
	f := forwarded{ip: hostOnly(r.RemoteAddr), proto: "http", host: r.Host}
	if tls {
		f.proto = "https"
	}
	if trustedPeer(trusted, client) {
		f.prior = h["X-Forwarded-For"]
		if v := h["X-Forwarded-Proto"]; len(v) > 0 && v[0] != "" {
			f.proto = v[0]
		}
		if v := h["X-Forwarded-Host"]; len(v) > 0 && v[0] != "" {
			f.host = v[0]
		}
	} else {
		delete(h, "X-Real-Ip")
		delete(h, "Forwarded")
	}
	delete(h, "X-Forwarded-For")
	delete(h, "X-Forwarded-Proto")
	delete(h, "X-Forwarded-Host")
	return f
}

func trustedPeer(trusted []netip.Prefix, client netip.Addr) bool {
	for _, p := range trusted {
		if p.Contains(client) {
			return true
		}
	}
	return false
}
