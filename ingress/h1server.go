package ingress

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// h1Server serves the HTTP/1.x connections of a plain-HTTP listener itself; connections that open
// with the HTTP/2 preface (h2c with prior knowledge, gRPC without TLS) are handed to the
// listener's net/http server, and TLS listeners stay wholly on net/http (HTTP/2 by ALPN).
//
// Divergences from net/http's server, and why: net/http gives every request a cancellable context
// and, for requests without a body, starts a background read on the connection so that a client
// going away cancels the request; arming and aborting that read costs a goroutine, a system call
// and a deadline change per request, about a tenth of a proxied keep-alive request here. This
// loop arms the same read only once a request has run for bgReadDelay, the time after which
// noticing a departed client matters. The response writer encodes headers itself (no sorting,
// no content sniffing: a response without Content-Type passes through without one, as a proxy
// should); everything else keeps net/http's rules: Host required on HTTP/1.1, 100-continue sent
// on the first body read, Content-Length computed for small complete responses and chunked
// encoding otherwise, keep-alive unless either side asks to close, a bounded drain of unread
// request bodies, 431 for oversized heads, the read-header and idle timeouts, and graceful
// shutdown that closes idle connections and lets active ones finish their request.
type h1Server struct {
	h       http.Handler
	log     *slog.Logger
	lim     limits
	baseCtx context.Context
	h2      *handoffListener // nil: no h2c; else connections opening with the preface go here
	closing atomic.Bool
	mu      sync.Mutex
	conns   map[*h1Conn]struct{}
	active  sync.WaitGroup // conn goroutines
}

const (
	bgReadDelay   = 50 * time.Millisecond  // see h1Server
	smallBodyBuf  = 4 << 10                // responses this small without Content-Length get one
	maxBodyDrain  = 256 << 10              // unread request body drained to keep the connection
	lingerTime    = 500 * time.Millisecond // see lingerClose
	newConnGrace  = time.Second            // see h1Server.closeIdle
	idleGrace     = time.Second            // see h1Server.closeIdle
	h1ReadBufSize = 4 << 10
	h1WriteBuf    = 8 << 10
	h2Preface     = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
)

// Connection states for graceful shutdown (see h1Server.shutdown).
const (
	stateNew    int32 = iota // accepted, no byte of the first request yet
	stateActive              // reading or serving a request
	stateIdle
	stateClosed
)

func newH1Server(h http.Handler, log *slog.Logger, lim limits, baseCtx context.Context, h2 *handoffListener) *h1Server {
	return &h1Server{h: h, log: log, lim: lim, baseCtx: baseCtx, h2: h2, conns: map[*h1Conn]struct{}{}}
}

// serve accepts until ln is closed.
func (s *h1Server) serve(ln net.Listener) error {
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of descriptors or an aborted handshake: back off and keep serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("ingress accept error; retrying", "err", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		c := s.newConn(nc)
		if c == nil {
			nc.Close()
			return nil
		}
		go c.serve()
	}
}

// newConn tracks a new connection; nil once shutdown has begun.
func (s *h1Server) newConn(nc net.Conn) *h1Conn {
	ctx, cancel := context.WithCancel(s.baseCtx)
	c := &h1Conn{s: s, nc: nc, ctx: ctx, cancel: cancel, remote: nc.RemoteAddr().String(), accepted: time.Now()}
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		cancel()
		return nil
	}
	s.conns[c] = struct{}{} // state starts as stateNew (zero)
	s.active.Add(1)
	s.mu.Unlock()
	c.cr.c = c
	c.br = brPool.Get().(*bufio.Reader)
	c.br.Reset(&c.cr)
	c.bw = bwPool.Get().(*bufio.Writer)
	c.bw.Reset(checkWriter{c})
	return c
}

// Connection buffers are pooled: with a connection per request they are most of its garbage.
var (
	brPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, h1ReadBufSize) }}
	bwPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, h1WriteBuf) }}
)

// release returns the connection's buffers to the pools (never after a hijack: the handler
// holds the reader).
func (c *h1Conn) release() {
	c.br.Reset(nil)
	brPool.Put(c.br)
	c.bw.Reset(nil)
	bwPool.Put(c.bw)
	c.br, c.bw = nil, nil
}

// forget ends the server's tracking of c (closed, or hijacked by its handler).
func (s *h1Server) forget(c *h1Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.active.Done()
}

