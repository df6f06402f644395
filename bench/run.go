package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgegate/edgegate/internal/netns"
)

// options are the run parameters (from flags).
type options struct {
	quick    bool
	repeats  int
	duration time.Duration
	dir      string // scratch directory for config files
}

// runner prepares every target side by side and then interleaves the runs: each repeat of each
// case is measured for all targets back to back, so slow drifts of the machine (other jobs,
// thermal limits) hit every target alike and the ratios stay fair.
type runner struct {
	opt      options
	cases    []benchCase
	progress io.Writer
	total    int // planned runs, for "[i/total]"
	done     int
}

// plannedRuns counts the runs of the targets that are not skipped.
func plannedRuns(targets []target, skipped map[string]string, cases []benchCase, repeats int) int {
	n := 0
	for _, t := range targets {
		if skipped[t.name] != "" {
			continue
		}
		for _, c := range cases {
			if !c.udp || t.udp {
				n += repeats
			}
		}
	}
	return n
}

// bed is a target ready to measure: its own topology with servers and gateway running.
type bed struct {
	t      target
	topo   *topology
	cs     *connServer
	gw     *exec.Cmd // nil for kernel paths
	exited <-chan struct{}
	env    runEnv
	failed error // set when the gateway died; the target gets no more runs
}

func (b *bed) pid() int {
	if b.gw == nil {
		return 0
	}
	return b.gw.Process.Pid
}

// gwFailure adds the tail of the gateway's output to err (it says why the gateway failed).
func (b *bed) gwFailure(err error) error {
	if b.gw == nil {
		return err
	}
	return fmt.Errorf("%w (gateway output: %s)", err, firstLines(lastLines(b.topo.gw.Output(b.gw), 8), 8))
}

// Close stops the servers and the gateway and deletes the namespaces.
func (b *bed) Close() error {
	var errs []error
	if b.cs != nil {
		errs = append(errs, b.cs.Close())
	}
	if err := b.topo.Close(); err != nil {
		errs = append(errs, fmt.Errorf("cleanup: %w", err))
	}
	return errors.Join(errs...)
}

// prepare builds a fresh topology for t, starts the iperf3 and connection-rate servers and the
// gateway, and waits until the client reaches the server through it. On error everything is
// torn down again. created is told the namespace names at once, so the caller can verify
// they are gone at the end.
func (r *runner) prepare(ctx context.Context, t target, created func([]string)) (_ *bed, err error) {
	topo, err := newTopology(1500)
	if err != nil {
		return nil, err
	}
	created(topo.names())
	b := &bed{t: t, topo: topo}
	defer func() {
		if err != nil {
			err = errors.Join(err, b.Close())
		}
	}()

	if _, err := topo.server.Start(ctx, "iperf3", "-s", "-p", strconv.Itoa(iperfPort)); err != nil {
		return nil, err
	}
	if b.cs, err = startConnServer(topo.server, connRatePort); err != nil {
		return nil, err
	}
	if err := waitListening(ctx, topo.server, iperfPort, 10*time.Second); err != nil {
		return nil, err
	}
	if b.gw, err = t.setup(ctx, topo, r.opt.dir); err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	if b.gw != nil {
		b.exited = topo.gw.Exited(b.gw)
	}
	dst := netip.MustParseAddr(t.dst)
	if err := waitReachable(ctx, topo.client, netip.AddrPortFrom(dst, connRatePort), 20*time.Second, b.exited); err != nil {
		return nil, b.gwFailure(err)
	}
	b.env = runEnv{topo: topo, dst: dst, dur: r.opt.duration}
	return b, nil
}

// runAll measures every case opt.repeats times on every bed, interleaved (repeat, case, bed).
// Per-run failures are recorded in the results; a bed whose gateway exits is marked failed and
// left out from then on. It returns early only when ctx ends.
func (r *runner) runAll(ctx context.Context, beds []*bed, results map[string]*result) error {
	for rep := 1; rep <= r.opt.repeats; rep++ {
		for _, c := range r.cases {
			for _, b := range beds {
				if (c.udp && !b.t.udp) || b.failed != nil {
					continue
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				select {
				case <-b.exited:
					b.failed = b.gwFailure(errors.New("gateway process exited"))
					fmt.Fprintf(r.progress, "bench: target %s failed: %v\n", b.t.name, b.failed)
					continue
				default:
				}
				r.done++
				res := results[b.t.name+"/"+c.name]
				s, err := measure(ctx, c, b.env, b.pid())
				if err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					res.Errors = append(res.Errors, b.gwFailure(err).Error())
					fmt.Fprintf(r.progress, "bench: [%d/%d] rep %d/%d %-9s %-18s FAILED: %v\n",
						r.done, r.total, rep, r.opt.repeats, c.name, b.t.name, err)
					continue
				}
				res.Samples = append(res.Samples, s)
				fmt.Fprintf(r.progress, "bench: [%d/%d] rep %d/%d %-9s %-18s %10.2f %-6s  %s\n",
					r.done, r.total, rep, r.opt.repeats, c.name, b.t.name, s.Value, c.unit, s.cpuString())
			}
		}
	}
	return nil
}

// measure runs one case once with CPU accounting around it.
func measure(ctx context.Context, c benchCase, env runEnv, pid int) (sample, error) {
	var s sample
	before, err := snapshot(pid)
	if err != nil {
		return s, err
	}
	if err := c.run(ctx, env, &s); err != nil {
		return s, err
	}
	after, err := snapshot(pid)
	if err != nil {
		return s, err
	}
	proc, soft := cpuUse(before, after)
	if pid > 0 {
		s.GatewayCPUPct = &proc
	}
	s.SoftirqPct = soft
	return s, nil
}

// waitListening polls `ss` in n until a TCP listener on port exists (iperf3 needs a moment).
func waitListening(ctx context.Context, n *netns.NS, port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, err := n.ExecContext(ctx, "ss", "-Hltn", "sport = :"+strconv.Itoa(port))
		if err == nil && strings.TrimSpace(out) != "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on port %d in %s after %v (%v)", port, n.Name, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// missingTools returns the programs of names that are not installed.
func missingTools(names ...string) []string {
	var miss []string
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			miss = append(miss, n)
		}
	}
	return miss
}

// leftoverNamespaces returns those of names that `ip netns` still lists.
func leftoverNamespaces(names []string) []string {
	var left []string
	for _, n := range names {
		if _, err := os.Stat("/run/netns/" + n); err == nil {
			left = append(left, n)
		}
	}
	return left
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// staleName matches the namespaces newTopology creates: prefix, creator PID, counter.
var staleName = regexp.MustCompile(`^egb[cgs]([0-9]+)-[0-9]+$`)

// removeStale deletes bench namespaces left by an earlier run that was killed without cleanup
// (SIGKILL): only names of this harness whose creator PID no longer exists. Processes in them
// already got SIGKILL when the harness died (netns.Command sets the parent-death signal).
func removeStale(ctx context.Context, log io.Writer) {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		m := staleName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		if out, err := exec.CommandContext(ctx, "ip", "netns", "del", e.Name()).CombinedOutput(); err != nil {
			fmt.Fprintf(log, "bench: removing stale namespace %s: %v: %s\n", e.Name(), err, out)
			continue
		}
		fmt.Fprintf(log, "bench: removed stale namespace %s (its bench process %d is gone)\n", e.Name(), pid)
	}
}
