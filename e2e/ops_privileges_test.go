package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	staticOnce sync.Once
	staticBin  string
	staticErr  error
)

// staticEdgegate builds a cgo-free binary, as the Dockerfile does.
func staticEdgegate(t *testing.T) string {
	t.Helper()
	staticOnce.Do(func() {
		staticBin = filepath.Join(filepath.Dir(edgegateBin), "edgegate-static")
		cmd := exec.Command("go", "build", "-o", staticBin, "../cmd/edgegate")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			staticErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if staticErr != nil {
		t.Fatal(staticErr)
	}
	return staticBin
}

// startEdgegateWith runs bin (an edgegate build) with extra run flags in the gateway namespace
// and waits until its routes are in place.
func (tp *topo) startEdgegateWith(bin, cfgPath string, extra ...string) {
	t := tp.t
	t.Helper()
	cmd := tp.launchEdgegate(bin, cfgPath, extra...)
	waitFor(t, 10*time.Second, "edgegate routes installed", func() bool {
		select {
		case <-tp.gw.Exited(cmd):
			t.Fatalf("edgegate exited early:\n%s", tp.egLog.String())
		default:
		}
		out, err := tp.gw.Exec("ip", "route", "show", "proto", "201")
		return err == nil && strings.TrimSpace(out) != ""
	})
}

// launchEdgegate starts `bin run -c cfgPath extra...` in the gateway namespace as tp.eg, with its
// output in tp.egLog, logged if the test fails; it does not wait for anything.
func (tp *topo) launchEdgegate(bin, cfgPath string, extra ...string) *exec.Cmd {
	t := tp.t
	t.Helper()
	tp.egLog = &lockedBuffer{}
	cmd := tp.gw.Command(context.Background(), bin, append([]string{"run", "-c", cfgPath}, extra...)...)
	cmd.Stdout, cmd.Stderr = tp.egLog, tp.egLog
	must(t, tp.gw.StartCmd(cmd))
	tp.eg = cmd
	t.Cleanup(func() {
		if t.Failed() {
			state := "still running"
			select {
			case <-tp.gw.Exited(cmd):
				state = cmd.ProcessState.String()
			default:
			}
			t.Logf("edgegate (%s) output:\n%s", state, tp.egLog.String())
		}
	})
	return cmd
}

// procStatus reads fields of /proc/PID/status, or of one thread's (task not "").
func procStatus(t *testing.T, pid int, task string) map[string]string {
	t.Helper()
	p := fmt.Sprintf("/proc/%d/status", pid)
	if task != "" {
		p = fmt.Sprintf("/proc/%d/task/%s/status", pid, task)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// TestOpsLeastPrivilege: once the TUN is open and routes are set, edgegate runs, by default, as
// nobody with only CAP_NET_ADMIN (effective, permitted and bounding) on every thread and
// no_new_privs, and can still reload (routes for a new service, the SYN guard's nftables table),
// capture and shut down cleanly. Both documented builds: the README's plain `go build` (a cgo
// binary where a C compiler is installed) and the Dockerfile's CGO_ENABLED=0. The README case
// also serves TLS from a root-only key, so it keeps CAP_DAC_READ_SEARCH, and rotates the
// certificate by SIGHUP after the drop; the static case opens the admin socket to a group.
func TestOpsLeastPrivilege(t *testing.T) {
	t.Run("README", func(t *testing.T) {
		if _, err := exec.LookPath("gcc"); err == nil && !isCgoBinary(t, edgegateBin) {
			t.Fatal("the README build on a machine with gcc is not a cgo binary: this case tests nothing")
		}
		testLeastPrivilege(t, edgegateBin, true)
	})
	t.Run("Static", func(t *testing.T) { testLeastPrivilege(t, staticEdgegate(t), false) })
}

// isCgoBinary reads the build settings recorded in bin.
func isCgoBinary(t *testing.T, bin string) bool {
	out, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, out)
	}
	return strings.Contains(string(out), "CGO_ENABLED=1")
}

const (
	capNetAdmin      = 1 << 12
	capDacReadSearch = 1 << 2
	nobodyID         = "65534"
)

// checkCaps asserts the capability sets and no_new_privs of every thread of pid.
func checkCaps(t *testing.T, pid int, want uint64) {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil || len(tasks) < 2 {
		t.Fatalf("threads of %d: %v (%d)", pid, err, len(tasks))
	}
	for _, task := range tasks {
		st := procStatus(t, pid, task.Name())
		for _, k := range []string{"CapEff", "CapPrm", "CapBnd"} {
			if v, err := strconv.ParseUint(st[k], 16, 64); err != nil || v != want {
				t.Errorf("thread %s: %s = %s, want %016x", task.Name(), k, st[k], want)
			}
		}
		if st["CapInh"] != "0000000000000000" || st["CapAmb"] != "0000000000000000" || st["NoNewPrivs"] != "1" {
			t.Errorf("thread %s: CapInh %s CapAmb %s NoNewPrivs %s, want 0, 0, 1", task.Name(), st["CapInh"], st["CapAmb"], st["NoNewPrivs"])
		}
	}
}

func testLeastPrivilege(t *testing.T, bin string, withTLS bool) {
	tp := newTopo(t)
	for i := range tp.b {
		tp.serveBackend(t, i)
	}
	// The configuration is readable by nobody (test directories opened), so only a root-only
	// key can call for CAP_DAC_READ_SEARCH.
	must(t, os.Chmod(tp.dir, 0o755))
	must(t, os.Chmod(filepath.Dir(tp.dir), 0o755))
	var pki *rotatingCert
	extra := "admin: {listen: \"127.0.0.1:9469\", socket: \"" + adminSocketVar + "\", socket_group: nogroup}\n"
	if withTLS {
		pki = newRotatingCert(t, tp.dir)
		extra = pki.ingress()
	}
	// With the SYN guard: reloads and the exit change nftables after the drop.
	guarded := func(rate int, svcs ...svcSpec) string {
		cfg := strings.Replace(opsConfig("", svcs...), "queues: 1}", fmt.Sprintf("queues: 1, syn_rate_limit: %d}", rate), 1)
		if !withTLS {
			cfg = strings.Replace(cfg, "admin: {listen: \"127.0.0.1:9469\", socket: \""+adminSocketVar+"\"}\n", "", 1)
		}
		return cfg + extra
	}
	web := svcSpec{name: "web", vip: "198.18.200.10", backends: []int{0, 1}}
	path := tp.writeConfig("edgegate.yaml", guarded(5000, web))
	if !withTLS {
		// An earlier root run left the socket's directory, root's, with a stale socket: exit
		// must still remove the socket.
		must(t, os.Mkdir(filepath.Dir(tp.socket()), 0o755))
		l, err := net.Listen("unix", tp.socket())
		must(t, err)
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		l.Close()
	}
	tp.startEdgegateWith(bin, path) // no -user: nobody by default
	tp.waitReady(t)
	waitFor(t, 5*time.Second, "privileges dropped", func() bool { return strings.Contains(tp.egLog.String(), "privileges dropped") })

	want := uint64(capNetAdmin)
	if withTLS {
		want |= capDacReadSearch
	}
	pid := tp.eg.Process.Pid
	checkCaps(t, pid, want)
	if f := strings.Fields(procStatus(t, pid, "")["Uid"]); len(f) != 4 || f[0] != nobodyID || f[1] != nobodyID || f[2] != nobodyID {
		t.Errorf("Uid %v, want nobody (65534) for real, effective and saved", f)
	}
	if withTLS {
		pki.check(t, tp, "v1")
	} else {
		tp.checkSocketGroup(t)
	}

	c := nsClient(tp.c1, 2*time.Second)
	if got := answers(c, "http://198.18.200.10/", 4); got["b1"] != 2 || got["b2"] != 2 {
		t.Errorf("answers before reload: %v", got)
	}
	guard := func() string {
		out, _ := tp.gw.Exec("nft", "list", "table", "inet", "edgegate_guard")
		return out
	}
	if g := guard(); !strings.Contains(g, "limit rate over 5000/second") {
		t.Errorf("SYN guard after start:\n%s", g)
	}
	if withTLS {
		pki.rotate(t, "v2") // the SIGHUP below loads it
	}
	tp.reload(t, path, guarded(2000, web, svcSpec{name: "api", vip: "198.18.200.20", backends: []int{2}}))
	if m := tp.scrape(t); m.get("edgegate_config_reloads_total", "result=success") != 1 {
		t.Fatalf("reload as nobody failed:\n%s", tp.egLog.String())
	}
	if got := answers(c, "http://198.18.200.20/", 2); got["b3"] != 2 {
		t.Errorf("new service after an unprivileged reload: %v", got)
	}
	if g := guard(); !strings.Contains(g, "limit rate over 2000/second") || strings.Count(g, "limit rate") != 1 {
		t.Errorf("SYN guard after an unprivileged reload to 2000/s:\n%s", g)
	}
	if withTLS {
		pki.check(t, tp, "v2")
	}
	tp.stopEdgegate(t)
	for _, args := range [][]string{{"ip", "route", "show", "proto", "201"}, {"ip", "rule", "show", "table", "4242"},
		{"ip", "link", "show", "edge0"}, {"nft", "list", "tables"}} {
		if out, _ := tp.gw.Exec(args...); strings.TrimSpace(out) != "" && !strings.Contains(out, "does not exist") {
			t.Errorf("%v after an unprivileged shutdown: %s", args, out)
		}
	}
	if _, err := os.Lstat(tp.socket()); !os.IsNotExist(err) {
		t.Errorf("admin socket left after an unprivileged shutdown: %v", err)
	}
}

// TestOpsRootOptOut: -user root stays uid 0, still with only CAP_NET_ADMIN and no_new_privs;
// -drop-privileges=false keeps everything.
func TestOpsRootOptOut(t *testing.T) {
	tp := newTopo(t)
	path := tp.writeConfig("edgegate.yaml", opsConfig("", svcSpec{name: "web", vip: "198.18.200.10", backends: []int{0}}))
	tp.startEdgegateWith(edgegateBin, path, "-user", "root")
	tp.waitReady(t)
	waitFor(t, 5*time.Second, "privileges dropped", func() bool { return strings.Contains(tp.egLog.String(), "privileges dropped") })
	checkCaps(t, tp.eg.Process.Pid, capNetAdmin)
	if f := strings.Fields(procStatus(t, tp.eg.Process.Pid, "")["Uid"]); len(f) != 4 || f[1] != "0" {
		t.Errorf("Uid %v, want root", f)
	}
	tp.stopEdgegate(t)

	tp.startEdgegateWith(edgegateBin, path, "-drop-privileges=false")
	tp.waitReady(t)
	if st := procStatus(t, tp.eg.Process.Pid, ""); st["CapEff"] == fmt.Sprintf("%016x", capNetAdmin) || st["NoNewPrivs"] != "0" {
		t.Errorf("-drop-privileges=false: CapEff %s NoNewPrivs %s, want everything kept", st["CapEff"], st["NoNewPrivs"])
	}
	tp.stopEdgegate(t)
}

// checkSocketGroup: with admin.socket_group nogroup, a user in that group reaches the socket
// and one outside it does not.
func (tp *topo) checkSocketGroup(t *testing.T) {
	t.Helper()
	fi, err := os.Stat(tp.socket())
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("admin socket with socket_group: %v, %v: want mode 0660", fi, err)
	}
	curl := []string{"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", tp.socket(), "http://edgegate/status"}
	member := append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}, curl...)
	if out, err := tp.gw.Exec(member...); err != nil || out != "200" {
		t.Errorf("a member of socket_group on the socket: %q %v, want 200", out, err)
	}
	outsider := append([]string{"setpriv", "--reuid=65534", "--regid=12345", "--clear-groups"}, curl...)
	if _, err := tp.gw.Exec(outsider...); err == nil || !strings.Contains(err.Error(), "exit status 7") {
		t.Errorf("a user outside socket_group on the socket: %v, want refused", err)
	}
}

