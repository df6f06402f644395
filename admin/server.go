package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultListen is the admin address when neither config nor flag gives one.
const DefaultListen = "127.0.0.1:9469"

// Options configure a Server.
type Options struct {
	Listen   string // host:port; loopback by default (config admin.listen)
	Pprof    bool   // mount net/http/pprof under /debug/pprof/ (config admin.pprof)
	Source   Source
	Registry *prometheus.Registry // what /metrics serves (see NewRegistry)
	Logger   *slog.Logger
	Version  string
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

// Server is the admin HTTP listener.
type Server struct {
	opt     Options
	log     *slog.Logger
	health  atomic.Pointer[Health]
	busy    atomic.Bool // a capture is running
	srv     *http.Server
	ln      net.Listener
	stopped chan struct{} // closed by Shutdown: ends captures
}

// NewServer builds the handlers; Start listens.
func NewServer(opt Options) *Server {
	if opt.Listen == "" {
		opt.Listen = DefaultListen
	}
	s := &Server{opt: opt, log: opt.Logger, stopped: make(chan struct{})}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	return s
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

// Handler returns the API's routes (exported for tests).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	reg := s.opt.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /config", s.config)
	mux.HandleFunc("GET /conntrack", s.conntrackList)
	mux.HandleFunc("DELETE /conntrack", s.conntrackDelete)
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, StatusOf(s.opt.Source, s.healthView(), s.opt.Version))
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

// Start listens on the configured address and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.opt.Listen)
	if err != nil {
		return fmt.Errorf("admin listen %s: %w", s.opt.Listen, err)
	}
	s.ln = ln
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server stopped", "err", err)
		}
	}()
	s.log.Info("admin API listening", "addr", ln.Addr().String(), "pprof", s.opt.Pprof)
	return nil
}

// Addr is the bound address (after Start).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown ends captures and stops the listener, waiting for requests until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	select {
	case <-s.stopped:
	default:
		close(s.stopped)
	}
	return s.srv.Shutdown(ctx)
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
		http.Error(w, "data path not ready (TUN, routes)", http.StatusServiceUnavailable)
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
	writeJSON(w, ListFlows(s.opt.Source, f, limit))
}

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
	n, dropped, err := runCapture(s.opt.Source, &s.busy, req, w, func() { rc.Flush() }, done)
	if errors.Is(err, errCaptureBusy) {
		httpError(w, http.StatusConflict, err)
		return
	}
	s.log.Info("capture finished", "packets", n, "dropped", dropped, "filter", req.Filter, "err", err)
}
