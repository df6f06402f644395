package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgegate/edgegate/internal/netns"
)

// svcSpec is one service of an ops test configuration.
type svcSpec struct {
	name     string
	vip      string
	backends []int  // indices into tp.b
	extra    string // more YAML keys of the service, indented by 4 spaces
}

// opsConfig renders a configuration: one masquerade address, the given services (port 80 ->
// 8080 and 5201 for iperf3), conntrack options and the admin listener on the gateway's loopback.
func opsConfig(conntrack string, svcs ...svcSpec) string {
	return opsConfigQ(1, conntrack, svcs...)
}

// opsConfigQ is opsConfig with a number of TUN queues (one worker each); 0 leaves tun.queues
// out (the default: one per CPU).
func opsConfigQ(queues int, conntrack string, svcs ...svcSpec) string {
	var b strings.Builder
	q := ""
	if queues > 0 {
		q = fmt.Sprintf(", queues: %d", queues)
	}
	fmt.Fprintf(&b, `tun: {name: edge0, mtu: 1500%s}
nat:
  masquerade_addresses: [198.18.250.1]
node_ports:
  addresses: [198.18.1.1]
admin: {listen: "127.0.0.1:9469", socket: "%s"}
`, q, adminSocketVar)
	if conntrack != "" {
		fmt.Fprintf(&b, "conntrack: %s\n", conntrack)
	}
	b.WriteString("services:\n")
	for _, s := range svcs {
		fmt.Fprintf(&b, "  - name: %s\n    addresses: [%s]\n", s.name, s.vip)
		b.WriteString("    ports:\n      - {name: http, port: 80, target_port: 8080}\n      - {name: iperf, port: 5201}\n")
		b.WriteString("    scheduler: round_robin\n    backends:\n")
		for _, i := range s.backends {
			fmt.Fprintf(&b, "      - {address: 198.19.%d.2}\n", i+1)
		}
		if s.extra != "" {
			b.WriteString(s.extra)
		}
	}
	return b.String()
}

// nsClient is an HTTP client whose connections are created inside ns (one new connection per
// request, so every request is a new flow through the gateway).
func nsClient(ns *netns.NS, timeout time.Duration) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() (err error) {
			d := net.Dialer{Timeout: timeout}
			c, err = d.DialContext(ctx, network, addr)
			return
		})
		return c, err
	}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
}

// publicPaths are what admin.listen serves; the rest of the API is on the socket.
var publicPaths = []string{"/metrics", "/healthz", "/readyz"}

// adminDo calls the admin API of the edgegate running in the gateway namespace: metrics and
// probes on its TCP listener, the rest on its Unix socket.
func (tp *topo) adminDo(method, path string) (int, string, error) {
	base, hc := "http://127.0.0.1:9469", nsClient(tp.gw, 10*time.Second)
	if p, _, _ := strings.Cut(path, "?"); !slices.Contains(publicPaths, p) {
		base, hc = "http://edgegate", socketClient(tp.socket(), 10*time.Second)
	}
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// socketClient is an HTTP client over the Unix socket at path.
func socketClient(path string, timeout time.Duration) *http.Client {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: dial}}
}

// adminGet is adminDo GET that fails the test unless the answer is 200.
func (tp *topo) adminGet(t *testing.T, path string) string {
	t.Helper()
	code, body, err := tp.adminDo(http.MethodGet, path)
	if err != nil || code != http.StatusOK {
		t.Fatalf("admin GET %s: %d %v %s", path, code, err, body)
	}
	return body
}

// metrics is one scrape: series (name plus sorted label text as exposed) to value.
type metrics map[string]float64

func (tp *topo) scrape(t *testing.T) metrics {
	t.Helper()
	m := metrics{}
	sc := bufio.NewScanner(strings.NewReader(tp.adminGet(t, "/metrics")))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", l, err)
		}
		m[l[:i]] = v
	}
	return m
}

// get returns the value of the series name whose labels include every "k=v" pair given (summed
// over all matching series).
func (m metrics) get(name string, labels ...string) float64 {
	sum := 0.0
	for k, v := range m {
		n, rest, _ := strings.Cut(k, "{")
		if n != name {
			continue
		}
		ok := true
		for _, l := range labels {
			kv := strings.SplitN(l, "=", 2)
			if !strings.Contains(rest, kv[0]+`="`+kv[1]+`"`) {
				ok = false
				break
			}
		}
		if ok {
			sum += v
		}
	}
	return sum
}

// has reports whether any series of name exists.
func (m metrics) has(name string) bool {
	for k := range m {
		if n, _, _ := strings.Cut(k, "{"); n == name {
			return true
		}
	}
	return false
}

// reload rewrites the configuration file and sends SIGHUP, then waits until the reload counter
// shows the attempt (success or failure).
func (tp *topo) reload(t *testing.T, path, yaml string) {
	t.Helper()
	before := tp.scrape(t).get("edgegate_config_reloads_total")
	must(t, os.WriteFile(path, []byte(tp.render(yaml)), 0o644))
	must(t, tp.eg.Process.Signal(syscall.SIGHUP))
	waitFor(t, 5*time.Second, "reload counted", func() bool {
		return tp.scrape(t).get("edgegate_config_reloads_total") > before
	})
}

// backendServer is an HTTP server on :8080 in one backend namespace answering the backend name,
// which a test can stop and start again (a dying backend).
type backendServer struct {
	ns   *netns.NS
	name string
	mu   sync.Mutex
	srv  *http.Server
	slow atomic.Int32 // /slow requests in progress
}

func (tp *topo) serveBackend(t *testing.T, i int) *backendServer {
	t.Helper()
	bs := &backendServer{ns: tp.b[i], name: backendNames[i]}
	must(t, bs.start())
	t.Cleanup(bs.stop)
	return bs
}

func (bs *backendServer) start() error {
	var ln net.Listener
	if err := bs.ns.Do(func() (err error) { ln, err = net.Listen("tcp", ":8080"); return }); err != nil {
		return err
	}
	name := bs.name
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		bs.slow.Add(1)
		defer bs.slow.Add(-1)
		time.Sleep(1500 * time.Millisecond)
		io.WriteString(w, name)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	bs.mu.Lock()
	bs.srv = srv
	bs.mu.Unlock()
	go srv.Serve(ln)
	return nil
}

func (bs *backendServer) stop() {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.srv != nil {
		bs.srv.Close()
		bs.srv = nil
	}
}

// get fetches url through a new connection from ns and returns the body.
func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// answers makes n requests and counts the bodies (errors under "error").
func answers(c *http.Client, url string, n int) map[string]int {
	got := map[string]int{}
	for range n {
		body, err := get(c, url)
		if err != nil {
			got["error"]++
			continue
		}
		got[body]++
	}
	return got
}

// startIperfServers runs iperf3 -s on every backend and waits until they listen.
func (tp *topo) startIperfServers(t *testing.T) {
	t.Helper()
	for _, b := range tp.b {
		_, err := b.Start(context.Background(), "iperf3", "-s", "-p", "5201")
		must(t, err)
	}
	waitFor(t, 5*time.Second, "iperf3 servers listening", func() bool {
		for _, b := range tp.b {
			out, _ := b.Exec("ss", "-ltn", "sport = :5201")
			if !strings.Contains(out, "5201") {
				return false
			}
		}
		return true
	})
}

// containsAll reports whether s contains every part.
func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