// shutdown stops the idle connections and waits until the active ones have finished their
// request (they close after it) or ctx ends; then it closes what is left and returns ctx's error.
// The listener itself is closed by the caller.
func (s *h1Server) shutdown(ctx context.Context) error {
	s.mu.Lock() // no newConn may Add to active once Wait may run
	s.closing.Store(true)
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.active.Wait(); close(done) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.closeIdle()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			s.closeAll()
			<-done
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// closeIdle closes the keep-alive connections idle for idleGrace, and the new ones that have not
// sent a byte within newConnGrace of their accept: a client may open a connection it never uses
// (Go's Transport dials a spare one when a request waits for a connection), and shutdown must not
// wait the read-header timeout for it. The graces cover a request on its way: a busy keep-alive
// client (wrk, a proxy's pool) sends its next request as soon as it read a response, so closing a
// connection idle for microseconds would reset that request; within the grace it is served
// instead and answered with Connection: close (commit), and the client reconnects cleanly.
func (s *h1Server) closeIdle() {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		idle := c.state.Load() == stateIdle && now.Sub(time.Unix(0, c.idleAt.Load())) >= idleGrace
		if idle && c.state.CompareAndSwap(stateIdle, stateClosed) ||
			now.Sub(c.accepted) >= newConnGrace && c.state.CompareAndSwap(stateNew, stateClosed) {
			c.nc.Close()
		}
	}
}

func (s *h1Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.state.Store(stateClosed)
		c.nc.Close()
		c.cancel()
	}
}

