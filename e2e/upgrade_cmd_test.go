package e2e

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgegate/edgegate/internal/netns"
)

// notifySocket is a stand-in for systemd's notification socket: it collects the sd_notify
// messages edgegate sends.
type notifySocket struct {
	path string
	msgs chan string
}

func listenNotify(t *testing.T, dir string) *notifySocket {
	t.Helper()
	n := &notifySocket{path: filepath.Join(dir, "notify.sock"), msgs: make(chan string, 64)}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	must(t, err)
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	return n
}

// next waits for the next message.
func (n *notifySocket) next(t *testing.T, within time.Duration) string {
	t.Helper()
	select {
	case m := <-n.msgs:
		return m
	case <-time.After(within):
		t.Fatalf("no sd_notify message within %v", within)
		return ""
	}
}

// mainPID waits for a successor's "MAINPID=N\nREADY=1" and returns N.
func (n *notifySocket) mainPID(t *testing.T, within time.Duration) int {
	t.Helper()
	m := n.next(t, within)
	pid, ok := strings.CutPrefix(m, "MAINPID=")
	pid, rest, _ := strings.Cut(pid, "\n")
	p, err := strconv.Atoi(pid)
	if !ok || err != nil || rest != "READY=1" {
		t.Fatalf("sd_notify message %q, want MAINPID=<pid>\\nREADY=1", m)
	}
	return p
}

// install puts bin at path the way a package manager does: a copy next to it, renamed over it
// (the running process's file is replaced, not written into).
func install(t *testing.T, bin, path string) {
	t.Helper()
	src, err := os.Open(bin)
	must(t, err)
	defer src.Close()
	tmp := path + ".new"
	dst, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	must(t, err)
	_, err = io.Copy(dst, src)
	must(t, err)
	must(t, dst.Close())
	must(t, os.Rename(tmp, path))
}

// processGone reports whether pid has exited (gone, or a zombie: the processes an upgrade
// starts are orphans once their starter exits).
func processGone(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z'
}

