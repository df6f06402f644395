// Package l7 benchmarks the edgegate HTTP ingress against nginx and HAProxy as reverse proxies in
// front of the same small Go backend (a child process), driven by wrk, in keep-alive and
// new-connection modes. edgegate runs in-process, as the gateway runs it.
//
// Every process is started here with its own temporary config in the foreground (nginx
// -g 'daemon off;', haproxy -db), bounded in time by wrk's -d and stopped by PID; no system service
// is touched. Everything listens on 127.0.0.1.
package l7

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/ingress"
	"github.com/edgegate/edgegate/internal/procstat"
)

// Proxy names.
const (
	Direct   = "direct" // wrk straight to the backend (the ceiling of this machine)
	Edgegate = "edgegate"
	Nginx    = "nginx"
	HAProxy  = "haproxy"
)

// Modes.
const (
	KeepAlive = "keepalive"
	NewConn   = "close" // wrk -H 'Connection: close': a TCP connection per request
)

// BodySize is the backend's response body size.
const BodySize = 64

// Options bound and select the benchmark. Zero values take the defaults noted.
type Options struct {
	Duration    time.Duration // per wrk run, default 5s
	Connections int           // wrk -c, default 64
	Threads     int           // wrk -t, default 2
	Repeats     int           // runs per (proxy, mode), default 3; the median is reported
	Proxies     []string      // default: direct, edgegate, nginx, haproxy (those installed)
	Modes       []string      // default: keepalive, close
	// CPUProfile, when set, writes a CPU profile of the in-process edgegate during its first
	// run in the first mode to this file.
	CPUProfile string
	Logger     *slog.Logger
}