// TestOpsEarlySIGHUP: a SIGHUP during setup or the privilege drop (a supervisor reloading right
// after start) is queued for the reload loop, not SIGHUP's default action that ends the process.
func TestOpsEarlySIGHUP(t *testing.T) {
	tp := newTopo(t)
	path := tp.writeConfig("edgegate.yaml", opsConfig("", svcSpec{name: "web", vip: "198.18.200.10", backends: []int{0}}))
	cmd := tp.launchEdgegate(edgegateBin, path)
	waitFor(t, 10*time.Second, "the data path started", func() bool { return strings.Contains(tp.egLog.String(), "gateway started") })
	sent := 0
	for { // at least one SIGHUP, then until the drop is done
		if cmd.Process.Signal(syscall.SIGHUP) == nil {
			sent++
		}
		select {
		case <-tp.gw.Exited(cmd):
			t.Fatalf("edgegate ended by a SIGHUP during setup (%s):\n%s", cmd.ProcessState, tp.egLog.String())
		case <-time.After(2 * time.Millisecond):
		}
		if strings.Contains(tp.egLog.String(), "privileges dropped") {
			break
		}
		if sent > 5000 {
			t.Fatal("privileges not dropped after 5000 SIGHUPs")
		}
	}
	tp.waitReady(t)
	waitFor(t, 5*time.Second, "the queued reload", func() bool {
		return tp.scrape(t).get("edgegate_config_reloads_total", "result=success") >= 1
	})
	t.Logf("%d SIGHUPs sent during setup", sent)
	tp.stopEdgegate(t)
}

