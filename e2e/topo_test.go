package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgegate/edgegate/internal/netns"
)

// topo is the test network: clients, a router with a small-MTU link, the gateway node, three
// backends, two inside hosts (egress sources) and an "internet" host.
//
//	c1 ──────────────┐                 ┌── b1 198.19.1.2
//	c2 ── r (1280) ──┤ gw (edgegate)   ├── b2 198.19.2.2
//	p1, p2 (egress) ─┘                 ├── b3 198.19.3.2
//	                                   └── inet 198.51.100.100
type topo struct {
	t                   *testing.T
	gw, c1, c2, r, inet *netns.NS
	p1, p2              *netns.NS
	b                   [3]*netns.NS
	dir                 string
	eg                  *exec.Cmd
	egLog               *lockedBuffer
}

var backendNames = [3]string{"b1", "b2", "b3"}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func newTopo(t *testing.T) *topo {
	t.Helper()
	netns.Require(t)
	tp := &topo{t: t, dir: t.TempDir()}
	tp.gw = netns.ForTest(t, "eg-gw")
	tp.c1 = netns.ForTest(t, "eg-c1")
	tp.c2 = netns.ForTest(t, "eg-c2")
	tp.r = netns.ForTest(t, "eg-r")
	tp.inet = netns.ForTest(t, "eg-in")
	tp.p1 = netns.ForTest(t, "eg-p1")
	tp.p2 = netns.ForTest(t, "eg-p2")
	for i := range tp.b {
		tp.b[i] = netns.ForTest(t, "eg-"+backendNames[i])
	}
	gw := tp.gw
	must(t, gw.Sysctl("net.ipv4.ip_forward", "1"))
	must(t, gw.Sysctl("net.ipv6.conf.all.forwarding", "1"))
	must(t, gw.Sysctl("net.ipv4.conf.all.rp_filter", "0"))
	must(t, tp.r.Sysctl("net.ipv4.ip_forward", "1"))
	must(t, tp.r.Sysctl("net.ipv6.conf.all.forwarding", "1"))

	// Client 1, directly attached.
	must(t, netns.Link(gw, "gw-c1", tp.c1, "eth0", 1500))
	must(t, gw.Addr("gw-c1", "198.18.1.1/24", "2001:db8:1::1/64"))
	must(t, tp.c1.Addr("eth0", "198.18.1.2/24", "2001:db8:1::2/64"))
	must(t, tp.c1.Route("default", "via", "198.18.1.1"))
	must(t, tp.c1.Route("-6", "default", "via", "2001:db8:1::1"))

	// Client 2 behind a router whose link toward the client has a smaller MTU than the client's
	// own: the client advertises a 1460-byte MSS, so large segments hit the 1280-byte hop.
	must(t, netns.Link(gw, "gw-r", tp.r, "eth0", 1500))
	must(t, gw.Addr("gw-r", "198.18.2.1/24", "2001:db8:2::1/64"))
	must(t, tp.r.Addr("eth0", "198.18.2.2/24", "2001:db8:2::2/64"))
	must(t, netns.Link(tp.r, "eth1", tp.c2, "eth0", 1500))
	must(t, tp.r.IP("link", "set", "eth1", "mtu", "1280"))
	must(t, tp.r.Addr("eth1", "198.18.3.1/24", "2001:db8:3::1/64"))
	must(t, tp.c2.Addr("eth0", "198.18.3.2/24", "2001:db8:3::2/64"))
	must(t, tp.r.Route("default", "via", "198.18.2.1"))
	must(t, tp.r.Route("-6", "default", "via", "2001:db8:2::1"))
	must(t, tp.c2.Route("default", "via", "198.18.3.1"))
	must(t, tp.c2.Route("-6", "default", "via", "2001:db8:3::1"))
	must(t, gw.Route("198.18.3.0/24", "via", "198.18.2.2"))
	must(t, gw.Route("-6", "2001:db8:3::/64", "via", "2001:db8:2::2"))

	// Backends.
	for i, b := range tp.b {
		gif := fmt.Sprintf("gw-b%d", i+1)
		must(t, netns.Link(gw, gif, b, "eth0", 1500))
		must(t, gw.Addr(gif, fmt.Sprintf("198.19.%d.1/24", i+1), fmt.Sprintf("2001:db8:19:%d::1/64", i+1)))
		must(t, b.Addr("eth0", fmt.Sprintf("198.19.%d.2/24", i+1), fmt.Sprintf("2001:db8:19:%d::2/64", i+1)))
		must(t, b.Route("default", "via", fmt.Sprintf("198.19.%d.1", i+1)))
		must(t, b.Route("-6", "default", "via", fmt.Sprintf("2001:db8:19:%d::1", i+1)))
	}

	// Inside hosts (egress sources) and the internet host.
	for i, p := range []*netns.NS{tp.p1, tp.p2} {
		gif := fmt.Sprintf("gw-p%d", i+1)
		must(t, netns.Link(gw, gif, p, "eth0", 1500))
		must(t, gw.Addr(gif, fmt.Sprintf("198.18.%d.1/24", 65+i), fmt.Sprintf("2001:db8:64:%d::1/64", i+1)))
		must(t, p.Addr("eth0", fmt.Sprintf("198.18.%d.2/24", 65+i), fmt.Sprintf("2001:db8:64:%d::2/64", i+1)))
		must(t, p.Route("default", "via", fmt.Sprintf("198.18.%d.1", 65+i)))
		must(t, p.Route("-6", "default", "via", fmt.Sprintf("2001:db8:64:%d::1", i+1)))
	}
	must(t, netns.Link(gw, "gw-in", tp.inet, "eth0", 1500))
	must(t, gw.Addr("gw-in", "198.51.100.1/24", "2001:db8:51::1/64"))
	must(t, tp.inet.Addr("eth0", "198.51.100.100/24", "2001:db8:51::100/64"))
	// The internet host knows only the pool addresses (203.0.113.0/24, 2001:db8:113::/64) as
	// reachable via the node.
	must(t, tp.inet.Route("203.0.113.0/24", "via", "198.51.100.1"))
	must(t, tp.inet.Route("-6", "2001:db8:113::/64", "via", "2001:db8:51::1"))
	return tp
}