// handoffListener feeds connections to a net/http server (h2c prior knowledge).
type handoffListener struct {
	addr   net.Addr
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// give hands c over; false when the listener is closed (the caller closes c).
func (l *handoffListener) give(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

// prefixConn replays bytes already read from a connection before reading it further.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// h1Conn is one client connection.
type h1Conn struct {
	s         *h1Server
	nc        net.Conn
	remote    string
	ctx       context.Context // requests' context: ends with the connection or a departed client
	cancel    context.CancelFunc
	cr        connReader
	br        *bufio.Reader
	bw        *bufio.Writer
	state     atomic.Int32
	idleAt    atomic.Int64 // unix ns when it last became idle (see h1Server.closeIdle)
	accepted  time.Time
	werr      error // first write error (client gone)
	forgotten bool  // hijacked: no longer tracked by the server
	resp      h1Response
	body      countingBody // the current request's body

	// Background read (see h1Server): armed per bodyless request, started by bgTimer.
	bgMu      sync.Mutex
	bgTimer   *time.Timer
	bgArmed   bool
	bgRunning bool
	bgDone    chan struct{}
	bgErr     error
}

// connReader is the bufio.Reader's source: it bounds how much a request head may read, and
// returns first the byte a background read took.
type connReader struct {
	c       *h1Conn
	idle    time.Duration // >0 while reading a body: each read must arrive within it
	remain  int64         // bytes the current head may still read
	hit     bool          // remain reached 0
	pending bool
	b       [1]byte
}

func (r *connReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.remain <= 0 {
		r.hit = true
		return 0, io.EOF
	}
	if int64(len(p)) > r.remain {
		p = p[:r.remain]
	}
	if r.pending {
		r.pending = false
		p[0] = r.b[0]
		r.remain--
		return 1, nil
	}
	if r.idle > 0 {
		r.c.nc.SetReadDeadline(time.Now().Add(r.idle))
	}
	n, err := r.c.nc.Read(p)
	r.remain -= int64(n)
	return n, err
}

const noLimit = 1<<62 - 1

// checkWriter bounds each write by send_timeout, records the first write error and cancels the
// requests' context: the client is gone.
type checkWriter struct{ c *h1Conn }

func (w checkWriter) Write(p []byte) (int, error) {
	w.c.nc.SetWriteDeadline(time.Now().Add(w.c.s.lim.send))
	n, err := w.c.nc.Write(p)
	if err != nil && w.c.werr == nil {
		w.c.werr = err
		w.c.cancel()
	}
	return n, err
}

func (c *h1Conn) serve() {
	hijacked := false
	defer func() {
		if !hijacked {
			c.nc.Close()
			c.release()
		}
		c.cancel() // every armed background read was disarmed by serveRequest or Hijack
		if !c.forgotten {
			c.s.forget(c)
		}
	}()
	lim := c.s.lim
	// The first request's head must arrive within the read-header timeout from the accept.
	c.nc.SetReadDeadline(time.Now().Add(lim.readHeader))
	c.cr.remain = int64(lim.maxHeader) + 4096
	if c.s.h2 != nil {
		c.cr.remain = int64(len(h2Preface)) // read no further before telling h2c from HTTP/1
	}
	if _, err := c.br.Peek(1); err != nil || !c.state.CompareAndSwap(stateNew, stateActive) {
		return // gone, timed out, or closed by shutdown before its first byte
	}
	if c.s.h2 != nil {
		if b, err := c.br.Peek(3); err == nil && string(b) == h2Preface[:3] {
			if b, err := c.br.Peek(len(h2Preface)); err == nil && string(b) == h2Preface {
				buffered, _ := c.br.Peek(c.br.Buffered())
				pc := &prefixConn{Conn: c.nc, r: io.MultiReader(bytes.NewReader(bytes.Clone(buffered)), c.nc)}
				c.nc.SetReadDeadline(time.Time{})
				if c.s.h2.give(newH2Guard(pc)) { // h2c: the same conformance as on TLS
					hijacked = true
				}
				return
			}
		}
	}
	for first := true; ; first = false {
		if !first && c.br.Buffered() == 0 {
			// Between requests: idle until the next one's first byte (during a shutdown,
			// closeIdle ends the wait after idleGrace).
			c.idleAt.Store(time.Now().UnixNano())
			c.state.Store(stateIdle)
			c.nc.SetReadDeadline(time.Now().Add(lim.idle))
			c.cr.remain = noLimit
			if _, err := c.br.Peek(1); err != nil {
				return
			}
			if !c.state.CompareAndSwap(stateIdle, stateActive) {
				return // closed by shutdown
			}
		}
		if !first && !c.headBuffered() {
			c.nc.SetReadDeadline(time.Now().Add(lim.readHeader))
		}
		c.cr.remain = int64(lim.maxHeader) + 4096 // bufio slack, as net/http allows
		c.cr.hit = false
		req, err := http.ReadRequest(c.br)
		if err != nil {
			c.badRequest(err)
			return
		}
		c.cr.remain = noLimit
		hasBody := req.Body != http.NoBody // ReadRequest sets NoBody for bodyless requests
		if hasBody {
			c.cr.idle = lim.body // each body read waits at most request_body_timeout
		}
		if code, msg := checkRequest(req); code != 0 {
			c.writeError(code, msg)
			return
		}
		keep, hj := c.serveRequest(req, hasBody)
		c.cr.idle = 0
		if hj {
			hijacked = true
			return
		}
		if !keep || c.werr != nil {
			return
		}
	}
}

// headBuffered reports whether a whole request head is already buffered (the usual case: it
// arrives in one segment), when reading it needs no deadline.
func (c *h1Conn) headBuffered() bool {
	b, _ := c.br.Peek(c.br.Buffered())
	return bytes.Contains(b, crlfcrlf)
}

var crlfcrlf = []byte("\r\n\r\n")

// checkRequest applies net/http's server-side request checks: a status and message when the
// request must be refused.
func checkRequest(req *http.Request) (int, string) {
	if req.ProtoMajor != 1 {
		return http.StatusHTTPVersionNotSupported, "unsupported protocol version"
	}
	// http.ReadRequest moved Host into req.Host (and refused repeated ones).
	if req.ProtoAtLeast(1, 1) && req.Host == "" && req.Method != "CONNECT" {
		return http.StatusBadRequest, "missing required Host header"
	}
	if !validHost(req.Host) {
		return http.StatusBadRequest, "malformed Host header"
	}
	if e := req.Header["Expect"]; len(e) > 0 && !(len(e) == 1 && strings.EqualFold(e[0], "100-continue")) {
		return http.StatusExpectationFailed, "unsupported Expect header"
	}
	return 0, ""
}

// validHost rejects Host values with bytes no host name or address can hold.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		b := h[i]
		if b <= ' ' || b == 0x7f || b == '/' || b == '\\' || b == '?' || b == '#' {
			return false
		}
	}
	return true
}

