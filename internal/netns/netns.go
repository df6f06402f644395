// Package netns is the network-namespace harness for end-to-end tests and the bench: it creates
// uniquely named namespaces, wires them with veth pairs, runs processes and Go code inside them,
// and tears everything down again (processes by PID, then the namespace), so nothing a test sends
// ever leaves the namespaces it created.
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// StopTimeout bounds how long Close and Stop wait after SIGTERM before they send SIGKILL.
const StopTimeout = 3 * time.Second

// execTimeout bounds Exec and the configuration helpers, so a hung `ip` cannot hang a test.
const execTimeout = 60 * time.Second

// outputCap bounds the output kept per started process (the tail is kept, for diagnostics).
const outputCap = 64 << 10

// runDir is where `ip netns` keeps its bind-mounted namespace files.
const runDir = "/run/netns"

var counter atomic.Uint64

// UniqueName returns a namespace name unique per process and call (prefix, PID, counter), so
// parallel tests and concurrent test binaries never collide. The prefix is cut to 12 bytes to
// keep names short (under 32 bytes) for readable `ip netns` listings.
func UniqueName(prefix string) string {
	if len(prefix) > 12 {
		prefix = prefix[:12]
	}
	return fmt.Sprintf("%s%d-%d", prefix, os.Getpid(), counter.Add(1))
}

// NS is one named network namespace created by Create. Its methods are safe for concurrent use.
type NS struct {
	Name string

	mu     sync.Mutex
	procs  map[*exec.Cmd]*proc
	closed bool
	once   sync.Once
	err    error
}

// proc is a process started by NS.Start/StartCmd; the NS owns its Wait.
type proc struct {
	cmd  *exec.Cmd
	out  *tailBuffer // nil when the caller set its own Stdout/Stderr
	done chan struct{}
	err  error // Wait's result, valid after done is closed
}

// Create adds the namespace `name` (ip netns add) and brings its loopback up. The caller must
// Close it; tests use ForTest, which registers that cleanup.
func Create(name string) (*NS, error) {
	if name == "" || strings.ContainsAny(name, "/ \t\n") {
		return nil, fmt.Errorf("netns: invalid name %q", name)
	}
	if out, err := run(context.Background(), "ip", "netns", "add", name); err != nil {
		return nil, fmt.Errorf("netns: create %s: %w", name, withOutput(err, out))
	}
	n := &NS{Name: name, procs: make(map[*exec.Cmd]*proc)}
	if err := n.ip("link", "set", "lo", "up"); err != nil {
		return nil, errors.Join(err, n.Close())
	}
	return n, nil
}

// Path is the bind-mounted namespace file, usable with setns(2) or `nsenter --net=`.
func (n *NS) Path() string { return filepath.Join(runDir, n.Name) }

// Close stops every process started via Start/StartCmd with its process group (SIGTERM, then
// SIGKILL after StopTimeout),
// reaps them, and deletes the namespace, which also destroys its veth ends. It is idempotent: later
// calls return the first call's result.
func (n *NS) Close() error {
	n.once.Do(func() {
		n.mu.Lock()
		n.closed = true
		procs := make([]*proc, 0, len(n.procs))
		for _, p := range n.procs {
			procs = append(procs, p)
		}
		n.mu.Unlock()

		errs := make([]error, len(procs))
		var wg sync.WaitGroup
		for i, p := range procs {
			wg.Go(func() { errs[i] = stop(p) })
		}
		wg.Wait()
		if out, err := run(context.Background(), "ip", "netns", "del", n.Name); err != nil {
			errs = append(errs, fmt.Errorf("netns: delete %s: %w", n.Name, withOutput(err, out)))
		}
		n.err = errors.Join(errs...)
	})
	return n.err
}

// Exec runs `ip netns exec NAME args...` to completion (bounded by a 60 s timeout) and returns
// its combined output; a failure's error includes that output.
func (n *NS) Exec(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	return n.ExecContext(ctx, args...)
}

// ExecContext is Exec bounded by ctx instead of the default timeout.
func (n *NS) ExecContext(ctx context.Context, args ...string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("netns: exec: no command")
	}
	out, err := run(ctx, "ip", append([]string{"netns", "exec", n.Name}, args...)...)
	if err != nil {
		return out, fmt.Errorf("netns %s: %s: %w", n.Name, strings.Join(args, " "), withOutput(err, out))
	}
	return out, nil
}

