// Command bench measures edgegate against the kernel and HAProxy in one run, on one machine:
// it builds client -> gateway -> server network namespaces joined by veth pairs and pushes the
// same bounded loads (iperf3 TCP/UDP, a Go connection-rate client) through each gateway in turn:
//
//   - kernel-route: plain kernel IPv4 forwarding
//   - kernel-nat: kernel DNAT + MASQUERADE (nftables in the gateway namespace)
//   - haproxy: HAProxy mode tcp, run by the harness with its own config
//   - edgegate, edgegate-nooffload: edgegate with and without TUN offloads
//
// It writes results.json, results.md and results.png (medians, min-max, ratios to each
// baseline, gateway CPU) to -out. Run it as root from the module:
//
//	go run ./bench [-quick] [-repeats 3] [-out DIR]
//
// Everything it creates (namespaces, processes, temporary files) is removed when it ends, also
// on SIGINT/SIGTERM and on its -timeout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgegate/edgegate/internal/netns"
)

// l7Hook runs the L7 (HTTP ingress) benchmark when set; its report goes to report.L7. It stays
// nil until bench/l7 exists and a separate file wires it in (deliberately not imported here).
var l7Hook func(ctx context.Context, quick bool, dir string) (any, error)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "short smoke run: 1 repeat of 1 s per case, under 2 minutes")
	repeats := fs.Int("repeats", 3, "runs per case (median and min-max are reported)")
	duration := fs.Duration("duration", 5*time.Second, "length of each run (whole seconds for iperf3)")
	out := fs.String("out", "bench-results", "directory for results.json, results.md and results.png")
	timeout := fs.Duration("timeout", 0, "hard bound of the whole run (default 14m, -quick 110s)")
	edgegateBin := fs.String("edgegate", "", "edgegate binary to use (default: go build ./cmd/edgegate)")
	targetList := fs.String("targets", "", "comma-separated subset of: "+strings.Join(targetNames(), ","))
	fs.IntVar(&edgegateQueues, "queues", runtime.NumCPU(), "tun.queues for the edgegate targets (one worker per queue; default one per CPU)")
	caseList := fs.String("cases", "", "comma-separated subset of: "+strings.Join(caseNames(), ","))
	if err := fs.Parse(args); err != nil {
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		if !set["repeats"] {
			*repeats = 1
		}
		if !set["duration"] {
			*duration = time.Second
		}
	}
	if *timeout == 0 {
		*timeout = 14 * time.Minute
		if *quick {
			*timeout = 110 * time.Second
		}
	}
	if *repeats < 1 || *duration < time.Second {
		fmt.Fprintln(stderr, "bench: -repeats must be >= 1 and -duration >= 1s")
		return 2
	}
	cases, err := selectCases(*caseList)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	}
	wanted, err := selectTargets(*targetList)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	}
	if why := netns.Missing(); why != "" {
		fmt.Fprintf(stderr, "bench: cannot build the namespace topology: %s (run as root with iproute2 and /dev/net/tun)\n", why)
		return 1
	}
	if miss := missingTools("iperf3", "ss"); len(miss) > 0 {
		fmt.Fprintf(stderr, "bench: missing required tools: %s (apt-get install iperf3 iproute2)\n", strings.Join(miss, ", "))
		return 1
	}

	// SIGINT/SIGTERM cancel the context; the handler stays installed until cleanup is done, so
	// a second signal cannot cut the teardown short (teardown is itself bounded).
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	dir, err := os.MkdirTemp("", "edgegate-bench-")
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)

	removeStale(ctx, stderr)
	start := time.Now()
	skipped := map[string]string{}
	bin := *edgegateBin
	if bin == "" && (wanted[targetEdge] || wanted[targetEdgeNoOffload]) {
		fmt.Fprintln(stderr, "bench: building ./cmd/edgegate")
		bctx, bcancel := context.WithTimeout(ctx, 3*time.Minute)
		bin, err = buildEdgegate(bctx, dir)
		bcancel()
		if err != nil {
			fmt.Fprintf(stderr, "bench: edgegate binary not buildable, skipping the edgegate cases: %v\n", err)
			skipped[targetEdge] = "edgegate binary not buildable: " + err.Error()
			skipped[targetEdgeNoOffload] = skipped[targetEdge]
		}
	}
	targets := allTargets(bin)
	for _, t := range targets {
		if !wanted[t.name] {
			skipped[t.name] = "not selected (-targets)"
		} else if miss := missingTools(t.needs...); len(miss) > 0 && skipped[t.name] == "" {
			skipped[t.name] = "missing tools: " + strings.Join(miss, ", ")
			fmt.Fprintf(stderr, "bench: %s skipped: %s\n", t.name, skipped[t.name])
		}
	}

	uname := "unknown"
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		uname = utsString(u.Release[:])
	}
	rep := &report{
		Started: start, Kernel: uname, CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
		Quick: *quick, Repeats: *repeats, DurationSeconds: duration.Seconds(),
		LoadAvgStart: loadAvg(),
	}
	if l1, err := strconv.ParseFloat(strings.Fields(rep.LoadAvgStart + " x")[0], 64); err == nil && l1 > float64(rep.CPUs)/2 {
		fmt.Fprintf(stderr, "bench: warning: load average %s on %d CPUs: other jobs compete for the CPUs, figures will be noisy\n", rep.LoadAvgStart, rep.CPUs)
	}
	results := map[string]*result{}
	for _, c := range cases {
		rep.Cases = append(rep.Cases, caseInfo{Name: c.name, Desc: c.desc, Unit: c.unit})
	}
	for _, t := range targets {
		if skipped[t.name] == "not selected (-targets)" {
			continue
		}
		rep.Targets = append(rep.Targets, targetInfo{Name: t.name, Desc: t.desc, Skipped: skipped[t.name]})
		for _, c := range cases {
			if c.udp && !t.udp {
				continue
			}
			res := &result{Target: t.name, Case: c.name, Unit: c.unit}
			results[t.name+"/"+c.name] = res
			rep.Results = append(rep.Results, res)
		}
	}

	r := &runner{
		opt:      options{quick: *quick, repeats: *repeats, duration: *duration, dir: dir},
		cases:    cases,
		progress: stderr,
	}
	var created []string
	var beds []*bed
	defer func() {
		for _, b := range beds { // also on panic or early return
			b.Close()
		}
	}()
	for _, t := range targets {
		if skipped[t.name] != "" || ctx.Err() != nil {
			continue
		}
		fmt.Fprintf(stderr, "bench: preparing %s: %s\n", t.name, t.desc)
		b, err := r.prepare(ctx, t, func(names []string) { created = append(created, names...) })
		if err != nil {
			if ctx.Err() == nil {
				fmt.Fprintf(stderr, "bench: target %s failed: %v\n", t.name, err)
				rep.Targets[indexOf(rep.Targets, t.name)].Error = err.Error()
			}
			continue
		}
		beds = append(beds, b)
	}
	r.total = 0
	for _, b := range beds {
		r.total += plannedRuns([]target{b.t}, nil, cases, *repeats)
	}
	if ctx.Err() == nil {
		r.runAll(ctx, beds, results)
	}
	for _, b := range beds {
		if b.failed != nil {
			rep.Targets[indexOf(rep.Targets, b.t.name)].Error = b.failed.Error()
		}
		if err := b.Close(); err != nil {
			fmt.Fprintf(stderr, "bench: %s: %v\n", b.t.name, err)
		}
	}
	beds = nil
	if ctx.Err() != nil {
		rep.Interrupted = "stopped early: " + context.Cause(ctx).Error()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			rep.Interrupted = fmt.Sprintf("stopped at the -timeout of %v", *timeout)
		}
		fmt.Fprintf(stderr, "bench: %s; writing partial results\n", rep.Interrupted)
	}

	if l7Hook != nil && ctx.Err() == nil {
		fmt.Fprintln(stderr, "bench: L7 benchmark")
		l7, err := l7Hook(ctx, *quick, dir)
		if err != nil {
			fmt.Fprintf(stderr, "bench: L7 benchmark failed: %v\n", err)
		}
		rep.L7 = l7
	}

	rep.Seconds = time.Since(start).Seconds()
	rep.LoadAvgEnd = loadAvg()
	rep.finish()
	status := 0
	if left := leftoverNamespaces(created); len(left) > 0 {
		fmt.Fprintf(stderr, "bench: namespaces left behind: %s\n", strings.Join(left, " "))
		status = 1
	}
	if err := rep.write(*out); err != nil {
		fmt.Fprintf(stderr, "bench: writing results: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s\nresults: %s/results.{json,md,png}\n", rep.markdown(), *out)
	if len(rep.ranTargets()) == 0 || rep.Interrupted != "" {
		status = 1
	}
	return status
}

