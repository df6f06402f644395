package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// sample is one run of one case against one target.
type sample struct {
	Value float64 `json:"value"` // in the case's unit
	// GatewayCPUPct is the gateway process's CPU (user+system, all threads) in percent of one
	// CPU; absent for the kernel paths, which have no process.
	GatewayCPUPct *float64 `json:"gateway_cpu_pct,omitempty"`
	// SoftirqPct is system-wide softirq time in percent of one CPU: the kernel's forwarding
	// work, but also the client's and server's network stacks on the same machine.
	SoftirqPct    float64 `json:"softirq_pct"`
	SentKpps      float64 `json:"sent_kpps,omitempty"`      // UDP: what iperf3 sent
	ForwardedKpps float64 `json:"forwarded_kpps,omitempty"` // UDP: gateway's server-side tx counter
	Errors        int64   `json:"errors,omitempty"`         // connrate: failed connections
	FirstError    string  `json:"first_error,omitempty"`    // connrate: the first failure
}

func (s sample) cpuString() string {
	str := fmt.Sprintf("softirq %3.0f%%", s.SoftirqPct)
	if s.GatewayCPUPct != nil {
		str = fmt.Sprintf("gateway cpu %3.0f%%  %s", *s.GatewayCPUPct, str)
	}
	if s.ForwardedKpps > 0 {
		str += fmt.Sprintf("  sent %.0f kpps, forwarded %.0f kpps", s.SentKpps, s.ForwardedKpps)
	}
	if s.Errors > 0 {
		str += fmt.Sprintf("  %d failed connections (first: %s)", s.Errors, s.FirstError)
	}
	return str
}

// stat is median and range over the successful samples.
type stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func summarize(v []float64) (stat, bool) {
	if len(v) == 0 {
		return stat{}, false
	}
	v = slices.Sorted(slices.Values(v))
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return stat{Median: m, Min: v[0], Max: v[len(v)-1]}, true
}

// result collects one target x case.
type result struct {
	Target  string   `json:"target"`
	Case    string   `json:"case"`
	Unit    string   `json:"unit"`
	Samples []sample `json:"samples"`
	Errors  []string `json:"errors,omitempty"`

	// Filled by finish from Samples.
	Value         *stat `json:"value,omitempty"`
	GatewayCPUPct *stat `json:"gateway_cpu_pct,omitempty"`
	SoftirqPct    *stat `json:"softirq_pct,omitempty"`
	SentKpps      *stat `json:"sent_kpps,omitempty"`
	ForwardedKpps *stat `json:"forwarded_kpps,omitempty"`
	// Ratios maps each other baseline to this median divided by the baseline's median.
	Ratios map[string]float64 `json:"ratios,omitempty"`
}

func statOf(samples []sample, f func(sample) (float64, bool)) *stat {
	var v []float64
	for _, s := range samples {
		if x, ok := f(s); ok {
			v = append(v, x)
		}
	}
	if st, ok := summarize(v); ok {
		return &st
	}
	return nil
}

// targetInfo describes a target in the report, and why it did not run if it did not.
type targetInfo struct {
	Name    string `json:"name"`
	Desc    string `json:"description"`
	Skipped string `json:"skipped,omitempty"`
	Error   string `json:"error,omitempty"`
}

type caseInfo struct {
	Name string `json:"name"`
	Desc string `json:"description"`
	Unit string `json:"unit"`
}

// report is the whole run, written as results.json.
type report struct {
	Started         time.Time    `json:"started"`
	Seconds         float64      `json:"seconds"`
	Kernel          string       `json:"kernel"`
	CPUs            int          `json:"cpus"`
	GoVersion       string       `json:"go_version"`
	LoadAvgStart    string       `json:"loadavg_start"` // /proc/loadavg 1/5/15 min at start
	LoadAvgEnd      string       `json:"loadavg_end"`
	Quick           bool         `json:"quick"`
	Repeats         int          `json:"repeats"`
	DurationSeconds float64      `json:"duration_seconds"`
	Interrupted     string       `json:"interrupted,omitempty"`
	Targets         []targetInfo `json:"targets"`
	Cases           []caseInfo   `json:"cases"`
	Results         []*result    `json:"results"`
	// L7 holds the HTTP ingress benchmark's report once bench/l7 is wired in (l7Hook).
	L7 any `json:"l7,omitempty"`
}

