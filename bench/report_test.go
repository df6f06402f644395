package main

import (
	"bytes"
	"encoding/json"
	"image/png"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgegate/edgegate/config"
)

func TestParseIperf(t *testing.T) {
	const tcp = `{"start":{},"end":{"sum_sent":{"seconds":1.0,"bytes":1e9,"bits_per_second":8e9},
		"sum_received":{"seconds":1.0,"bytes":9.9e8,"bits_per_second":7.9e9}}}`
	const udp = `{"end":{"sum_sent":{"seconds":2,"packets":1000,"lost_packets":0},
		"sum_received":{"seconds":2,"packets":1000,"lost_packets":100}}}`
	tests := []struct {
		name    string
		in      string
		wantErr string
		check   func(iperfResult) bool
	}{
		{"tcp", tcp, "", func(r iperfResult) bool { return r.End.SumReceived.BitsPerSecond == 7.9e9 }},
		{"udp received pps", udp, "", func(r iperfResult) bool { return r.receivedPPS() == 450 }},
		{"warning before json", "warning: something\n" + tcp, "", func(r iperfResult) bool { return r.End.SumSent.BitsPerSecond == 8e9 }},
		{"iperf error", `{"start":{},"error":"the server is busy running a test. try again later"}`, "busy", nil},
		{"no totals", `{"end":{}}`, "without sender/receiver", nil},
		{"garbage", `iperf3: error - unable to connect`, "iperf3 output", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := parseIperf([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(r) {
				t.Errorf("unexpected result %+v", r)
			}
		})
	}
}

func TestParseSystemStat(t *testing.T) {
	const stat = "cpu  100 5 50 800 10 3 30 2 7 1\ncpu0 50 2 25 400 5 1 15 1 0 0\nintr 1 2 3\n"
	soft, total, err := parseSystemStat(stat)
	if err != nil || soft != 30 || total != 100+5+50+800+10+3+30+2 {
		t.Errorf("parseSystemStat = %d, %d, %v; want 30, 1000 (guest excluded)", soft, total, err)
	}
	if _, _, err := parseSystemStat("cpu0 1 2 3 4 5 6 7 8\n"); err == nil {
		t.Error("no aggregate cpu line: want error")
	}
	if _, _, err := parseSystemStat("cpu 18446744073709551615 1 0 0 0 0 0 0\n"); err == nil {
		t.Error("overflowing sum: want error")
	}
	if _, _, err := parseSystemStat("cpu 1 2 x 4 5 6 7 8\n"); err == nil {
		t.Error("bad number: want error")
	}
}

func TestCPUUse(t *testing.T) {
	a := cpuSnapshot{procTicks: 1000, softirq: 500}
	b := cpuSnapshot{at: a.at.Add(2e9), procTicks: 1150, softirq: 600}
	proc, soft := cpuUse(a, b)
	// 150 ticks of 1/100 s in 2 s = 75% of one CPU; 100 ticks = 50%.
	if math.Abs(proc-75) > 1e-9 || math.Abs(soft-50) > 1e-9 {
		t.Errorf("cpuUse = %v, %v; want 75, 50", proc, soft)
	}
}

func TestParseTxPackets(t *testing.T) {
	const out = `[{"ifindex":3,"ifname":"g1","stats64":{"rx":{"bytes":10,"packets":2},"tx":{"bytes":640,"packets":10}}}]`
	if n, err := parseTxPackets([]byte(out)); err != nil || n != 10 {
		t.Errorf("parseTxPackets = %d, %v; want 10", n, err)
	}
	if _, err := parseTxPackets([]byte(`[]`)); err == nil {
		t.Error("no interface: want error")
	}
	if _, err := parseTxPackets([]byte(`not json`)); err == nil {
		t.Error("bad json: want error")
	}
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		in   []float64
		want stat
		ok   bool
	}{
		{nil, stat{}, false},
		{[]float64{3}, stat{3, 3, 3}, true},
		{[]float64{5, 1, 3}, stat{3, 1, 5}, true},
		{[]float64{4, 1, 2, 10}, stat{3, 1, 10}, true},
	}
	for _, tt := range tests {
		in := append([]float64(nil), tt.in...)
		got, ok := summarize(tt.in)
		if ok != tt.ok || got != tt.want {
			t.Errorf("summarize(%v) = %+v, %v; want %+v, %v", in, got, ok, tt.want, tt.ok)
		}
		for i := range in {
			if in[i] != tt.in[i] {
				t.Errorf("summarize reordered its input: %v", tt.in)
			}
		}
	}
}

