package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

const ingressSection = `ingress:
  drain_timeout: 5s
  listeners:
    - {name: plain, address: "198.18.1.1:8000"}
  routes:
    - name: web
      rules:
        - backends: [{service: web, port: 80}]
`

// TestOpsAdmin exercises the operations surface of one running edgegate: metrics after real
// traffic, the conntrack and status CLI, packet capture read back by tcpdump, the L7 ingress
// started by run (and its metrics on the same registry), and a graceful SIGTERM that lets an L7
// request in flight finish.
func TestOpsAdmin(t *testing.T) {
	tp := newTopo(t)
	var srv [3]*backendServer
	for i := range tp.b {
		srv[i] = tp.serveBackend(t, i)
	}
	cfg := opsConfig("", svcSpec{name: "web", vip: "198.18.200.10", backends: []int{0, 1, 2}}) + ingressSection
	cfgPath := tp.writeConfig("edgegate.yaml", cfg)
	tp.startEdgegate(cfgPath)
	tp.waitReady(t)
	c := nsClient(tp.c1, 2*time.Second)
	if got := answers(c, "http://198.18.200.10/", 6); got["b1"] != 2 || got["b2"] != 2 || got["b3"] != 2 {
		t.Fatalf("VIP answers %v", got)
	}

	t.Run("Metrics", func(t *testing.T) {
		m := tp.scrape(t)
		for _, tc := range []struct {
			name   string
			labels []string
			min    float64
		}{
			{"edgegate_packets_total", []string{"direction=rx"}, 30},
			{"edgegate_bytes_total", []string{"direction=tx"}, 1000},
			{"edgegate_packet_verdicts_total", []string{"verdict=forwarded"}, 30},
			{"edgegate_conntrack_flows_created_total", nil, 6},
			{"edgegate_conntrack_entries", []string{"protocol=tcp"}, 6},
			{"edgegate_backend_selections_total", []string{"service=web", "backend=198.19.1.2"}, 2},
			{"edgegate_snat_ports_in_use", []string{"address=198.18.250.1", "protocol=tcp"}, 6},
			{"edgegate_ready", nil, 1},
			{"edgegate_build_info", nil, 1},
		} {
			if v := m.get(tc.name, tc.labels...); v < tc.min {
				t.Errorf("%s%v = %v, want >= %v", tc.name, tc.labels, v, tc.min)
			}
		}
		for _, name := range []string{"edgegate_drops_total", "edgegate_conntrack_insert_failures_total", "edgegate_backend_active_flows",
			"edgegate_backend_state", "edgegate_config_reloads_total", "edgegate_config_last_reload_success_timestamp_seconds"} {
			if !m.has(name) {
				t.Errorf("metric %s missing", name)
			}
		}
		for _, p := range []string{"/healthz", "/readyz", "/config", "/status"} {
			tp.adminGet(t, p)
		}
		if code, _, _ := tp.adminDo(http.MethodGet, "/debug/pprof/"); code != http.StatusNotFound {
			t.Errorf("pprof answered %d with admin.pprof off", code)
		}
	})

	t.Run("ConntrackCLI", func(t *testing.T) {
		// The CLI finds the socket in the configuration file (-c) or is given it (-socket).
		out, err := tp.gw.Exec(edgegateBin, "conntrack", "list", "-c", cfgPath, "-p", "tcp", "-backend", "198.19.2.2")
		if err != nil {
			t.Fatalf("conntrack list: %v\n%s", err, out)
		}
		row := regexp.MustCompile(`(?m)^tcp\s+6 \d+ TIME_WAIT src=198\.18\.1\.2 dst=198\.18\.200\.10 sport=\d+ dport=80 src=198\.19\.2\.2 dst=198\.18\.250\.1 sport=8080 dport=\d+ \[ASSURED\] service=web$`)
		if n := len(row.FindAllString(out, -1)); n != 2 {
			t.Errorf("want 2 conntrack -L style rows for b2, got %d:\n%s", n, out)
		}
		out, err = tp.gw.Exec(edgegateBin, "conntrack", "delete", "-socket", tp.socket(), "-service", "web", "-backend", "198.19.2.2")
		if err != nil || !strings.Contains(out, "2 flow entries have been deleted") {
			t.Errorf("conntrack delete: %v\n%s", err, out)
		}
		if left := tp.flows(t, "backend=198.19.2.2"); len(left) != 0 {
			t.Errorf("%d flows left after delete", len(left))
		}
		if out, err := tp.gw.Exec(edgegateBin, "conntrack", "delete", "-socket", tp.socket()); err == nil {
			t.Errorf("delete without filter succeeded: %s", out)
		}
	})

	t.Run("Status", func(t *testing.T) {
		out, err := tp.gw.Exec(edgegateBin, "status", "-c", cfgPath)
		if err != nil {
			t.Fatalf("status: %v\n%s", err, out)
		}
		for _, b := range []string{"198.19.1.2", "198.19.2.2", "198.19.3.2"} {
			if !regexp.MustCompile(b + `\s+1\s+active\s+unchecked\s+\d+`).MatchString(out) {
				t.Errorf("status lacks a row for %s:\n%s", b, out)
			}
		}
	})

	t.Run("Capture", func(t *testing.T) {
		if _, err := exec.LookPath("tcpdump"); err != nil {
			t.Fatalf("tcpdump not installed: %v", err)
		}
		file := filepath.Join(t.TempDir(), "cap.pcap")
		capture, err := tp.gw.Start(context.Background(), edgegateBin, "capture", "-socket", tp.socket(), "-o", file, "-n", "40", "-d", "10s", "-filter", "tcp")
		must(t, err)
		// Traffic until the capture has its 40 packets (the tap is installed asynchronously).
		deadline := time.Now().Add(10 * time.Second)
		for {
			select {
			case <-tp.gw.Exited(capture):
			default:
				if time.Now().Before(deadline) {
					get(c, "http://198.18.200.10/")
					continue
				}
			}
			break
		}
		if err := tp.gw.Wait(capture); err != nil {
			t.Fatalf("capture: %v\n%s", err, tp.gw.Output(capture))
		}
		if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("capture file %v, %v: want mode 0600 (it holds every payload)", fi, err)
		}
		out, err := exec.Command("tcpdump", "-n", "-r", file).CombinedOutput()
		if err != nil {
			t.Fatalf("tcpdump -r: %v\n%s", err, out)
		}
		lines := strings.Count(string(out), "\n")
		before := regexp.MustCompile(`IP 198\.18\.1\.2\.\d+ > 198\.18\.200\.10\.80: Flags`)
		after := regexp.MustCompile(`IP 198\.18\.250\.1\.\d+ > 198\.19\.[123]\.2\.8080: Flags`)
		if !before.Match(out) || !after.Match(out) || lines < 40 {
			t.Errorf("tcpdump read %d lines, want 40 with packets before and after translation:\n%s", lines, out)
		}
	})

	t.Run("Access", func(t *testing.T) { tp.checkAdminAccess(t) })

	t.Run("Ingress", func(t *testing.T) {
		got := answers(c, "http://198.18.1.1:8000/", 6)
		if got["b1"]+got["b2"]+got["b3"] != 6 || len(got) < 2 {
			t.Fatalf("ingress answers %v", got)
		}
		if m := tp.scrape(t); m.get("edgegate_http_requests_total", "route=web", "code=200") < 6 {
			t.Errorf("ingress metrics on the admin registry: %v", m.get("edgegate_http_requests_total", "route=web"))
		}
	})

	t.Run("GracefulShutdown", func(t *testing.T) {
		type res struct {
			body string
			err  error
		}
		slow := make(chan res, 1)
		go func() {
			body, err := get(nsClient(tp.c1, 5*time.Second), "http://198.18.1.1:8000/slow")
			slow <- res{body, err}
		}()
		waitFor(t, 3*time.Second, "the slow request reaching a backend", func() bool {
			return srv[0].slow.Load()+srv[1].slow.Load()+srv[2].slow.Load() > 0
		})
		must(t, tp.eg.Process.Signal(syscall.SIGTERM))
		r := <-slow
		if r.err != nil || !regexp.MustCompile(`^b[123]$`).MatchString(r.body) {
			t.Errorf("request in flight during SIGTERM: %q, %v", r.body, r.err)
		}
		select {
		case <-tp.gw.Exited(tp.eg):
		case <-time.After(10 * time.Second):
			t.Fatal("edgegate did not exit")
		}
		if code := tp.eg.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit code %d", code)
		}
		if out, _ := tp.gw.Exec("ip", "link", "show", "edge0"); strings.Contains(out, "edge0:") {
			t.Errorf("TUN still there: %s", out)
		}
		if _, err := os.Stat("/proc/" + fmt.Sprint(tp.eg.Process.Pid)); err == nil {
			t.Errorf("process still exists")
		}
	})
}