// finish computes the statistics and the ratios to each baseline.
func (r *report) finish() {
	byKey := map[string]*result{}
	for _, res := range r.Results {
		res.Value = statOf(res.Samples, func(s sample) (float64, bool) { return s.Value, true })
		res.GatewayCPUPct = statOf(res.Samples, func(s sample) (float64, bool) {
			if s.GatewayCPUPct == nil {
				return 0, false
			}
			return *s.GatewayCPUPct, true
		})
		res.SoftirqPct = statOf(res.Samples, func(s sample) (float64, bool) { return s.SoftirqPct, true })
		res.SentKpps = statOf(res.Samples, func(s sample) (float64, bool) { return s.SentKpps, s.SentKpps > 0 })
		res.ForwardedKpps = statOf(res.Samples, func(s sample) (float64, bool) { return s.ForwardedKpps, s.SentKpps > 0 })
		byKey[res.Target+"/"+res.Case] = res
	}
	for _, res := range r.Results {
		res.Ratios = nil
		if res.Value == nil {
			continue
		}
		for _, b := range baselines {
			base := byKey[b+"/"+res.Case]
			if b == res.Target || base == nil || base.Value == nil || base.Value.Median <= 0 {
				continue
			}
			if res.Ratios == nil {
				res.Ratios = map[string]float64{}
			}
			res.Ratios[b] = res.Value.Median / base.Value.Median
		}
	}
}

func (r *report) result(target, c string) *result {
	for _, res := range r.Results {
		if res.Target == target && res.Case == c {
			return res
		}
	}
	return nil
}

// ranTargets are the targets with at least one result value, in report order.
func (r *report) ranTargets() []string {
	var names []string
	for _, t := range r.Targets {
		for _, res := range r.Results {
			if res.Target == t.Name && res.Value != nil {
				names = append(names, t.Name)
				break
			}
		}
	}
	return names
}

