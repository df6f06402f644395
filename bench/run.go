package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
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

// runner runs targets one after another and reports progress.
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

// runTarget builds a fresh topology for t, starts the servers and the gateway, runs every case
// opt.repeats times and tears everything down again (also on error or cancellation). Per-run
// failures are recorded in the results; the returned error means the target could not run.
// created is told the namespace names at once, so the caller can verify they are gone.
func (r *runner) runTarget(ctx context.Context, t target, results map[string]*result, created func([]string)) (err error) {
	topo, err := newTopology(1500)
	if err != nil {
		return err
	}
	created(topo.names())
	defer func() {
		if cerr := topo.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
	}()

	if _, err := topo.server.Start(ctx, "iperf3", "-s", "-p", strconv.Itoa(iperfPort)); err != nil {
		return err
	}
	cs, err := startConnServer(topo.server, connRatePort)
	if err != nil {
		return err
	}
	defer cs.Close()
	if err := waitListening(ctx, topo.server, iperfPort, 10*time.Second); err != nil {
		return err
	}

	gw, err := t.setup(ctx, topo, r.opt.dir)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	pid := 0
	var exited <-chan struct{}
	if gw != nil {
		pid, exited = gw.Process.Pid, topo.gw.Exited(gw)
	}
	gwFailure := func(err error) error {
		if gw == nil {
			return err
		}
		return fmt.Errorf("%w (gateway output: %s)", err, firstLines(lastLines(topo.gw.Output(gw), 8), 8))
	}
	dst := netip.MustParseAddr(t.dst)
	if err := waitReachable(ctx, topo.client, netip.AddrPortFrom(dst, connRatePort), 20*time.Second, exited); err != nil {
		return gwFailure(err)
	}

	env := runEnv{topo: topo, dst: dst, dur: r.opt.duration}
	for _, c := range r.cases {
		if c.udp && !t.udp {
			continue
		}
		res := results[t.name+"/"+c.name]
		for rep := 1; rep <= r.opt.repeats; rep++ {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			select {
			case <-exited:
				return gwFailure(errors.New("gateway process exited"))
			default:
			}
			r.done++
			s, err := measure(ctx, c, env, pid)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				res.Errors = append(res.Errors, gwFailure(err).Error())
				fmt.Fprintf(r.progress, "bench: [%d/%d] %-18s %-9s rep %d/%d  FAILED: %v\n",
					r.done, r.total, t.name, c.name, rep, r.opt.repeats, err)
				continue
			}
			res.Samples = append(res.Samples, s)
			fmt.Fprintf(r.progress, "bench: [%d/%d] %-18s %-9s rep %d/%d  %10.2f %-6s  %s\n",
				r.done, r.total, t.name, c.name, rep, r.opt.repeats, s.Value, c.unit, s.cpuString())
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
