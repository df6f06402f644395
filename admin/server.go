package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultListen is the admin TCP address when neither config nor flag gives one.
const DefaultListen = "127.0.0.1:9469"

// DefaultSocket is the admin Unix socket when neither config nor flag gives one.
const DefaultSocket = "/run/edgegate/admin.sock"

// Limits of the admin servers (both listeners).
const (
	ReadHeaderTimeout = 10 * time.Second // a request head must arrive within this
	ReadTimeout       = 30 * time.Second // a whole request (the API takes no bodies)
	WriteTimeout      = 30 * time.Second // a response, unless streamed (below) or a profile
	IdleTimeout       = 60 * time.Second // a keep-alive connection between requests
	// StreamStallTimeout ends a streamed response (/capture, /conntrack) whose reader has taken
	// nothing for this long: the write deadline is pushed forward by this much as data goes out.
	StreamStallTimeout = 10 * time.Second
	// MaxHeaderBytes bounds a request head.
	MaxHeaderBytes = 16 << 10
)

// Options configure a Server.
type Options struct {
	Listen      string // host:port for /metrics, /healthz, /readyz (config admin.listen); "off": none
	Socket      string // Unix socket for the whole API (config admin.socket); "off" or "": none
	SocketGroup string // group name or id given access to the socket (mode 0660); "": 0600
	// SocketDirOwner is the uid and gid the socket's directory is given when Start creates it,
	// so the process can still remove the socket at exit after it switched to that user
	// (nil: left to root).
	SocketDirOwner *[2]int
	Pprof          bool // mount net/http/pprof under /debug/pprof/ on the socket (config admin.pprof)
	Source         Source
	Registry       *prometheus.Registry // what /metrics serves (see NewRegistry)
	Logger         *slog.Logger
	Version        string
}

// NewRegistry returns a registry with the data-path collector c, the Go runtime and process
// collectors and edgegate_build_info. The ingress registers its own metrics on it.
func NewRegistry(c *Collector, version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "edgegate_build_info",
		Help:        "Always 1; labels carry the version and the Go version.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	info.Set(1)
	reg.MustRegister(info)
	return reg
}

// Server is the admin API: a public TCP listener (metrics and probes) and a private Unix socket
// (everything), as HAProxy splits its stats page from its stats socket.
type Server struct {
	opt     Options
	log     *slog.Logger
	health  atomic.Pointer[Health]
	bgp     atomic.Pointer[BGPStatus]
	busy    atomic.Bool // a capture is running
	pub     *http.Server
	priv    *http.Server
	ln      net.Listener
	sock    *unixSocket
	stopped chan struct{} // closed by Shutdown: ends captures
	lim     limits
}

// limits are the timeouts above; tests shorten them.
type limits struct {
	readHeader, read, write, idle, stall time.Duration
}

var defaultLimits = limits{ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout, StreamStallTimeout}

// NewServer builds the handlers; Start listens.
func NewServer(opt Options) *Server { return newServer(opt, defaultLimits) }

func newServer(opt Options, lim limits) *Server {
	if opt.Listen == "" {
		opt.Listen = DefaultListen
	}
	s := &Server{opt: opt, log: opt.Logger, stopped: make(chan struct{}), lim: lim}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.pub = s.httpServer(s.PublicHandler())
	s.priv = s.httpServer(s.Handler())
	return s
}

func (s *Server) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           s.deadlines(h),
		ReadHeaderTimeout: s.lim.readHeader,
		ReadTimeout:       s.lim.read,
		IdleTimeout:       s.lim.idle,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// deadlines sets each response's write deadline (instead of http.Server.WriteTimeout, which
// net/http/pprof reads as the longest profile allowed): streams push it forward as they write,
// profiles get their duration on top.
func (s *Server) deadlines(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := s.lim.write
		if strings.HasPrefix(r.URL.Path, "/debug/pprof/") {
			if sec, err := strconv.Atoi(r.URL.Query().Get("seconds")); err == nil && sec > 0 {
				d += time.Duration(sec) * time.Second
			}
		}
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
		h.ServeHTTP(w, r)
	})
}