// TestOpsReadyAfterStart: /readyz answers 200 only once the start is complete, privilege drop
// included (the admin listener opens before the drop; a supervisor or test acting on readiness,
// e.g. reloading, must not meet a process still dropping privileges).
func TestOpsReadyAfterStart(t *testing.T) {
	tp := newTopo(t)
	path := tp.writeConfig("edgegate.yaml", opsConfig("", svcSpec{name: "web", vip: "198.18.200.10", backends: []int{0}}))
	cmd := tp.launchEdgegate(edgegateBin, path)
	notReady := 0
	waitFor(t, 10*time.Second, "/readyz 200", func() bool {
		select {
		case <-tp.gw.Exited(cmd):
			t.Fatalf("edgegate exited (%s)", cmd.ProcessState)
		default:
		}
		code, _, err := tp.adminDo(http.MethodGet, "/readyz")
		if err != nil || code != http.StatusOK {
			if err == nil {
				notReady++
			}
			return false
		}
		// no_new_privs is the drop's last step: set on every thread before readiness.
		if st := procStatus(t, cmd.Process.Pid, ""); st["NoNewPrivs"] != "1" {
			t.Fatalf("/readyz answered 200 before the privilege drop finished (NoNewPrivs %s)", st["NoNewPrivs"])
		}
		return true
	})
	if m := tp.scrape(t); m.get("edgegate_ready") != 1 {
		t.Errorf("edgegate_ready %v after /readyz 200", m.get("edgegate_ready"))
	}
	t.Logf("/readyz answered 503 %d times during the start", notReady)
	tp.stopEdgegate(t)
}