// Command returns an unstarted command that runs inside the namespace. `ip netns exec` execs the
// program in place, so the command's PID is the program's own PID. The process gets its own
// process group (a terminal's Ctrl-C reaches only the harness, which then stops it in order),
// cancelling ctx sends SIGTERM, then SIGKILL after StopTimeout, and it gets SIGKILL if the
// harness dies without cleaning up (PR_SET_PDEATHSIG; so do not start commands from inside Do,
// whose thread ends when fn returns).
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGTERM) }
	cmd.WaitDelay = StopTimeout
	return cmd
}

// Start starts a command inside the namespace and tracks it: Close (or Stop) terminates and
// reaps it. The NS owns the command's Wait: use n.Wait(cmd), never cmd.Wait. Combined output is
// kept (the last 64 KiB) and available from Output.
func (n *NS) Start(ctx context.Context, name string, args ...string) (*exec.Cmd, error) {
	cmd := n.Command(ctx, name, args...)
	if err := n.StartCmd(cmd); err != nil {
		return nil, err
	}
	return cmd, nil
}

// StartCmd starts and tracks a command built by Command (after the caller has set Stdout,
// Stdin, Env, ...). When Stdout and Stderr are both nil the output is kept for Output.
// As with Start, the NS owns its Wait.
func (n *NS) StartCmd(cmd *exec.Cmd) error {
	p := &proc{cmd: cmd, done: make(chan struct{})}
	if cmd.Stdout == nil && cmd.Stderr == nil {
		p.out = &tailBuffer{max: outputCap}
		cmd.Stdout, cmd.Stderr = p.out, p.out
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return fmt.Errorf("netns %s: start %s: namespace closed", n.Name, strings.Join(cmd.Args, " "))
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("netns %s: start %s: %w", n.Name, strings.Join(cmd.Args, " "), err)
	}
	n.procs[cmd] = p
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return nil
}

// Wait waits for a command started by Start/StartCmd to exit and returns what cmd.Wait returned
// (a non-zero exit or a signal is an error).
func (n *NS) Wait(cmd *exec.Cmd) error {
	p, err := n.lookup(cmd)
	if err != nil {
		return err
	}
	<-p.done
	return p.err
}

// Exited returns a channel closed when a command started by Start/StartCmd has exited and been
// reaped (nil for unknown commands), for selects with deadlines.
func (n *NS) Exited(cmd *exec.Cmd) <-chan struct{} {
	p, err := n.lookup(cmd)
	if err != nil {
		return nil
	}
	return p.done
}

// Stop terminates one command started by Start/StartCmd and its process group (SIGTERM, SIGKILL
// after StopTimeout) and reaps it; its exit status stays available from Wait.
func (n *NS) Stop(cmd *exec.Cmd) error {
	p, err := n.lookup(cmd)
	if err != nil {
		return err
	}
	return stop(p)
}

// Output returns the kept output of a command started by Start (or StartCmd without own writers).
func (n *NS) Output(cmd *exec.Cmd) string {
	p, err := n.lookup(cmd)
	if err != nil || p.out == nil {
		return ""
	}
	return p.out.String()
}

func (n *NS) lookup(cmd *exec.Cmd) (*proc, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p, ok := n.procs[cmd]
	if !ok {
		return nil, fmt.Errorf("netns %s: command not started by this namespace", n.Name)
	}
	return p, nil
}

// stop terminates p's process group (the command and anything it forked): SIGTERM, then SIGKILL
// after StopTimeout, and waits until the command is reaped. Signals go to the group only while
// the leader is unreaped, so its PID (the group ID) cannot have been reused.
func stop(p *proc) error {
	pid := p.cmd.Process.Pid
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		select {
		case <-p.done:
			return nil
		default:
		}
		if err := unix.Kill(-pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("netns: %v to process group %d: %w", sig, pid, err)
		}
		t := time.NewTimer(StopTimeout)
		select {
		case <-p.done:
			t.Stop()
			return nil
		case <-t.C:
		}
	}
	return fmt.Errorf("netns: pid %d did not exit after SIGKILL", pid)
}

