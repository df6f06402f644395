package netns

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestUniqueName(t *testing.T) {
	seen := map[string]bool{}
	for _, prefix := range []string{"", "a", "gw", "averyveryverylongprefix"} {
		for range 3 {
			name := UniqueName(prefix)
			if seen[name] {
				t.Fatalf("UniqueName(%q) repeated %q", prefix, name)
			}
			seen[name] = true
			if len(name) >= 32 {
				t.Errorf("UniqueName(%q) = %q: %d bytes, want < 32", prefix, name, len(name))
			}
			p := prefix
			if len(p) > 12 {
				p = p[:12]
			}
			if !strings.HasPrefix(name, p+strconv.Itoa(os.Getpid())+"-") {
				t.Errorf("UniqueName(%q) = %q: want prefix %q, pid and counter", prefix, name, p)
			}
		}
	}
}

func TestCreateInvalidName(t *testing.T) {
	for _, name := range []string{"", "a/b", "a b"} {
		if n, err := Create(name); err == nil {
			n.Close()
			t.Errorf("Create(%q) succeeded, want error", name)
		}
	}
}

// exists reports whether `ip netns` still knows the namespace.
func exists(t *testing.T, name string) bool {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}

// pair creates two linked namespaces a (198.18.0.1, 2001:db8::1) and b (.2, ::2), closing them
// at cleanup if the test did not.
func pair(t *testing.T) (a, b *NS) {
	t.Helper()
	Require(t)
	var err error
	if a, err = Create(UniqueName("nsta")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if b, err = Create(UniqueName("nstb")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := Link(a, "va", b, "vb", 1400); err != nil {
		t.Fatal(err)
	}
	if err := a.Addr("va", "198.18.0.1/24", "2001:db8::1/64"); err != nil {
		t.Fatal(err)
	}
	if err := b.Addr("vb", "198.18.0.2/24", "2001:db8::2/64"); err != nil {
		t.Fatal(err)
	}
	return a, b
}

func TestLinkPingAndCleanup(t *testing.T) {
	a, b := pair(t)
	for _, dst := range []string{"198.18.0.2", "2001:db8::2"} {
		out, err := a.Exec("ping", "-c", "2", "-i", "0.2", "-W", "2", dst)
		if err != nil {
			t.Fatalf("ping %s from %s: %v", dst, a.Name, err)
		}
		if !strings.Contains(out, "2 received") {
			t.Errorf("ping %s: want 2 replies, got:\n%s", dst, out)
		}
	}
	// The veth MTU was applied to both ends.
	out, err := b.Exec("cat", "/sys/class/net/vb/mtu")
	if err != nil || strings.TrimSpace(out) != "1400" {
		t.Errorf("peer MTU = %q, %v; want 1400", out, err)
	}
	// Routes: a reaches a prefix behind b only after Route.
	if err := b.Addr("lo", "198.19.9.9/32"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec("ping", "-c", "1", "-W", "1", "198.19.9.9"); err == nil {
		t.Fatal("ping to unrouted 198.19.9.9 succeeded")
	}
	if err := a.Route("198.19.9.9/32", "via", "198.18.0.2"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec("ping", "-c", "1", "-W", "2", "198.19.9.9"); err != nil {
		t.Fatalf("ping via route: %v", err)
	}
	if err := a.Route("-6", "2001:db8:9::/64", "via", "2001:db8::2"); err != nil {
		t.Fatal(err)
	}
	if out, err := a.Exec("ip", "-6", "route", "show", "2001:db8:9::/64"); err != nil || !strings.Contains(out, "via 2001:db8::2") {
		t.Errorf("IPv6 route = %q, %v", out, err)
	}

	for _, n := range []*NS{a, b} {
		if !exists(t, n.Name) {
			t.Fatalf("%s missing before Close", n.Name)
		}
		if err := n.Close(); err != nil {
			t.Fatalf("Close %s: %v", n.Name, err)
		}
		if exists(t, n.Name) {
			t.Errorf("%s still listed after Close", n.Name)
		}
		if _, err := os.Stat(n.Path()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: stat after Close: %v, want not exist", n.Path(), err)
		}
		if err := n.Close(); err != nil {
			t.Errorf("second Close %s: %v, want the first result (nil)", n.Name, err)
		}
	}
}

func TestExecErrorIncludesOutput(t *testing.T) {
	n := ForTest(t, "nstx")
	_, err := n.Exec("ip", "link", "show", "nosuchdev0")
	if err == nil || !strings.Contains(err.Error(), "nosuchdev0") {
		t.Fatalf("Exec error = %v, want one carrying the tool's message", err)
	}
	if _, err := n.Exec(); err == nil {
		t.Fatal("Exec() without a command succeeded")
	}
}

func netnsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestDoSocketsStayInNamespace(t *testing.T) {
	a, b := pair(t)
	before := netnsInode(t, "/proc/self/ns/net")

	var ln net.Listener
	if err := b.Do(func() error {
		if got, want := netnsInode(t, "/proc/thread-self/ns/net"), netnsInode(t, b.Path()); got != want {
			t.Errorf("Do thread netns inode %d, want %d", got, want)
		}
		var err error
		ln, err = net.Listen("tcp", "198.18.0.2:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accepts on another thread: the socket stays in b
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()

	var conn net.Conn
	if err := a.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo = %q, %v", buf, err)
	}
	if got := conn.LocalAddr().String(); !strings.HasPrefix(got, "198.18.0.1:") {
		t.Errorf("client address %s, want 198.18.0.1 (namespace a)", got)
	}

	// The root namespace cannot reach the address: the listener is not there.
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), 300*time.Millisecond); err == nil {
		c.Close()
		t.Error("dial from the root namespace reached the namespace listener")
	}
	if got := threadNamespaces(t); len(got) != 1 || !got[before] {
		t.Errorf("thread namespaces after Do = %v, want only the original %d", got, before)
	}

	wantErr := errors.New("boom")
	if err := a.Do(func() error { return wantErr }); !errors.Is(err, wantErr) {
		t.Errorf("Do error = %v, want fn's error", err)
	}
	if err := a.Do(func() error { panic("oops") }); err == nil || !strings.Contains(err.Error(), "oops") {
		t.Errorf("Do with panic = %v, want error with panic value", err)
	}
}

func TestSysctl(t *testing.T) {
	n := ForTest(t, "nsts")
	for _, v := range []string{"1", "0"} {
		if err := n.Sysctl("net.ipv4.ip_forward", v); err != nil {
			t.Fatal(err)
		}
		out, err := n.Exec("cat", "/proc/sys/net/ipv4/ip_forward")
		if err != nil || strings.TrimSpace(out) != v {
			t.Fatalf("ip_forward in ns = %q, %v; want %s", out, err, v)
		}
	}
	if err := n.Sysctl("net.ipv4.no_such_key", "1"); err == nil {
		t.Error("Sysctl of a missing key succeeded")
	}
}

// groupGone waits (bounded) until no live (non-zombie) process is left in process group pgid.
func groupGone(pgid int) bool {
	deadline := time.Now().Add(5 * time.Second)
	for {
		alive := false
		dirs, _ := os.ReadDir("/proc")
		for _, d := range dirs {
			stat, err := os.ReadFile("/proc/" + d.Name() + "/stat")
			if err != nil {
				continue
			}
			// Fields after the ")" ending the command name: state ppid pgrp ...
			f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
			if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" {
				alive = true
				break
			}
		}
		if !alive {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// threadNamespaces returns the distinct network namespace inodes of this process's threads.
func threadNamespaces(t *testing.T) map[uint64]bool {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	m := map[uint64]bool{}
	for _, task := range tasks {
		var st unix.Stat_t
		if err := unix.Stat("/proc/self/task/"+task.Name()+"/ns/net", &st); err == nil {
			m[st.Ino] = true
		}
	}
	return m
}

func TestStartStopClose(t *testing.T) {
	Require(t)
	n, err := Create(UniqueName("nstp"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx := context.Background()

	// Output is kept and Wait returns the exit status.
	echo, err := n.Start(ctx, "sh", "-c", "echo in-ns; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := n.Wait(echo); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("Wait = %v, want exit status 3", err)
	}
	if got := n.Output(echo); got != "in-ns\n" {
		t.Errorf("Output = %q", got)
	}

	// Stop ends a cooperative process quickly.
	sleeper, err := n.Start(ctx, "sleep", "60")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := n.Stop(sleeper); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d >= StopTimeout {
		t.Errorf("Stop took %v, want SIGTERM to suffice", d)
	}
	select {
	case <-n.Exited(sleeper):
	default:
		t.Error("Exited not closed after Stop")
	}

	// Close escalates to SIGKILL for the whole group, including a forked child.
	stubborn, err := n.Start(ctx, "sh", "-c", `trap "" TERM; sleep 60 & echo started; wait`)
	if err != nil {
		t.Fatal(err)
	}
	pgid := stubborn.Process.Pid
	deadline := time.Now().Add(10 * time.Second)
	for n.Output(stubborn) != "started\n" {
		if time.Now().After(deadline) {
			t.Fatalf("stubborn process did not start: %q", n.Output(stubborn))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if !groupGone(pgid) {
		t.Errorf("process group %d still alive after Close", pgid)
	}
	if exists(t, n.Name) {
		t.Errorf("%s still listed after Close", n.Name)
	}
	if _, err := n.Start(ctx, "true"); err == nil {
		t.Error("Start after Close succeeded")
	}
}

func TestCommandContextCancel(t *testing.T) {
	n := ForTest(t, "nstc")
	ctx, cancel := context.WithCancel(context.Background())
	cmd, err := n.Start(ctx, "sleep", "60")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-n.Exited(cmd):
	case <-time.After(2 * StopTimeout):
		t.Fatal("command still running after its context was cancelled")
	}
	if err := n.Wait(cmd); err == nil {
		t.Error("Wait after cancel = nil, want the signal/context error")
	}
}