// markdown renders the tables for docs/performance.md and results.md.
func (r *report) markdown() string {
	var b strings.Builder
	mode := "full"
	if r.Quick {
		mode = "quick"
	}
	fmt.Fprintf(&b, "Run %s (%s mode): %d repeat(s) of %.0f s per case, %d CPUs, kernel %s, %s, %.0f s total, load average %s at start, %s at end.\n\n",
		r.Started.UTC().Format("2006-01-02 15:04 MST"), mode, r.Repeats, r.DurationSeconds, r.CPUs, r.Kernel, r.GoVersion, r.Seconds, r.LoadAvgStart, r.LoadAvgEnd)
	if r.Interrupted != "" {
		fmt.Fprintf(&b, "**Incomplete run: %s.**\n\n", r.Interrupted)
	}
	targets := r.ranTargets()

	b.WriteString("Median (min–max) per case:\n\n| case | unit |")
	for _, t := range targets {
		fmt.Fprintf(&b, " %s |", t)
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---:|", len(targets)) + "\n")
	for _, c := range r.Cases {
		fmt.Fprintf(&b, "| %s | %s |", c.Name, c.Unit)
		for _, t := range targets {
			res := r.result(t, c.Name)
			switch {
			case res == nil:
				b.WriteString(" n/a |")
			case res.Value == nil:
				b.WriteString(" failed |")
			default:
				fmt.Fprintf(&b, " %s (%s–%s) |", num(res.Value.Median), num(res.Value.Min), num(res.Value.Max))
			}
		}
		b.WriteString("\n")
	}

	b.WriteString("\nRatio of the median to each baseline's median, and CPU (median, % of one CPU; " +
		"softirq is system-wide and includes the client's and server's stacks):\n\n" +
		"| case | target |")
	for _, base := range baselines {
		fmt.Fprintf(&b, " vs %s |", base)
	}
	b.WriteString(" gateway process CPU | softirq |\n|---|---|" + strings.Repeat("---:|", len(baselines)+2) + "\n")
	for _, c := range r.Cases {
		for _, t := range targets {
			res := r.result(t, c.Name)
			if res == nil || res.Value == nil {
				continue
			}
			fmt.Fprintf(&b, "| %s | %s |", c.Name, t)
			for _, base := range baselines {
				if x, ok := res.Ratios[base]; ok {
					fmt.Fprintf(&b, " %.2f |", x)
				} else {
					b.WriteString(" – |")
				}
			}
			if res.GatewayCPUPct != nil {
				fmt.Fprintf(&b, " %.0f%% |", res.GatewayCPUPct.Median)
			} else {
				b.WriteString(" – (kernel) |")
			}
			fmt.Fprintf(&b, " %.0f%% |\n", res.SoftirqPct.Median)
		}
	}

	if c := r.caseInfo("udp64"); c != nil {
		b.WriteString("\nUDP 64-byte packets, median kpps (sent by iperf3 / forwarded by the gateway / received by the server):\n\n| target | sent | forwarded | received |\n|---|---:|---:|---:|\n")
		for _, t := range targets {
			res := r.result(t, c.Name)
			if res == nil || res.Value == nil || res.SentKpps == nil {
				continue
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", t, num(res.SentKpps.Median), num(res.ForwardedKpps.Median), num(res.Value.Median))
		}
	}

	var notes []string
	for _, t := range r.Targets {
		switch {
		case t.Skipped != "":
			notes = append(notes, fmt.Sprintf("- %s skipped: %s", t.Name, t.Skipped))
		case t.Error != "":
			notes = append(notes, fmt.Sprintf("- %s failed: %s", t.Name, t.Error))
		}
	}
	for _, res := range r.Results {
		if len(res.Errors) > 0 {
			notes = append(notes, fmt.Sprintf("- %s %s: %d failed run(s), first: %s", res.Target, res.Case, len(res.Errors), res.Errors[0]))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n" + strings.Join(notes, "\n") + "\n")
	}
	if m, ok := r.L7.(interface{ Markdown() string }); ok {
		b.WriteString("\nL7 ingress (wrk on loopback, 64-byte responses):\n\n")
		b.WriteString(m.Markdown())
	}
	return b.String()
}

func (r *report) caseInfo(name string) *caseInfo {
	for i := range r.Cases {
		if r.Cases[i].Name == name {
			return &r.Cases[i]
		}
	}
	return nil
}

// num formats with about three significant digits.
func num(x float64) string {
	switch {
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.2f", x)
	}
}

// chart draws one group of bars per case: each target's median relative to the first baseline
// that ran (kernel routing normally; else the first target), so cases with different units
// share one axis.
func (r *report) chart(path string) error {
	targets := r.ranTargets()
	ref := ""
	for _, b := range baselines {
		if slices.Contains(targets, b) {
			ref = b
			break
		}
	}
	if ref == "" && len(targets) > 0 {
		ref = targets[0] // e.g. -targets edgegate,edgegate-nooffload
	}
	if ref == "" {
		return fmt.Errorf("chart: no target has results")
	}
	p := plot.New()
	p.Title.Text = "edgegate bench: median relative to " + ref
	p.Y.Label.Text = "× " + ref
	p.Y.Min = 0
	var names []string
	for _, c := range r.Cases {
		names = append(names, c.Name)
	}
	w := vg.Points(60 / float64(max(len(targets), 1)))
	for i, t := range targets {
		vals := make(plotter.Values, len(r.Cases))
		for j, c := range r.Cases {
			res := r.result(t, c.Name)
			switch {
			case res == nil || res.Value == nil:
			default:
				if base := r.result(ref, c.Name); base != nil && base.Value != nil && base.Value.Median > 0 {
					vals[j] = res.Value.Median / base.Value.Median
				}
			}
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return fmt.Errorf("chart: %w", err)
		}
		bars.LineStyle.Width = 0
		bars.Color = plotutil.Color(i)
		bars.Offset = w * vg.Length(float64(i)-float64(len(targets)-1)/2)
		p.Add(bars)
		p.Legend.Add(t, bars)
	}
	grid := plotter.NewGrid()
	grid.Vertical.Color = color.Transparent
	p.Add(grid)
	p.Legend.Top = true
	p.NominalX(names...)
	return p.Save(10*vg.Inch, 5*vg.Inch, path)
}

// write stores results.json, results.md and results.png in dir.
func (r *report) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	md := "# edgegate bench results\n\n" + r.markdown()
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	return r.chart(filepath.Join(dir, "results.png"))
}