func pct(x float64) *float64 { return &x }

// testReport has kernel-route and edgegate for two cases, haproxy without UDP and a failed run.
func testReport() *report {
	return &report{
		Repeats: 2, DurationSeconds: 1, CPUs: 2, Kernel: "6.18", GoVersion: "go1.26",
		Targets: []targetInfo{
			{Name: targetRoute}, {Name: targetHAProxy}, {Name: targetEdge},
			{Name: targetEdgeNoOffload, Skipped: "edgegate binary not buildable: x"},
		},
		Cases: []caseInfo{{Name: "tcp1-fwd", Unit: "Gbit/s"}, {Name: "udp64", Unit: "kpps"}},
		Results: []*result{
			{Target: targetRoute, Case: "tcp1-fwd", Samples: []sample{{Value: 10, SoftirqPct: 50}, {Value: 20, SoftirqPct: 70}}},
			{Target: targetRoute, Case: "udp64", Samples: []sample{{Value: 100, SentKpps: 200, ForwardedKpps: 150}}},
			{Target: targetHAProxy, Case: "tcp1-fwd", Samples: []sample{{Value: 5, GatewayCPUPct: pct(90)}}},
			{Target: targetEdge, Case: "tcp1-fwd", Samples: []sample{{Value: 7.5, GatewayCPUPct: pct(80)}, {Value: 7.5, GatewayCPUPct: pct(100)}}},
			{Target: targetEdge, Case: "udp64", Errors: []string{"iperf3: boom"}},
		},
	}
}

func TestReportFinishRatios(t *testing.T) {
	r := testReport()
	r.finish()
	edge := r.result(targetEdge, "tcp1-fwd")
	if edge.Value.Median != 7.5 || edge.GatewayCPUPct.Median != 90 {
		t.Errorf("edgegate tcp1-fwd stats %+v cpu %+v", edge.Value, edge.GatewayCPUPct)
	}
	want := map[string]float64{targetRoute: 0.5, targetHAProxy: 1.5}
	if len(edge.Ratios) != len(want) || edge.Ratios[targetRoute] != 0.5 || edge.Ratios[targetHAProxy] != 1.5 {
		t.Errorf("ratios = %v, want %v", edge.Ratios, want)
	}
	if route := r.result(targetRoute, "tcp1-fwd"); route.Ratios[targetRoute] != 0 || route.Ratios[targetHAProxy] != 3 {
		t.Errorf("a baseline is compared to the others but not itself: %v", route.Ratios)
	}
	if u := r.result(targetRoute, "udp64"); u.SentKpps.Median != 200 || u.ForwardedKpps.Median != 150 {
		t.Errorf("udp stats %+v %+v", u.SentKpps, u.ForwardedKpps)
	}
	if failed := r.result(targetEdge, "udp64"); failed.Value != nil || failed.Ratios != nil {
		t.Errorf("failed result got stats %+v ratios %v", failed.Value, failed.Ratios)
	}
	// JSON round trip keeps the computed fields.
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back report
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if got := back.result(targetEdge, "tcp1-fwd"); got == nil || got.Ratios[targetRoute] != 0.5 {
		t.Errorf("JSON lost ratios: %s", js)
	}
}

