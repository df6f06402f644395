package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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
	tp.egLog = &lockedBuffer{}
	cmd := tp.gw.Command(context.Background(), bin, append([]string{"run", "-c", cfgPath}, extra...)...)
	cmd.Stdout, cmd.Stderr = tp.egLog, tp.egLog
	must(t, tp.gw.StartCmd(cmd))
	tp.eg = cmd
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("edgegate output:\n%s", tp.egLog.String())
		}
	})
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

// procStatus reads fields of /proc/PID/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
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

// TestOpsLeastPrivilege: once the TUN is open and routes are set, edgegate runs as an
// unprivileged user with only CAP_NET_ADMIN (effective, permitted and bounding) on every thread,
// and can still reload (routes for a new service) and shut down cleanly. Both documented builds:
// the README's plain `go build` (a cgo binary where a C compiler is installed) and the
// Dockerfile's CGO_ENABLED=0.
func TestOpsLeastPrivilege(t *testing.T) {
	t.Run("README", func(t *testing.T) {
		if _, err := exec.LookPath("gcc"); err == nil && !isCgoBinary(t, edgegateBin) {
			t.Fatal("the README build on a machine with gcc is not a cgo binary: this case tests nothing")
		}
		testLeastPrivilege(t, edgegateBin)
	})
	t.Run("Static", func(t *testing.T) { testLeastPrivilege(t, staticEdgegate(t)) })
}

// isCgoBinary reads the build settings recorded in bin.
func isCgoBinary(t *testing.T, bin string) bool {
	out, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, out)
	}
	return strings.Contains(string(out), "CGO_ENABLED=1")
}

func testLeastPrivilege(t *testing.T, bin string) {
	tp := newTopo(t)
	for i := range tp.b {
		tp.serveBackend(t, i)
	}
	// The unprivileged user re-reads the file on reload: open the test directories to it.
	must(t, os.Chmod(tp.dir, 0o755))
	must(t, os.Chmod(filepath.Dir(tp.dir), 0o755))
	// With the SYN guard: reloads and the exit change nftables after the drop.
	guarded := func(rate int, svcs ...svcSpec) string {
		return strings.Replace(opsConfig("", svcs...), "queues: 1}", fmt.Sprintf("queues: 1, syn_rate_limit: %d}", rate), 1)
	}
	web := svcSpec{name: "web", vip: "198.18.200.10", backends: []int{0, 1}}
	path := tp.writeConfig("edgegate.yaml", guarded(5000, web))
	tp.startEdgegateWith(bin, path, "-user", "nobody")
	tp.waitReady(t)
	waitFor(t, 5*time.Second, "privileges dropped", func() bool { return strings.Contains(tp.egLog.String(), "privileges dropped") })

	const netAdmin = 1 << 12
	st := procStatus(t, tp.eg.Process.Pid)
	for _, k := range []string{"CapEff", "CapPrm", "CapBnd"} {
		v, err := strconv.ParseUint(st[k], 16, 64)
		if err != nil || v != netAdmin {
			t.Errorf("%s = %s, want %016x (CAP_NET_ADMIN only)", k, st[k], netAdmin)
		}
	}
	nobody := "65534"
	if f := strings.Fields(st["Uid"]); len(f) != 4 || f[0] != nobody || f[1] != nobody || f[2] != nobody {
		t.Errorf("Uid %q, want nobody (65534) for real, effective and saved", st["Uid"])
	}
	// Every thread, not just the main one.
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", tp.eg.Process.Pid))
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", tp.eg.Process.Pid, task.Name()))
		if err == nil && !strings.Contains(string(b), fmt.Sprintf("CapEff:\t%016x", netAdmin)) {
			t.Errorf("thread %s kept other capabilities", task.Name())
		}
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
	tp.stopEdgegate(t)
	for _, args := range [][]string{{"ip", "route", "show", "proto", "201"}, {"ip", "link", "show", "edge0"}, {"nft", "list", "tables"}} {
		if out, _ := tp.gw.Exec(args...); strings.TrimSpace(out) != "" && !strings.Contains(out, "does not exist") {
			t.Errorf("%v after an unprivileged shutdown: %s", args, out)
		}
	}
}