// SetHealth installs the health view /status reports (nil: no checks).
func (s *Server) SetHealth(h Health) {
	if h == nil {
		s.health.Store(nil)
		return
	}
	s.health.Store(&h)
}

func (s *Server) healthView() Health {
	if h := s.health.Load(); h != nil {
		return *h
	}
	return nil
}

// PublicHandler serves what the TCP listener may: /metrics, /healthz and /readyz. Every other
// path answers 404 naming the socket.
func (s *Server) PublicHandler() http.Handler {
	mux := http.NewServeMux()
	s.public(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpError(w, http.StatusNotFound, fmt.Errorf("%s: not served here; the admin API is on the Unix socket (admin.socket)", r.URL.Path))
	})
	return mux
}

func (s *Server) public(mux *http.ServeMux) {
	reg := s.opt.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", s.readyz)
}

// Handler returns the whole API, as the Unix socket serves it (exported for tests).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.public(mux)
	mux.HandleFunc("GET /config", s.config)
	mux.HandleFunc("GET /conntrack", s.conntrackList)
	mux.HandleFunc("DELETE /conntrack", s.conntrackDelete)
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		st := StatusOf(s.opt.Source, s.healthView(), s.opt.Version)
		st.BGP = s.bgpStatus()
		writeJSON(w, st)
	})
	mux.HandleFunc("GET /capture", s.capture)
	if s.opt.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Start opens the TCP listener and the Unix socket (each unless off) and serves in the background.
func (s *Server) Start() error {
	if s.opt.Listen != "off" {
		ln, err := net.Listen("tcp", s.opt.Listen)
		if err != nil {
			return fmt.Errorf("admin listen %s: %w", s.opt.Listen, err)
		}
		s.ln = ln
		s.serve(s.pub, ln)
		if !loopbackListen(s.opt.Listen) {
			s.log.Warn("admin.listen is not a loopback address: /metrics, /healthz and /readyz are reachable from the network", "addr", s.opt.Listen)
		}
		s.log.Info("admin listener (metrics, probes)", "addr", ln.Addr().String())
	}
	if s.opt.Socket != "" && s.opt.Socket != "off" {
		sock, err := listenUnix(s.opt.Socket, s.opt.SocketGroup, s.opt.SocketDirOwner)
		if err != nil {
			s.closeListeners()
			return err
		}
		s.sock = sock
		s.serve(s.priv, sock.ln)
		s.log.Info("admin API socket", "path", s.opt.Socket, "group", s.opt.SocketGroup, "pprof", s.opt.Pprof)
	}
	return nil
}

func (s *Server) serve(srv *http.Server, ln net.Listener) {
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server stopped", "err", err)
		}
	}()
}

func (s *Server) closeListeners() {
	if s.ln != nil {
		s.ln.Close()
	}
	if s.sock != nil {
		s.sock.close(s.log)
	}
}