func TestReportMarkdown(t *testing.T) {
	r := testReport()
	r.finish()
	md := r.markdown()
	for _, want := range []string{
		"| case | unit | kernel-route | haproxy | edgegate |",
		"| tcp1-fwd | Gbit/s | 15.0 (10.0–20.0) | 5.00 (5.00–5.00) | 7.50 (7.50–7.50) |",
		"| udp64 | kpps | 100 (100–100) | n/a | failed |",
		"| tcp1-fwd | edgegate | 0.50 | – | 1.50 | 90% | 0% |",
		"| tcp1-fwd | kernel-route | – | – | 3.00 | – (kernel) | 60% |",
		"| kernel-route | 200 | 150 | 100 |",
		"- edgegate-nooffload skipped: edgegate binary not buildable: x",
		"- edgegate udp64: 1 failed run(s), first: iperf3: boom",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestReportWrite(t *testing.T) {
	r := testReport()
	r.finish()
	dir := t.TempDir()
	if err := r.write(dir); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "results.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() < 500 || b.Dy() < 200 {
		t.Errorf("chart is %v, want a readable size", b)
	}
	js, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil || !json.Valid(js) {
		t.Errorf("results.json invalid: %v", err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	if err != nil || !bytes.HasPrefix(md, []byte("# edgegate bench results")) {
		t.Errorf("results.md: %v %.40q", err, md)
	}

	if err := (&report{}).write(t.TempDir()); err == nil {
		t.Error("a report without results wrote a chart")
	}
}

func TestSelect(t *testing.T) {
	if m, err := selectTargets(""); err != nil || len(m) != 5 {
		t.Errorf("selectTargets(\"\") = %v, %v", m, err)
	}
	if m, err := selectTargets("haproxy, kernel-nat"); err != nil || len(m) != 2 || !m[targetHAProxy] || !m[targetNAT] {
		t.Errorf("selectTargets = %v, %v", m, err)
	}
	if _, err := selectTargets("nginx"); err == nil {
		t.Error("unknown target accepted")
	}
	cs, err := selectCases("connrate,tcp1-fwd")
	if err != nil || len(cs) != 2 || cs[0].name != "tcp1-fwd" || cs[1].name != "connrate" {
		t.Errorf("selectCases kept %d cases (%v), want canonical order", len(cs), err)
	}
	if _, err := selectCases("tcp9"); err == nil {
		t.Error("unknown case accepted")
	}
}

func TestPlannedRuns(t *testing.T) {
	targets := allTargets("")
	cases := allCases()
	// 5 targets x 6 cases, minus UDP for HAProxy, minus the two skipped edgegate targets.
	skipped := map[string]string{targetEdge: "x", targetEdgeNoOffload: "x"}
	if got, want := plannedRuns(targets, skipped, cases, 3), (6+6+5)*3; got != want {
		t.Errorf("plannedRuns = %d, want %d", got, want)
	}
}

func TestRunFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-repeats", "0"},
		{"-duration", "100ms"},
		{"-targets", "nginx"},
		{"-cases", "bogus"},
		{"-nosuchflag"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("run(%v) = %d, want 2 (stderr %q)", args, code, errb.String())
		}
	}
}

// TestEdgegateConfigValid keeps the generated config inside the YAML contract, for both modes.
func TestEdgegateConfigValid(t *testing.T) {
	for _, offload := range []bool{true, false} {
		c, err := config.Parse([]byte(edgegateConfig(offload)), "bench.yaml")
		if err != nil {
			t.Fatalf("offload %v: %v", offload, err)
		}
		if c.TUN.Offload != offload || !c.TUN.ManageRoutes {
			t.Errorf("tun = %+v", c.TUN)
		}
		if len(c.Services) != 1 || len(c.Services[0].Ports) != 3 ||
			c.Services[0].Addresses[0] != netip.MustParseAddr(vipAddr) ||
			c.Services[0].Backends[0].Address != netip.MustParseAddr(serverAddr) {
			t.Errorf("services = %+v", c.Services)
		}
		if len(c.NAT.MasqueradeAddresses) != 1 || c.NAT.MasqueradeAddresses[0] != netip.MustParseAddr(masqAddr) {
			t.Errorf("nat = %+v", c.NAT)
		}
	}
}