// serveRequest runs the handler for one request and completes the response. keep reports whether
// the connection may carry another request; hijacked that the handler took the connection.
func (c *h1Conn) serveRequest(req *http.Request, hasBody bool) (keep, hijacked bool) {
	req.RemoteAddr = c.remote
	req = req.WithContext(c.ctx)
	w := &c.resp
	w.reset(c, req) // commit adds Connection: close once shutdown has begun
	var ecr *expectContinueReader
	if hasBody {
		c.body = countingBody{rc: req.Body}
		req.Body = &c.body
		if len(req.Header["Expect"]) > 0 {
			ecr = &expectContinueReader{rc: req.Body, c: c}
			req.Body = ecr
			delete(req.Header, "Expect")
		}
	} else {
		c.armBackgroundRead()
	}
	panicked := c.runHandler(w, req)
	if !hasBody {
		c.disarmBackgroundRead()
		if c.bgErr != nil {
			w.closeAfter = true
		}
	}
	if w.hijacked {
		return false, true
	}
	if panicked {
		return false, false
	}
	// The client waits for a 100 Continue we never sent: it may or may not send the body. Or
	// more is left of it than a drain may read: the response says the connection closes.
	unread := hasBody && (ecr != nil && !ecr.sent || req.ContentLength-c.body.n > maxBodyDrain)
	w.closeAfter = w.closeAfter || unread
	w.finish()
	if hasBody || w.closeAfter || c.br.Buffered() == 0 {
		c.bw.Flush() // the response goes out before an unread body is drained
	}
	if hasBody && !unread {
		// Drain what the handler left unread, bounded in bytes and time, to keep the connection;
		// when it closes anyway, only learn (without waiting) whether the body has ended.
		c.cr.idle = 0
		dl := time.Now().Add(min(bodyDrainTime, c.s.lim.body))
		if w.closeAfter {
			dl = aLongTimeAgo
		}
		c.nc.SetReadDeadline(dl)
		if n, err := io.CopyN(io.Discard, req.Body, maxBodyDrain); err != io.EOF || n == maxBodyDrain {
			unread, w.closeAfter = true, true
		}
	}
	if unread {
		c.lingerClose()
	}
	return !w.closeAfter, false
}

// lingerClose ends a connection whose client may still be sending: closing at once would make
// the kernel answer the unread bytes with a reset, which can destroy the response in the client's
// receive buffer. So, as RFC 9112 9.6 advises (and net/http does with a fixed sleep), send FIN
// and read until the client closes too, bounded in time and bytes.
func (c *h1Conn) lingerClose() { // callers have flushed the response
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.nc.SetReadDeadline(time.Now().Add(lingerTime))
	io.CopyN(io.Discard, c.nc, 1<<20)
}

// runHandler calls the handler, recovering a panic as net/http does (http.ErrAbortHandler
// silently, anything else logged with its stack); true when it panicked.
func (c *h1Conn) runHandler(w *h1Response, req *http.Request) (panicked bool) {
	defer func() {
		if v := recover(); v != nil {
			panicked = true
			if v != http.ErrAbortHandler {
				buf := make([]byte, 16<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.s.log.Error("ingress handler panic", "client", c.remote, "panic", fmt.Sprint(v), "stack", string(buf))
			}
			if !w.hijacked {
				// Whatever is buffered may be a truncated response: the connection ends without it.
				c.bw.Reset(io.Discard)
			}
		}
	}()
	c.s.h.ServeHTTP(w, req)
	return false
}

func (c *h1Conn) armBackgroundRead() {
	c.bgMu.Lock()
	c.bgArmed, c.bgErr = true, nil
	c.bgMu.Unlock()
	if c.bgTimer == nil {
		c.bgTimer = time.AfterFunc(bgReadDelay, c.backgroundRead)
	} else {
		c.bgTimer.Reset(bgReadDelay)
	}
}

// backgroundRead waits for the client while a bodyless request is being served: an EOF or error
// means the client left and the request's context is cancelled; a byte (a pipelined request) is
// kept for the next read.
func (c *h1Conn) backgroundRead() {
	c.bgMu.Lock()
	if !c.bgArmed || c.bgRunning {
		c.bgMu.Unlock()
		return
	}
	c.bgRunning = true
	done := make(chan struct{})
	c.bgDone = done
	c.bgMu.Unlock()
	defer close(done)
	if c.cr.pending || c.br.Buffered() > 0 {
		return // the next request is already here; nothing to watch
	}
	n, err := c.nc.Read(c.cr.b[:])
	if n == 1 {
		c.cr.pending = true
	}
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return // aborted by disarmBackgroundRead
		}
		c.bgErr = err
		c.cancel()
	}
}

func (c *h1Conn) disarmBackgroundRead() {
	if c.bgTimer == nil {
		return
	}
	c.bgTimer.Stop()
	c.bgMu.Lock()
	c.bgArmed = false
	running, done := c.bgRunning, c.bgDone
	c.bgRunning, c.bgDone = false, nil
	c.bgMu.Unlock()
	if running {
		c.nc.SetReadDeadline(aLongTimeAgo)
		<-done
		c.nc.SetReadDeadline(time.Time{})
	}
}