// Do runs fn on an OS thread locked and switched into the namespace, then switches the thread
// back, and returns fn's error. Sockets fn creates belong to the namespace for their whole life,
// so Go clients and servers can be set up here and used from any goroutine afterwards.
// Goroutines that fn starts run on other threads, in the original namespace: create sockets in
// fn itself. If switching back fails, the thread stays locked to its goroutine, which then ends,
// so the runtime discards the thread instead of reusing it. A panic in fn is returned as an error.
func (n *NS) Do(fn func() error) error {
	target, err := os.Open(n.Path())
	if err != nil {
		return fmt.Errorf("netns %s: open: %w", n.Name, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: open current namespace: %w", n.Name, err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: setns: %w", n.Name, err)
			return
		}
		var fnErr error
		func() {
			defer func() {
				if r := recover(); r != nil {
					fnErr = fmt.Errorf("netns %s: panic in Do: %v\n%s", n.Name, r, debug.Stack())
				}
			}()
			fnErr = fn()
		}()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Still locked: the thread dies with this goroutine.
			errc <- errors.Join(fnErr, fmt.Errorf("netns %s: restore namespace: %w", n.Name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}

// Link creates a veth pair between a (interface aIf) and b (interface bIf) with the given MTU
// (0: kernel default) and brings both ends up. The pair is created directly inside a, with its
// peer inside b, so it never appears in the root namespace and names only need to be unique
// per namespace.
func Link(a *NS, aIf string, b *NS, bIf string, mtu int) error {
	args := []string{"link", "add", aIf}
	peer := []string{"peer", "name", bIf, "netns", b.Name}
	if mtu > 0 {
		args = append(args, "mtu", strconv.Itoa(mtu))
		peer = append(peer, "mtu", strconv.Itoa(mtu))
	}
	args = append(args, "type", "veth")
	if err := a.ip(append(args, peer...)...); err != nil {
		return err
	}
	if err := a.ip("link", "set", aIf, "up"); err != nil {
		return err
	}
	return b.ip("link", "set", bIf, "up")
}

// Addr adds addresses (CIDR notation) to ifname; IPv6 addresses skip duplicate address
// detection so they are usable at once.
func (n *NS) Addr(ifname string, cidrs ...string) error {
	for _, c := range cidrs {
		args := []string{"addr", "add", c, "dev", ifname}
		if strings.Contains(c, ":") {
			args = append([]string{"-6"}, append(args, "nodad")...)
		}
		if err := n.ip(args...); err != nil {
			return err
		}
	}
	return nil
}

// Route runs `ip route add args...` inside the namespace; a leading "-6" (or "-4") selects the
// family, e.g. Route("-6", "default", "via", "2001:db8::1").
func (n *NS) Route(args ...string) error {
	if len(args) > 0 && (args[0] == "-6" || args[0] == "-4") {
		return n.ip(append([]string{args[0], "route", "add"}, args[1:]...)...)
	}
	return n.ip(append([]string{"route", "add"}, args...)...)
}

// Sysctl sets a sysctl inside the namespace, e.g. Sysctl("net.ipv4.ip_forward", "1"). It writes
// /proc/sys from a thread inside the namespace, so no sysctl binary is needed.
func (n *NS) Sysctl(key, value string) error {
	p := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	return n.Do(func() error {
		if err := os.WriteFile(p, []byte(value), 0); err != nil {
			return fmt.Errorf("netns %s: sysctl %s=%s: %w", n.Name, key, value, err)
		}
		return nil
	})
}

// IP runs `ip -n NAME args...` (bounded), for configuration the helpers above do not cover.
func (n *NS) IP(args ...string) error { return n.ip(args...) }

func (n *NS) ip(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	if out, err := run(ctx, "ip", append([]string{"-n", n.Name}, args...)...); err != nil {
		return fmt.Errorf("netns %s: ip %s: %w", n.Name, strings.Join(args, " "), withOutput(err, out))
	}
	return nil
}

func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = StopTimeout
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func withOutput(err error, out string) error {
	if out = strings.TrimSpace(out); out != "" {
		return fmt.Errorf("%w: %s", err, out)
	}
	return err
}

// tailBuffer keeps the last max bytes written to it; it is safe for concurrent writers
// (exec copies stdout and stderr from separate goroutines).
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b.Write(p)
	if over := t.b.Len() - t.max; over > 0 {
		t.b.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.b.String()
}