// TestUpgradeCommand: `edgegate upgrade` and SIGUSR2 replace the running edgegate with the binary
// on disk (installed over the running one's file, alternating two builds), with the running
// one's arguments and --takeover; each successor tells the service manager it is the main
// process (sd_notify MAINPID, READY), the old one exits and held connections answer from their
// backend, and clients of a service with session affinity keep their backend. A failed upgrade leaves the old process serving: `edgegate upgrade` exits 1 when the
// new process fails after the old one froze, and a SIGUSR2 whose successor cannot load the
// configuration changes nothing.
func TestUpgradeCommand(t *testing.T) {
	tp := newTopo(t)
	tp.serveBackends()
	exe := filepath.Join(tp.dir, "bin", "edgegate")
	must(t, os.MkdirAll(filepath.Dir(exe), 0o755))
	install(t, edgegateBin, exe)
	next := secondEdgegate(t)
	cfg := tp.writeConfig("edgegate.yaml", upgradeConfig())
	notify := listenNotify(t, tp.dir)
	logf, err := os.OpenFile(filepath.Join(tp.dir, "edgegate.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	must(t, err)
	defer logf.Close()
	readLog := func() string { b, _ := os.ReadFile(logf.Name()); return string(b) }
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("edgegate output (all processes):\n%s", readLog())
		}
	})
	// Privileges kept: SIGUSR2 starts a successor itself, which needs a start's privileges.
	first := tp.gw.Command(context.Background(), exe, "run", "-drop-privileges=false", "-c", cfg)
	first.Stdout, first.Stderr = logf, logf
	first.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify.path)
	must(t, tp.gw.StartCmd(first))
	if m := notify.next(t, 10*time.Second); m != "READY=1" {
		t.Fatalf("first start notified %q, want READY=1", m)
	}
	tp.waitReady(t)
	pid := first.Process.Pid
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) }) // the last one, if the test stops early
	held := holdConns(t, tp.c1, "198.18.200.10:80", 50)
	// Affinity: c2 takes the round robin's first choice, c1 the next; a process starting with
	// an empty affinity table would give c1 the first again (or c2 the second).
	sticky := func(ns *netns.NS) string {
		body, err := get(nsClient(ns, 5*time.Second), "http://198.18.200.60/")
		if err != nil {
			t.Fatalf("sticky service: %v", err)
		}
		return body
	}
	pinned := map[*netns.NS]string{tp.c2: sticky(tp.c2)}
	pinned[tp.c1] = sticky(tp.c1)
	if pinned[tp.c1] == pinned[tp.c2] {
		t.Fatalf("round robin gave both clients %q", pinned[tp.c1])
	}
	version := func() string {
		if tp.scrape(t).get("edgegate_build_info", "version=next") == 1 {
			return "next"
		}
		return "first"
	}

	var began time.Time
	upgrade := func(how string) {
		began = time.Now()
		t.Helper()
		old := pid
		if how == "SIGUSR2" {
			must(t, syscall.Kill(old, syscall.SIGUSR2))
		} else {
			cmd := tp.gw.Command(context.Background(), exe, "upgrade", "-c", cfg)
			cmd.Stdout, cmd.Stderr = logf, logf
			must(t, tp.gw.StartCmd(cmd))
			if err := tp.gw.Wait(cmd); err != nil {
				t.Fatalf("edgegate upgrade: %v", err)
			}
		}
		pid = notify.mainPID(t, 20*time.Second)
		waitFor(t, 20*time.Second, "the old process exits", func() bool { return processGone(old) })
		if pid == old {
			t.Fatalf("%s: MAINPID is the old process", how)
		}
		tp.waitReady(t)
	}
	for i, how := range []string{"edgegate upgrade", "SIGUSR2", "edgegate upgrade"} {
		bin, want := next, "next"
		if i%2 == 1 {
			bin, want = edgegateBin, "first"
		}
		install(t, bin, exe)
		upgrade(how)
		if got := version(); got != want {
			t.Errorf("after %s: the %s build serves, want the %s one", how, got, want)
		}
		checkHeld(t, held, how)
		for _, ns := range []*netns.NS{tp.c1, tp.c2} {
			if got := sticky(ns); got != pinned[ns] {
				t.Errorf("after %s: client %s answered by %q, pinned to %q (affinity not handed over)", how, ns.Name, got, pinned[ns])
			}
		}
		t.Logf("%s: pid %d serves (%v)", how, pid, time.Since(began).Round(time.Millisecond))
	}

	// Failures: the old process serves on.
	otherTUN := tp.writeConfig("queues.yaml", strings.Replace(upgradeConfig(), "queues: 2", "queues: 3", 1))
	must(t, os.Rename(otherTUN, cfg))
	cmd := tp.gw.Command(context.Background(), exe, "upgrade", "-c", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	must(t, tp.gw.StartCmd(cmd))
	if err := tp.gw.Wait(cmd); err == nil {
		t.Error("edgegate upgrade to a process that fails after the freeze exited 0")
	}
	tp.writeConfig("edgegate.yaml", strings.Replace(upgradeConfig(), "198.19.1.2", "198.19.1.999", 1))
	must(t, syscall.Kill(pid, syscall.SIGUSR2))
	waitFor(t, 10*time.Second, "the failed successor reported", func() bool {
		return strings.Contains(readLog(), "successor exited: still serving")
	})
	if processGone(pid) {
		t.Fatal("the running edgegate exited after the failed upgrades")
	}
	if body, err := get(nsClient(tp.c1, 5*time.Second), "http://198.18.200.10/"); err != nil || !strings.HasPrefix(body, "b") {
		t.Errorf("new connection after the failed upgrades: %q %v", body, err)
	}
	checkHeld(t, held, "the failed upgrades")
	select {
	case m := <-notify.msgs:
		t.Errorf("a failed successor notified %q", m)
	default:
	}

	must(t, syscall.Kill(pid, syscall.SIGTERM))
	waitFor(t, 15*time.Second, "exit after SIGTERM", func() bool { return processGone(pid) })
	if m := notify.next(t, time.Second); m != "STOPPING=1" {
		t.Errorf("on SIGTERM notified %q, want STOPPING=1", m)
	}
}
