package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestWithTakeover(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"run", "-c", "a.yaml"}, []string{"run", "--takeover", "-c", "a.yaml"}},
		{[]string{"run", "-c", "a.yaml", "--takeover"}, []string{"run", "-c", "a.yaml", "--takeover"}},
		{[]string{"run", "-takeover=true"}, []string{"run", "-takeover=true"}},
		{[]string{"run", "--", "--takeover"}, []string{"run", "--takeover", "--", "--takeover"}},
		{[]string{"validate"}, []string{"validate"}},
		{nil, nil},
	} {
		if got := withTakeover(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("withTakeover(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestSDNotify: the state reaches a datagram socket named by $NOTIFY_SOCKET, as a path and as
// an abstract name; without it nothing is sent and nothing fails.
func TestSDNotify(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := sdNotify("READY=1"); err != nil {
		t.Fatalf("without NOTIFY_SOCKET: %v", err)
	}
	abstract := "@edgegate-test-" + strconv.Itoa(os.Getpid())
	for _, name := range []string{filepath.Join(t.TempDir(), "notify"), abstract} {
		addr := name
		if name[0] == '@' {
			addr = "\x00" + name[1:]
		}
		ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv("NOTIFY_SOCKET", name)
		if err := sdNotify(readyState(true)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 256)
		ln.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := ln.Read(buf)
		ln.Close()
		want := "MAINPID=" + strconv.Itoa(os.Getpid()) + "\nREADY=1"
		if err != nil || string(buf[:n]) != want {
			t.Errorf("%s: got %q %v, want %q", name, buf[:n], err, want)
		}
	}
	if readyState(false) != "READY=1" {
		t.Errorf("first start: %q", readyState(false))
	}
}

// TestUpgradeRefusals: `edgegate upgrade` leaves things alone and exits 1 when its configuration
// does not load or no edgegate runs with it.
func TestUpgradeRefusals(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.yaml")
	os.WriteFile(broken, []byte("tun: {name: [\n"), 0o600)
	lonely := filepath.Join(dir, "lonely.yaml")
	os.WriteFile(lonely, []byte("tun: {name: eg0}\nadmin: {socket: \""+filepath.Join(dir, "admin.sock")+"\"}\n"), 0o600)
	for _, tc := range []struct{ cfg, msg string }{
		{broken, "does not load"},
		{lonely, "takeover.sock"},
	} {
		var out, errw bytes.Buffer
		if code := run([]string{"upgrade", "-c", tc.cfg}, &out, &errw); code != 1 || !strings.Contains(errw.String(), tc.msg) {
			t.Errorf("%s: exit %d, stderr %q; want 1 containing %q", tc.cfg, code, errw.String(), tc.msg)
		}
	}
}

// TestAwaitHandover: success once the old process is gone while the new one runs; an error when
// the new one exits first.
func TestAwaitHandover(t *testing.T) {
	old := exec.Command("sleep", "0.2")
	if err := old.Start(); err != nil {
		t.Skip(err)
	}
	go old.Wait()
	next := exec.Command("sleep", "5")
	next.Start()
	defer next.Process.Kill()
	if err := awaitHandover(next, old.Process.Pid, 5*time.Second); err != nil {
		t.Fatalf("old exited, new runs: %v", err)
	}
	failing := exec.Command("false")
	failing.Start()
	if err := awaitHandover(failing, os.Getpid(), 5*time.Second); err == nil || !strings.Contains(err.Error(), "serves on") {
		t.Fatalf("new exited first: %v", err)
	}
}

// TestAliveZombie: an exited child not yet reaped counts as gone.
func TestAliveZombie(t *testing.T) {
	c := exec.Command("true")
	if err := c.Start(); err != nil {
		t.Skip(err)
	}
	defer c.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for alive(c.Process.Pid) {
		if time.Now().After(deadline) {
			t.Fatal("an exited, unreaped child still counts as alive")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !alive(os.Getpid()) {
		t.Fatal("this process counts as gone")
	}
}
