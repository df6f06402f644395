package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/takeover"
)

// Limits of `edgegate upgrade`.
const (
	// defaultUpgradeWait bounds how long `edgegate upgrade` waits for the running process to
	// hand over and exit: the successor's start (takeover.ReadyTimeout) and the old process's L7
	// drain (ingress.drain_timeout, 10 s by default) with a margin.
	defaultUpgradeWait = 60 * time.Second
	// upgradePoll is how often it checks whether either process has exited.
	upgradePoll = 20 * time.Millisecond
)

// cmdUpgrade (edgegate upgrade) replaces the running edgegate with the binary on disk: it asks
// the running one (over takeover.sock) for its executable, arguments and $NOTIFY_SOCKET, starts
// that executable with the same arguments and --takeover, and waits until the old process has
// handed over and exited (exit 0) or the new one has exited (exit 1: the old one serves on).
func cmdUpgrade(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("upgrade", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "/etc/edgegate/edgegate.yaml", "configuration file of the running edgegate (locates takeover.sock; the new process reads the file given on its own command line)")
	wait := fs.Duration("wait", defaultUpgradeWait, "how long to wait for the hand-over and the old process's exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, "edgegate upgrade: the configuration does not load, the running edgegate is left alone:")
		printConfigErrors(stderr, err)
		return 1
	}
	info, err := takeover.Query(takeoverSocket(cfg))
	if err != nil {
		fmt.Fprintln(stderr, "edgegate upgrade:", err)
		return 1
	}
	env := os.Environ()
	if info.NotifySocket != "" {
		env = append(env, "NOTIFY_SOCKET="+info.NotifySocket)
	}
	cmd := successorCommand(info.Executable, info.Args, env)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, "edgegate upgrade:", err)
		return 1
	}
	fmt.Fprintf(stdout, "edgegate upgrade: started pid %d (%s) to take over from pid %d\n", cmd.Process.Pid, info.Executable, info.PID)
	if err := awaitHandover(cmd, info.PID, *wait); err != nil {
		fmt.Fprintln(stderr, "edgegate upgrade:", err)
		return 1
	}
	fmt.Fprintf(stdout, "edgegate upgrade: pid %d serves, pid %d exited\n", cmd.Process.Pid, info.PID)
	return 0
}

// awaitHandover waits until the old process (pid old) has exited while the successor runs, or
// the successor has exited (an error: it failed, the old process serves on).
func awaitHandover(cmd *exec.Cmd, old int, wait time.Duration) error {
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tick := time.NewTicker(upgradePoll)
	defer tick.Stop()
	deadline := time.After(wait)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("the new process exited (%v): pid %d serves on", err, old)
		case <-deadline:
			return fmt.Errorf("no hand-over within %v: pid %d still runs, new pid %d left running", wait, old, cmd.Process.Pid)
		case <-tick.C:
		}
		if !alive(old) {
			return nil
		}
	}
}

// alive reports whether a process with that PID runs: it exists and is not a zombie (an exited
// process whose parent has not reaped it yet, or never will: an orphan under a PID 1 that does
// not reap).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ...: comm may hold spaces and parentheses, the state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// successorCommand is the command that takes over from a running edgegate: its executable
// with its arguments and --takeover, in a session of its own (it outlives the command or the
// process that starts it).
func successorCommand(exe string, args, env []string) *exec.Cmd {
	cmd := exec.Command(exe, withTakeover(args)...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd
}

// withTakeover returns run's arguments with --takeover added after "run" (once).
func withTakeover(args []string) []string {
	if len(args) == 0 || args[0] != "run" {
		return args
	}
	for _, a := range args[1:] {
		if a == "--" {
			break
		}
		if a == "-takeover" || a == "--takeover" || a == "-takeover=true" || a == "--takeover=true" {
			return args
		}
	}
	return slices.Insert(slices.Clone(args), 1, "--takeover")
}

// processInfo is what this process answers `edgegate upgrade` (takeover.Info).
func processInfo() takeover.Info {
	exe, err := os.Executable() // the path on disk, also after the file was replaced
	if err != nil {
		exe = os.Args[0]
	}
	return takeover.Info{PID: os.Getpid(), Executable: exe, Args: os.Args[1:], NotifySocket: os.Getenv("NOTIFY_SOCKET")}
}

// upgradeSelf (SIGUSR2) starts the binary on disk with this process's arguments and --takeover.
// It needs the privileges of a start: after the privilege drop this process cannot pass
// CAP_NET_ADMIN to a program it starts (the ambient set is cleared and locked), so it refuses and
// says to run `edgegate upgrade` instead. A successor that fails exits non-zero and this process
// serves on.
func (d *daemon) upgradeSelf() {
	if d.dropped {
		d.log.Error("SIGUSR2: upgrade refused: privileges were dropped, a started binary would lack CAP_NET_ADMIN; run `edgegate upgrade` (as root) instead, or run with -drop-privileges=false")
		return
	}
	info := processInfo()
	cmd := successorCommand(info.Executable, info.Args, os.Environ())
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		d.log.Error("SIGUSR2: starting the successor", "exe", info.Executable, "err", err)
		return
	}
	d.log.Info("SIGUSR2: successor started", "pid", cmd.Process.Pid, "exe", info.Executable)
	go func() { // reaped here; once it took over, this process exits first
		err := cmd.Wait()
		d.log.Warn("successor exited: still serving", "pid", cmd.Process.Pid, "err", err)
	}()
}

// sdNotify sends state to the service manager (systemd's sd_notify protocol: one datagram to
// $NOTIFY_SOCKET, a path or, with a leading @, an abstract name); without it, nothing.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// readyState is the sd_notify state a process sends once it serves: a successor also names
// itself the service's main process (the unit needs NotifyAccess=all to accept that from it).
func readyState(tookOver bool) string {
	if tookOver {
		return "MAINPID=" + strconv.Itoa(os.Getpid()) + "\nREADY=1"
	}
	return "READY=1"
}