func (o *Options) defaults() {
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.Connections <= 0 {
		o.Connections = 64
	}
	if o.Threads <= 0 {
		o.Threads = 2
	}
	if o.Repeats <= 0 {
		o.Repeats = 3
	}
	if len(o.Proxies) == 0 {
		o.Proxies = []string{Direct, Edgegate, Nginx, HAProxy}
	}
	if len(o.Modes) == 0 {
		o.Modes = []string{KeepAlive, NewConn}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Result is one wrk run.
type Result struct {
	Proxy, Mode string
	Repeat      int
	RPS         float64
	P50, P99    time.Duration
	Requests    int64
	Errors      int64   // socket errors plus non-2xx/3xx responses
	CPUPerReq   float64 // proxy process CPU time per request, microseconds (0: direct, or unknown)
}

// Summary is the median over repeats of one (proxy, mode).
type Summary struct {
	Proxy, Mode string
	RPS         float64 // median requests/s
	P99         time.Duration
	P50         time.Duration
	Errors      int64   // total over repeats
	CPUPerReq   float64 // median proxy CPU microseconds per request
	Runs        int
}

// Report is what Run measured.
type Report struct {
	Options  Options
	Start    time.Time
	Skipped  map[string]string // proxy -> why it was not run
	Results  []Result
	Summary  []Summary
	WrkFlags string
}

// Run starts the backend and the proxies and measures each with wrk.
func Run(ctx context.Context, opt Options) (*Report, error) {
	opt.defaults()
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		return nil, fmt.Errorf("l7 bench: wrk: %w", err)
	}
	rep := &Report{Options: opt, Start: time.Now(), Skipped: map[string]string{},
		WrkFlags: fmt.Sprintf("-t%d -c%d -d%s --latency", opt.Threads, opt.Connections, opt.Duration)}
	dir, err := os.MkdirTemp("", "edgegate-l7bench-")
	if err != nil {
		return nil, fmt.Errorf("l7 bench: %w", err)
	}
	defer os.RemoveAll(dir)

	bport, stopBackend, err := startBackendProcess(ctx)
	if err != nil {
		return nil, err
	}
	defer stopBackend()

	targets := map[string]string{}               // proxy -> URL
	cpuOf := map[string]func() (uint64, error){} // proxy -> its processes' CPU ticks so far
	var stops []func()
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()
	for _, p := range opt.Proxies {
		var url string
		var stop func()
		var pid int
		var err error
		switch p {
		case Direct:
			url = fmt.Sprintf("http://127.0.0.1:%d/", bport)
		case Edgegate:
			url, stop, err = startEdgegate(bport, opt.Logger)
			// In-process: this process alone (wrk and the backend are its children).
			cpuOf[p] = func() (uint64, error) { return procstat.Process(os.Getpid()) }
		case Nginx:
			url, stop, pid, err = startNginx(dir, bport)
		case HAProxy:
			url, stop, pid, err = startHAProxy(dir, bport)
		default:
			err = fmt.Errorf("unknown proxy %q", p)
		}
		if stop != nil {
			stops = append(stops, stop)
		}
		if errors.Is(err, exec.ErrNotFound) {
			rep.Skipped[p] = err.Error()
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("l7 bench: %s: %w", p, err)
		}
		// A request through each proxy must return the backend's body before we measure it.
		if err := probe(ctx, url); err != nil {
			out, _ := os.ReadFile(filepath.Join(dir, p+".out"))
			return nil, fmt.Errorf("l7 bench: %s not serving: %w (output: %q)", p, err, out)
		}
		targets[p] = url
		if pid > 0 {
			cpuOf[p] = func() (uint64, error) { return procstat.Tree(pid) } // nginx: master + workers
		}
	}

	// One unmeasured warm-up run per proxy and mode (up to a second): connection pools, the Go
	// runtime's heap and the proxies' caches start each measured run in their steady state.
	warm := opt
	warm.Duration = min(opt.Duration, time.Second)
	for _, mode := range opt.Modes {
		for _, p := range opt.Proxies {
			if url, ok := targets[p]; ok {
				if _, err := runWrk(ctx, wrk, url, mode, warm); err != nil {
					return nil, fmt.Errorf("l7 bench: warm-up %s %s: %w", p, mode, err)
				}
			}
		}
	}

	profiled := opt.CPUProfile == ""
	for r := 0; r < opt.Repeats; r++ {
		for _, mode := range opt.Modes {
			for _, p := range opt.Proxies {
				url, ok := targets[p]
				if !ok {
					continue
				}
				if err := ctx.Err(); err != nil {
					return rep, err
				}
				var stopProf func()
				if !profiled && p == Edgegate && mode == opt.Modes[0] {
					profiled = true
					if stopProf, err = startProfile(opt.CPUProfile); err != nil {
						return nil, err
					}
				}
				cpu := cpuOf[p] // nil for direct
				var cpu0 uint64
				cpuOK := cpu != nil
				if cpuOK {
					var err error
					cpu0, err = cpu()
					cpuOK = err == nil
				}
				res, err := runWrk(ctx, wrk, url, mode, opt)
				if stopProf != nil {
					stopProf()
				}
				if cpuOK && res.Requests > 0 {
					if cpu1, err := cpu(); err == nil && cpu1 >= cpu0 {
						res.CPUPerReq = float64(cpu1-cpu0) / procstat.UserHZ * 1e6 / float64(res.Requests)
					}
				}
				if err != nil {
					return nil, fmt.Errorf("l7 bench: wrk %s %s: %w", p, mode, err)
				}
				res.Proxy, res.Mode, res.Repeat = p, mode, r
				opt.Logger.Info("l7 bench run", "proxy", p, "mode", mode, "repeat", r, "rps", res.RPS, "p99", res.P99)
				rep.Results = append(rep.Results, res)
			}
		}
	}
	rep.summarize()
	return rep, nil
}

func startProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("l7 bench: profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("l7 bench: profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

var body64 = []byte(strings.Repeat("x", BodySize-1) + "\n")

// backendEnv makes a binary that imports this package act as the benchmark backend (see init).
const backendEnv = "EDGEGATE_L7_BACKEND"

// init turns this process into the backend when started by startBackendProcess: the backend runs
// in its own process (own Go runtime, scheduler and GC) so the in-process edgegate does not share
// two Ps with it while nginx and HAProxy would not. Any binary importing the package (the bench
// main, this package's test binary) can serve; the variable is set only for that child.
func init() {
	if os.Getenv(backendEnv) != "1" {
		return
	}
	ln, err := startBackend()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("LISTEN %d\n", ln.Addr().(*net.TCPAddr).Port)
	select {} // until the parent stops us by PID (or dies: Pdeathsig)
}

// startBackendProcess re-executes the current binary as the backend and returns its port.
func startBackendProcess(ctx context.Context) (int, func(), error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, nil, fmt.Errorf("l7 bench: backend: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), backendEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, nil, fmt.Errorf("l7 bench: backend: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return 0, nil, fmt.Errorf("l7 bench: backend: %w", err)
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	portc := make(chan int, 1)
	go func() {
		var port int
		if _, err := fmt.Fscanf(out, "LISTEN %d\n", &port); err == nil {
			portc <- port
		}
		close(portc)
		io.Copy(io.Discard, out)
	}()
	select {
	case port, ok := <-portc:
		if ok {
			return port, stop, nil
		}
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	stop()
	return 0, nil, errors.New("l7 bench: backend process did not report its port")
}

// startBackend serves a 64-byte response on 127.0.0.1:0.
func startBackend() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("l7 bench: backend: %w", err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h["Content-Type"] = []string{"text/plain"}
			h["Content-Length"] = []string{strconv.Itoa(BodySize)}
			w.Write(body64)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(ln)
	return ln, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startEdgegate runs the ingress in-process with one catch-all route to the backend. The access
// log is off, as it is for nginx and HAProxy here.
func startEdgegate(bport int, log *slog.Logger) (string, func(), error) {
	port := uint16(bport)
	cfg := &config.Config{
		Services: []config.Service{{Name: "backend", Ports: []config.ServicePort{{Port: 80, TargetPort: port}},
			Backends: []config.Backend{{Address: mustAddr("127.0.0.1"), Weight: config.DefaultWeight}}}},
		Ingress: &config.Ingress{
			AccessLog: false,
			Listeners: []config.Listener{{Name: "bench", Address: "127.0.0.1:0"}},
			Routes: []config.HTTPRoute{{Name: "bench", Rules: []config.Rule{{
				Backends: []config.BackendRef{{Service: "backend", Port: 80, Weight: config.DefaultWeight}}, Retries: 1}}}},
		},
	}
	ups, err := ingress.StaticUpstreams(cfg)
	if err != nil {
		return "", nil, err
	}
	s, err := ingress.New(cfg, ups, ingress.Options{Logger: log})
	if err != nil {
		return "", nil, err
	}
	if err := s.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	}
	return "http://" + s.Addrs()[0].String() + "/", stop, nil
}

// startProc starts a proxy in the foreground of its own process group and returns a stop
// function that signals exactly that PID (then kills it if it lingers).
func startProc(dir, name string, args ...string) (func(), int, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return nil, 0, err
	}
	logf, err := os.Create(filepath.Join(dir, name+".out"))
	if err != nil {
		return nil, 0, err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, 0, fmt.Errorf("%s: %w", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done); logf.Close() }()
	stop := func() {
		pid := cmd.Process.Pid
		syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			syscall.Kill(-pid, syscall.SIGKILL) // its own process group: the master and its workers
			<-done
		}
	}
	return stop, cmd.Process.Pid, nil
}

func startNginx(dir string, bport int) (string, func(), int, error) {
	port, err := freePort()
	if err != nil {
		return "", nil, 0, err
	}
	ndir := filepath.Join(dir, "nginx")
	if err := os.MkdirAll(filepath.Join(ndir, "logs"), 0o755); err != nil {
		return "", nil, 0, err
	}
	conf := fmt.Sprintf(`worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    upstream backend {
        server 127.0.0.1:%[2]d;
        keepalive 256;
    }
    server {
        listen 127.0.0.1:%[3]d;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`, ndir, bport, port)
	cf := filepath.Join(ndir, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return "", nil, 0, err
	}
	stop, pid, err := startProc(dir, "nginx", "-p", ndir, "-c", cf, "-g", "daemon off;")
	if err != nil {
		return "", nil, 0, err
	}
	return fmt.Sprintf("http://127.0.0.1:%d/", port), stop, pid, nil
}

func startHAProxy(dir string, bport int) (string, func(), int, error) {
	port, err := freePort()
	if err != nil {
		return "", nil, 0, err
	}
	conf := fmt.Sprintf(`global
    maxconn 4096
    nbthread 2
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    http-reuse always
frontend fe
    bind 127.0.0.1:%d
    default_backend be
backend be
    server s1 127.0.0.1:%d
`, port, bport)
	cf := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return "", nil, 0, err
	}
	stop, pid, err := startProc(dir, "haproxy", "-db", "-f", cf)
	if err != nil {
		return "", nil, 0, err
	}
	return fmt.Sprintf("http://127.0.0.1:%d/", port), stop, pid, nil
}

// probe waits (bounded) until url answers with the backend's body.
func probe(ctx context.Context, url string) error {
	deadline := time.Now().Add(10 * time.Second)
	c := &http.Client{Timeout: time.Second}
	var last error
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		resp, err := c.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && len(b) == BodySize {
				c.CloseIdleConnections()
				return nil
			}
			err = fmt.Errorf("status %d, %d bytes", resp.StatusCode, len(b))
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return last
}

func runWrk(ctx context.Context, wrk, url, mode string, opt Options) (Result, error) {
	args := []string{"-t", strconv.Itoa(opt.Threads), "-c", strconv.Itoa(opt.Connections),
		"-d", fmt.Sprintf("%.0fs", max(opt.Duration.Seconds(), 1)), "--latency", "--timeout", "5s"}
	if mode == NewConn {
		args = append(args, "-H", "Connection: close")
	}
	args = append(args, url)
	cctx, cancel := context.WithTimeout(ctx, opt.Duration+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, wrk, args...).CombinedOutput()
	if err != nil {
		return Result{}, fmt.Errorf("%w: %s", err, out)
	}
	return parseWrk(string(out))
}

var (
	reRPS      = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reReqs     = regexp.MustCompile(`(\d+) requests in`)
	reLat      = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.000)?%\s+([0-9.]+)(us|ms|s)`)
	reSockErr  = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	reNon2xx3x = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// parseWrk extracts throughput, latency percentiles and errors from wrk --latency output.
func parseWrk(out string) (Result, error) {
	var r Result
	m := reRPS.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk output: %q", out)
	}
	r.RPS, _ = strconv.ParseFloat(m[1], 64)
	if m := reReqs.FindStringSubmatch(out); m != nil {
		r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	for _, m := range reLat.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]float64{"us": 1e3, "ms": 1e6, "s": 1e9}[m[3]]
		d := time.Duration(v * unit)
		if m[1] == "50" {
			r.P50 = d
		} else {
			r.P99 = d
		}
	}
	if r.P99 == 0 {
		return r, fmt.Errorf("no latency distribution in wrk output: %q", out)
	}
	if m := reSockErr.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.Errors += n
		}
	}
	if m := reNon2xx3x.FindStringSubmatch(out); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		r.Errors += n
	}
	return r, nil
}

func (rep *Report) summarize() {
	type key struct{ p, m string }
	groups := map[key][]Result{}
	var order []key
	for _, r := range rep.Results {
		k := key{r.Proxy, r.Mode}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	for _, k := range order {
		rs := groups[k]
		s := Summary{Proxy: k.p, Mode: k.m, Runs: len(rs)}
		rps := make([]float64, len(rs))
		p99 := make([]time.Duration, len(rs))
		p50 := make([]time.Duration, len(rs))
		cpu := make([]float64, len(rs))
		for i, r := range rs {
			rps[i], p99[i], p50[i], cpu[i] = r.RPS, r.P99, r.P50, r.CPUPerReq
			s.Errors += r.Errors
		}
		sort.Float64s(rps)
		sort.Float64s(cpu)
		s.CPUPerReq = cpu[len(cpu)/2]
		slices.Sort(p99)
		slices.Sort(p50)
		s.RPS, s.P99, s.P50 = rps[len(rps)/2], p99[len(p99)/2], p50[len(p50)/2]
		rep.Summary = append(rep.Summary, s)
	}
}

// Lookup returns the summary of one proxy and mode.
func (rep *Report) Lookup(proxy, mode string) (Summary, bool) {
	for _, s := range rep.Summary {
		if s.Proxy == proxy && s.Mode == mode {
			return s, true
		}
	}
	return Summary{}, false
}

// Markdown renders the medians, the edgegate ratios against nginx and HAProxy (throughput, and p99
// against the best p99 of the proxies) and every run.
func (rep *Report) Markdown() string {
	var b strings.Builder
	o := rep.Options
	fmt.Fprintf(&b, "## L7 proxy benchmark\n\nwrk %s, %d B responses, median of %d runs after a warm-up run, all on 127.0.0.1 (%s).\n\n",
		rep.WrkFlags, BodySize, o.Repeats, rep.Start.UTC().Format(time.RFC3339))
	b.WriteString("| proxy | mode | req/s | p50 | p99 | proxy CPU/req | errors |\n|---|---|---:|---:|---:|---:|---:|\n")
	for _, s := range rep.Summary {
		fmt.Fprintf(&b, "| %s | %s | %.0f | %s | %s | %s | %d |\n", s.Proxy, s.Mode, s.RPS, fmtDur(s.P50), fmtDur(s.P99), fmtCPU(s.CPUPerReq), s.Errors)
	}
	b.WriteString("\n")
	for _, mode := range o.Modes {
		eg, ok := rep.Lookup(Edgegate, mode)
		if !ok {
			continue
		}
		var parts, cpu []string
		best := eg.P99
		for _, p := range []string{Nginx, HAProxy} {
			if s, ok := rep.Lookup(p, mode); ok && s.RPS > 0 {
				parts = append(parts, fmt.Sprintf("%.2fx %s", eg.RPS/s.RPS, p))
				best = min(best, s.P99)
				if s.CPUPerReq > 0 && eg.CPUPerReq > 0 {
					cpu = append(cpu, fmt.Sprintf("%.2fx %s", eg.CPUPerReq/s.CPUPerReq, p))
				}
			}
		}
		if len(parts) > 0 {
			fmt.Fprintf(&b, "- %s: edgegate throughput %s; p99 %.2fx the best proxy p99 (%s)",
				mode, strings.Join(parts, ", "), float64(eg.P99)/float64(best), fmtDur(best))
			if len(cpu) > 0 {
				fmt.Fprintf(&b, "; CPU per request %s", strings.Join(cpu, ", "))
			}
			b.WriteString("\n")
		}
	}
	for p, why := range rep.Skipped {
		fmt.Fprintf(&b, "- %s skipped: %s\n", p, why)
	}
	b.WriteString("\n<details><summary>all runs</summary>\n\n| proxy | mode | run | req/s | p50 | p99 | proxy CPU/req | requests | errors |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rep.Results {
		fmt.Fprintf(&b, "| %s | %s | %d | %.0f | %s | %s | %s | %d | %d |\n", r.Proxy, r.Mode, r.Repeat+1, r.RPS, fmtDur(r.P50), fmtDur(r.P99), fmtCPU(r.CPUPerReq), r.Requests, r.Errors)
	}
	b.WriteString("\n</details>\n")
	return b.String()
}

// fmtCPU renders CPU microseconds per request ("-" for none: the direct case).
func fmtCPU(us float64) string {
	if us <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fus", us)
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%dus", d.Microseconds())
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