// badRequest answers a request head that could not be read (431 when it was too large) unless
// the connection just ended or timed out, which gets no answer.
func (c *h1Conn) badRequest(err error) {
	if c.cr.hit {
		c.writeError(http.StatusRequestHeaderFieldsTooLarge, "request header too large")
		c.lingerClose() // the rest of the head is likely still arriving
		return
	}
	var ne net.Error
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) || errors.Is(err, net.ErrClosed) {
		return
	}
	c.writeError(http.StatusBadRequest, "bad request")
}

// writeError sends a plain-text error and closes (the connection's framing cannot be trusted).
func (c *h1Conn) writeError(code int, msg string) {
	c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(c.bw, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%d %s",
		code, http.StatusText(code), len(msg)+4, code, msg)
	c.bw.Flush()
}

// expectContinueReader sends "100 Continue" before the first read of the body.
type expectContinueReader struct {
	rc   io.ReadCloser
	c    *h1Conn
	sent bool
}

func (r *expectContinueReader) Read(p []byte) (int, error) {
	if !r.sent {
		r.sent = true
		if !r.c.resp.headerSent {
			r.c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			r.c.bw.Flush()
		}
	}
	return r.rc.Read(p)
}

func (r *expectContinueReader) Close() error { return nil }

// h1Response is the connection's http.ResponseWriter, reused for each request.
type h1Response struct {
	c           *h1Conn
	header      http.Header
	status      int
	wroteHeader bool
	headerSent  bool
	head        bool // HEAD request: no body
	http10      bool
	cl          int64 // declared Content-Length, -1 unknown
	written     int64
	chunked     bool
	closeAfter  bool
	hijacked    bool
	buf         []byte // body held back while it may still fit a Content-Length response
}

func (w *h1Response) reset(c *h1Conn, req *http.Request) {
	buf := w.buf[:0]
	if w.header == nil {
		w.header = make(http.Header, 8)
	} else {
		clear(w.header)
	}
	*w = h1Response{c: c, header: w.header, cl: -1, buf: buf,
		head: req.Method == http.MethodHead, http10: !req.ProtoAtLeast(1, 1), closeAfter: req.Close}
}

func (w *h1Response) Header() http.Header { return w.header }

func bodyAllowed(status int) bool {
	return !(status >= 100 && status <= 199 || status == http.StatusNoContent || status == http.StatusNotModified)
}

func (w *h1Response) WriteHeader(code int) {
	if w.hijacked || w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		// Informational (103 Early Hints): sent at once with the current header.
		w.writeStatus(code)
		w.writeFields(false)
		w.c.bw.WriteString("\r\n")
		w.c.bw.Flush()
		return
	}
	w.status, w.wroteHeader = code, true
	if v := w.header["Content-Length"]; len(v) == 1 {
		if n, err := strconv.ParseInt(v[0], 10, 64); err == nil && n >= 0 {
			w.cl = n
		} else {
			delete(w.header, "Content-Length")
		}
	}
}