// asNobody runs a command in the gateway namespace as the unprivileged user nobody (no groups,
// no capabilities), as any local user could.
func (tp *topo) asNobody(args ...string) (string, error) {
	return tp.gw.Exec(append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"}, args...)...)
}

// checkAdminAccess: a local user reaches metrics and probes on admin.listen, but neither the
// private API there (404) nor the socket (permission denied); root's CLI works through the socket.
func (tp *topo) checkAdminAccess(t *testing.T) {
	// Open the test directories so that only the socket's own mode stands in the way.
	must(t, os.Chmod(tp.dir, 0o755))
	must(t, os.Chmod(filepath.Dir(tp.dir), 0o755))
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		if out, err := tp.asNobody("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:9469"+p); err != nil || out != "200" {
			t.Errorf("nobody GET %s on admin.listen: %q %v, want 200", p, out, err)
		}
	}
	for _, req := range [][]string{{"GET", "/capture?count=1"}, {"GET", "/conntrack"}, {"DELETE", "/conntrack?all=true"},
		{"GET", "/config"}, {"GET", "/status"}, {"GET", "/debug/pprof/"}} {
		out, err := tp.asNobody("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", req[0], "http://127.0.0.1:9469"+req[1])
		if err != nil || out != "404" {
			t.Errorf("nobody %s %s on admin.listen: %q %v, want 404", req[0], req[1], out, err)
		}
	}
	fi, err := os.Stat(tp.socket())
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatalf("admin socket %v, %v: want mode 0600, owner root", fi, err)
	}
	// The same request: root's connects, nobody's is refused (curl says "Couldn't connect" for
	// EACCES; test -w asks access(2) directly).
	curl := []string{"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", tp.socket(), "http://edgegate/config"}
	if out, err := tp.gw.Exec(curl...); err != nil || out != "200" {
		t.Errorf("root on the admin socket: %q %v, want 200", out, err)
	}
	if out, err := tp.asNobody(curl...); err == nil || !strings.Contains(err.Error(), "exit status 7") {
		t.Errorf("nobody on the admin socket: %q %v, want curl's connect failure (exit 7)", out, err)
	}
	if _, err := tp.asNobody("test", "-w", tp.socket()); err == nil {
		t.Error("the admin socket is writable (connectable) by nobody")
	}
	if out, err := tp.gw.Exec(edgegateBin, "status", "-socket", tp.socket()); err != nil || !strings.Contains(out, "web") {
		t.Errorf("root's status through the socket: %v\n%s", err, out)
	}
}