// lockedBuffer collects a subprocess's output for failure messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// writeConfig writes a config file into the test directory and returns its path.
func (tp *topo) writeConfig(name, yaml string) string {
	p := filepath.Join(tp.dir, name)
	must(tp.t, os.WriteFile(p, []byte(tp.render(yaml)), 0o644))
	return p
}

// adminSocketVar in a configuration stands for the test's admin socket (socket()): each test
// has its own, never the default path another edgegate on the machine may be using.
const adminSocketVar = "@ADMIN_SOCKET@"

func (tp *topo) render(yaml string) string {
	return strings.ReplaceAll(yaml, adminSocketVar, tp.socket())
}

// socket is the test's admin socket; its directory does not exist before edgegate creates it.
func (tp *topo) socket() string { return filepath.Join(tp.dir, "run", "admin.sock") }

// startEdgegate runs edgegate in the gateway namespace and waits until its routes are in place.
func (tp *topo) startEdgegate(cfgPath string) { tp.startEdgegateWith(edgegateBin, cfgPath) }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serveBackends starts, in each backend namespace, an HTTP server on :8080 answering its name (and
// /remote with the client address it sees, /big?n= with n bytes), a UDP echo on :53 answering
// "<name> <payload>", and an HTTP server on :8081 only on b1 and b2 (b3 refuses).
func (tp *topo) serveBackends() {
	t := tp.t
	for i, b := range tp.b {
		name := backendNames[i]
		mux := http.NewServeMux()
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })
		mux.HandleFunc("/remote", func(w http.ResponseWriter, r *http.Request) {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			io.WriteString(w, host)
		})
		mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
			var n int
			fmt.Sscan(r.URL.Query().Get("n"), &n)
			chunk := bytes.Repeat([]byte("x"), 64<<10)
			for n > 0 {
				k := min(n, len(chunk))
				w.Write(chunk[:k])
				n -= k
			}
		})
		ports := []string{":8080"}
		if i < 2 {
			ports = append(ports, ":8081")
		}
		for _, port := range ports {
			var ln net.Listener
			must(t, b.Do(func() (err error) { ln, err = net.Listen("tcp", port); return }))
			srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })
		}
		var pc net.PacketConn
		must(t, b.Do(func() (err error) { pc, err = net.ListenPacket("udp", ":53"); return }))
		t.Cleanup(func() { pc.Close() })
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo(append([]byte(name+" "), buf[:n]...), from)
			}
		}()
	}
}

// curl runs curl in ns and returns its stdout.
func curl(t *testing.T, ns *netns.NS, args ...string) string {
	t.Helper()
	out, err := ns.Exec(append([]string{"curl", "-sS", "--max-time", "10"}, args...)...)
	if err != nil {
		t.Fatalf("curl %v: %v", args, err)
	}
	return out
}

// spread runs n requests (one connection each) from ns with a shell loop and counts answers.
func spread(t *testing.T, ns *netns.NS, url string, n int) map[string]int {
	t.Helper()
	script := fmt.Sprintf("for i in $(seq %d); do curl -sS --max-time 5 -g %q; echo; done", n, url)
	out, err := ns.Exec("sh", "-c", script)
	if err != nil {
		t.Fatalf("request loop: %v", err)
	}
	got := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			got[l]++
		}
	}
	return got
}

// newTopoGatewayOnly creates just a gateway namespace (for tests that only run edgegate).
func newTopoGatewayOnly(t *testing.T) *topo {
	t.Helper()
	netns.Require(t)
	return &topo{t: t, dir: t.TempDir(), gw: netns.ForTest(t, "eg-gw")}
}

// stopEdgegate sends SIGTERM and expects edgegate to exit 0 within 10 s.
func (tp *topo) stopEdgegate(t *testing.T) {
	t.Helper()
	must(t, tp.eg.Process.Signal(syscall.SIGTERM))
	select {
	case <-tp.gw.Exited(tp.eg):
	case <-time.After(10 * time.Second):
		t.Fatal("edgegate did not exit within 10s of SIGTERM")
	}
	if code := tp.eg.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}