func indexOf(ts []targetInfo, name string) int {
	return slices.IndexFunc(ts, func(t targetInfo) bool { return t.Name == name })
}

func targetNames() []string {
	var s []string
	for _, t := range allTargets("") {
		s = append(s, t.name)
	}
	return s
}

func caseNames() []string {
	var s []string
	for _, c := range allCases() {
		s = append(s, c.name)
	}
	return s
}

// selectTargets parses -targets ("" selects all).
func selectTargets(list string) (map[string]bool, error) {
	all := targetNames()
	m := map[string]bool{}
	if list == "" {
		for _, n := range all {
			m[n] = true
		}
		return m, nil
	}
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if !slices.Contains(all, n) {
			return nil, fmt.Errorf("unknown target %q (have %s)", n, strings.Join(all, ", "))
		}
		m[n] = true
	}
	return m, nil
}

// selectCases parses -cases ("" selects all), keeping the canonical order.
func selectCases(list string) ([]benchCase, error) {
	all := allCases()
	if list == "" {
		return all, nil
	}
	want := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if !slices.Contains(caseNames(), n) {
			return nil, fmt.Errorf("unknown case %q (have %s)", n, strings.Join(caseNames(), ", "))
		}
		want[n] = true
	}
	return slices.DeleteFunc(all, func(c benchCase) bool { return !want[c.name] }), nil
}

func utsString[T int8 | uint8](b []T) string {
	var s []byte
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

// loadAvg is the first three fields of /proc/loadavg: a loaded machine (other jobs on the same
// CPUs) makes every figure of the run suspect, so the report records it.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}