func (w *h1Response) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if w.head {
		return len(p), nil
	}
	if w.cl >= 0 && w.written+int64(len(p)) > w.cl {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if !w.headerSent {
		if w.cl < 0 && len(w.buf)+len(p) <= smallBodyBuf {
			if w.buf == nil {
				w.buf = make([]byte, 0, smallBodyBuf)
			}
			w.buf = append(w.buf, p...)
			return len(p), nil
		}
		w.commit()
	}
	if err := w.writeBody(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeBody writes to the connection, as one chunk when chunked.
func (w *h1Response) writeBody(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	bw := w.c.bw
	if w.chunked {
		bw.Write(strconv.AppendUint(bw.AvailableBuffer(), uint64(len(p)), 16))
		bw.WriteString("\r\n")
		bw.Write(p)
		_, err := bw.WriteString("\r\n")
		return err
	}
	_, err := bw.Write(p)
	return err
}

// Flush sends what is buffered; a response of unknown length becomes chunked.
func (w *h1Response) Flush() {
	if w.hijacked {
		return
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headerSent {
		w.commit()
	}
	w.c.bw.Flush()
}

// FlushError is Flush reporting a failed write (http.ResponseController prefers it).
func (w *h1Response) FlushError() error {
	w.Flush()
	if w.c.werr != nil {
		return w.c.werr
	}
	return nil
}

// Hijack hands the connection to the handler (Upgrade tunnels). Bytes already read from the
// client stay readable through the returned bufio.Reader and the returned conn.
func (w *h1Response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.headerSent {
		return nil, nil, errors.New("ingress: hijack after the response started")
	}
	c := w.c
	c.disarmBackgroundRead()
	w.hijacked = true
	c.nc.SetDeadline(time.Time{})
	c.bw.Flush()
	var nc net.Conn = c.nc
	if c.cr.pending || c.br.Buffered() > 0 {
		nc = &prefixConn{Conn: c.nc, r: c.br}
	}
	// From here the connection is the handler's: shutdown neither waits for nor closes it (the
	// ingress tracks Upgrade tunnels itself).
	c.s.forget(c)
	c.forgotten = true
	return nc, bufio.NewReadWriter(c.br, bufio.NewWriter(c.nc)), nil
}

// finish completes the response after the handler returned.
func (w *h1Response) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headerSent {
		if w.cl < 0 && bodyAllowed(w.status) && !w.head {
			w.cl = int64(len(w.buf))
		}
		w.commit()
		return
	}
	if w.chunked {
		bw := w.c.bw
		bw.WriteString("0\r\n")
		for k, vv := range w.header {
			if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
				for _, v := range vv {
					writeField(bw, name, v)
				}
			}
		}
		bw.WriteString("\r\n")
	}
	if w.cl >= 0 && w.written < w.cl && !w.head {
		w.closeAfter = true // short body: the client must not wait for the rest on this connection
	}
}

// commit writes the status line and header, then the held-back body.
func (w *h1Response) commit() {
	w.headerSent = true
	if w.c.s.closing.Load() {
		w.closeAfter = true
	}
	if hasToken(w.header["Connection"], "close") {
		w.closeAfter = true
	}
	bodyOK := bodyAllowed(w.status)
	if bodyOK && w.cl < 0 && !w.head {
		if w.http10 {
			w.closeAfter = true // body ends with the connection
		} else {
			w.chunked = true
		}
	}
	if w.http10 && !w.closeAfter {
		w.closeAfter = true // no keep-alive negotiation for HTTP/1.0 clients
	}
	w.writeStatus(w.status)
	w.writeFields(true)
	bw := w.c.bw
	if bodyOK {
		if w.chunked {
			bw.WriteString("Transfer-Encoding: chunked\r\n")
		} else if w.cl >= 0 {
			bw.WriteString("Content-Length: ")
			bw.Write(strconv.AppendInt(bw.AvailableBuffer(), w.cl, 10))
			bw.WriteString("\r\n")
		}
	}
	if w.closeAfter {
		bw.WriteString("Connection: close\r\n")
	}
	if _, ok := w.header["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.WriteString(httpDate())
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	if len(w.buf) > 0 {
		b := w.buf
		w.buf = w.buf[:0]
		w.writeBody(b)
	}
}

func (w *h1Response) writeStatus(code int) {
	bw := w.c.bw
	if w.http10 {
		bw.WriteString("HTTP/1.0 ")
	} else {
		bw.WriteString("HTTP/1.1 ")
	}
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(code), 10))
	bw.WriteByte(' ')
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	bw.WriteString(text)
	bw.WriteString("\r\n")
}

// writeFields writes the header map; framing fields are left to commit.
func (w *h1Response) writeFields(final bool) {
	bw := w.c.bw
	for k, vv := range w.header {
		switch k {
		case "Content-Length", "Transfer-Encoding", "Connection":
			if final {
				continue
			}
		case "Trailer":
			if final && !w.chunked {
				continue
			}
		}
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
}

// writeField writes "name: value", with line breaks in the value turned into spaces (as net/http
// does) so a value can never smuggle a header.
func writeField(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	bw.WriteString(strings.TrimSpace(v))
	bw.WriteString("\r\n")
}

// httpDate is the Date header value, formatted once per second.
func httpDate() string {
	now := time.Now().Unix()
	if d := dateCache.Load(); d != nil && d.sec == now {
		return d.s
	}
	d := &cachedDate{sec: now, s: time.Unix(now, 0).UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.s
}

type cachedDate struct {
	sec int64
	s   string
}

var dateCache atomic.Pointer[cachedDate]

// countingBody counts the body bytes the handler read.
type countingBody struct {
	rc io.ReadCloser
	n  int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n += int64(n)
	return n, err
}

func (b *countingBody) Close() error { return b.rc.Close() }