// loopbackListen reports whether a host:port listens on loopback only ("localhost" included).
func loopbackListen(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// Addr is the bound TCP address (after Start; nil when admin.listen is off).
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Shutdown ends captures and stops both listeners, waiting for requests until ctx ends, and
// removes the socket.
func (s *Server) Shutdown(ctx context.Context) error {
	select {
	case <-s.stopped:
	default:
		close(s.stopped)
	}
	err := errors.Join(s.pub.Shutdown(ctx), s.priv.Shutdown(ctx))
	if s.sock != nil {
		s.sock.close(s.log)
	}
	return err
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func httpError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	switch {
	case s.opt.Source.Config() == nil:
		http.Error(w, "no configuration loaded", http.StatusServiceUnavailable)
	case !s.opt.Source.Ready():
		http.Error(w, "not ready: data path (TUN, routes) or start (privilege drop) not finished, or shutting down", http.StatusServiceUnavailable)
	default:
		fmt.Fprintln(w, "ready")
	}
}

func (s *Server) config(w http.ResponseWriter, r *http.Request) {
	cfg := s.opt.Source.Config()
	if cfg == nil {
		httpError(w, http.StatusServiceUnavailable, errors.New("no configuration loaded"))
		return
	}
	b, err := cfg.Effective()
	if err != nil {
		httpError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Write(b)
}

// conntrackList streams the matching flows as a JSON array, row by row as the table walk finds
// them: the response never holds the table in memory, and a reader that stalls for
// StreamStallTimeout ends it.
func (s *Server) conntrackList(w http.ResponseWriter, r *http.Request) {
	f, err := ParseFlowFilter(r.URL.Query())
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 0 {
			httpError(w, http.StatusBadRequest, fmt.Errorf("limit %q: want a count", v))
			return
		}
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	sep := "[\n"
	n := 0
	err = StreamFlows(s.opt.Source, f, limit, func(fl *Flow) error {
		if n%streamChunkRows == 0 {
			rc.SetWriteDeadline(time.Now().Add(s.lim.stall))
		}
		n++
		if _, err := io.WriteString(w, sep); err != nil {
			return err
		}
		sep = ","
		return enc.Encode(fl)
	})
	if err != nil {
		s.log.Info("conntrack listing ended early", "rows", n, "err", err)
		return
	}
	if n == 0 {
		io.WriteString(w, "[")
	}
	io.WriteString(w, "]\n")
}

// streamChunkRows: how many /conntrack rows may go out before the write deadline is pushed on.
const streamChunkRows = 256

func (s *Server) conntrackDelete(w http.ResponseWriter, r *http.Request) {
	f, err := ParseFlowFilter(r.URL.Query())
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	if f.Empty() && r.URL.Query().Get("all") != "true" {
		httpError(w, http.StatusBadRequest, errors.New("no filter: pass all=true to delete every flow"))
		return
	}
	n := DeleteFlows(s.opt.Source, f)
	s.log.Info("conntrack entries deleted through the admin API", "filter", r.URL.RawQuery, "deleted", n)
	writeJSON(w, map[string]int{"deleted": n})
}

// capture streams a pcap: count=N, duration=10s, filter=EXPR, snaplen=N.
func (s *Server) capture(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var req CaptureRequest
	var err error
	if v := q.Get("count"); v != "" {
		if req.Count, err = strconv.Atoi(v); err != nil || req.Count < 0 {
			httpError(w, http.StatusBadRequest, fmt.Errorf("count %q: want a count", v))
			return
		}
	}
	if v := q.Get("duration"); v != "" {
		if req.Duration, err = time.ParseDuration(v); err != nil {
			httpError(w, http.StatusBadRequest, fmt.Errorf("duration: %w", err))
			return
		}
	}
	if v := q.Get("snaplen"); v != "" {
		if req.Snaplen, err = strconv.Atoi(v); err != nil {
			httpError(w, http.StatusBadRequest, fmt.Errorf("snaplen: %w", err))
			return
		}
	}
	req.Filter = q.Get("filter")
	if _, err := ParseCaptureFilter(req.Filter); err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	if s.busy.Load() {
		httpError(w, http.StatusConflict, errCaptureBusy)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/vnd.tcpdump.pcap")
	done := make(chan struct{})
	go func() {
		select {
		case <-r.Context().Done():
		case <-s.stopped:
		}
		close(done)
	}()
	// Each flush pushes the write deadline on: a reader that stops reading blocks a write until
	// the deadline, which ends the capture and removes the tap.
	flush := func() {
		rc.SetWriteDeadline(time.Now().Add(s.lim.stall))
		rc.Flush()
	}
	rc.SetWriteDeadline(time.Now().Add(s.lim.stall))
	n, dropped, err := runCapture(s.opt.Source, &s.busy, req, w, flush, done)
	if errors.Is(err, errCaptureBusy) {
		httpError(w, http.StatusConflict, err)
		return
	}
	s.log.Info("capture finished", "packets", n, "dropped", dropped, "filter", req.Filter, "err", err)
}
