package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSYNProxy runs real clients through connections the SYN proxy set up (tun.syn_proxy: on):
// curl, HTTP keep-alive, large downloads with SACK while 1 % of the backends' packets are lost,
// path MTU discovery across the 1280-byte hop (IPv4 and IPv6), and iperf3, whose rate is
// compared with unproxied connections of the same run (the mode reloaded to off and back).
func TestSYNProxy(t *testing.T) {
	tp := newTopo(t)
	tp.serveBackends()
	cfgOn := strings.Replace(fmt.Sprintf(mainConfig, 1, true), "offload: true}", "offload: true, syn_proxy: on}", 1)
	cfgOn = strings.Replace(cfgOn, "{name: iperf, port: 5201}", "{name: iperf, port: 5201}\n      - {name: iperf2, port: 5202}", 1)
	path := tp.writeConfig("edgegate.yaml", cfgOn)
	tp.startEdgegate(path)
	tp.waitReady(t)
	m0 := tp.scrape(t)
	t.Run("Curl", func(t *testing.T) {
		for _, url := range []string{"http://198.18.200.10/", "http://[2001:db8:200::10]/", "http://198.18.200.11/"} {
			if out := curl(t, tp.c1, "-g", url); !regexp.MustCompile(`^b[123]$`).MatchString(out) {
				t.Errorf("%s: answer %q", url, out)
			}
		}
	})
	t.Run("KeepAlive", tp.testProxiedKeepAlive)
	t.Run("PMTU", tp.testPMTU)
	t.Run("SACKUnderLoss", tp.testProxiedSACK)
	m1 := tp.scrape(t)
	d := func(name string, l ...string) float64 { return m1.get(name, l...) - m0.get(name, l...) }
	t.Logf("SYN proxy counters: cookies %.0f, valid cookie ACKs %.0f, invalid %.0f, SYN resends %.0f, spliced flows %.0f; segments out of window %.0f",
		d("edgegate_synproxy_syn_cookies_total"), d("edgegate_synproxy_cookie_acks_total", "result=valid"),
		d("edgegate_synproxy_cookie_acks_total", "result=invalid"), d("edgegate_synproxy_syn_resends_total"), d("edgegate_synproxy_flows_total"),
		d("edgegate_conntrack_invalid_window_total"))
	// Window tracking sees the backend's sequence space both ways: nothing may look out of window.
	if n := d("edgegate_conntrack_invalid_window_total"); n != 0 {
		t.Errorf("%.0f segments of proxied flows judged out of window", n)
	}
	// 3 curl, 1 keep-alive, 2 PMTU and 2 SACK connections.
	if d("edgegate_synproxy_flows_total") < 8 || d("edgegate_synproxy_syn_cookies_total") < d("edgegate_synproxy_flows_total") {
		t.Errorf("not all 8 connections went through the proxy")
	}
	t.Run("Iperf3", func(t *testing.T) { tp.testProxiedIperf(t, path, cfgOn) })
}

// testProxiedKeepAlive: 20 requests over one proxied connection (one splice, 19 reuses).
func (tp *topo) testProxiedKeepAlive(t *testing.T) {
	before := tp.scrape(t).get("edgegate_synproxy_flows_total")
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := tp.c1.Do(func() (err error) {
			c, err = (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, network, addr)
			return
		})
		return c, err
	}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	reused := 0
	for i := range 20 {
		trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
			if ci.Reused {
				reused++
			}
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, "http://198.18.200.11/", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	spliced := tp.scrape(t).get("edgegate_synproxy_flows_total") - before
	if reused != 19 || spliced != 1 {
		t.Errorf("keep-alive: %d of 20 requests reused the connection, %v connections spliced; want 19 and 1", reused, spliced)
	}
}

// testProxiedSACK: 20 MB downloads while the gateway's forward path drops 1 % of the backends'
// segments at random (nft numgen; this kernel has no netem): the transfers complete, the
// backends recovered with SACK, and no SACK block reached them outside their sequence space.
func (tp *topo) testProxiedSACK(t *testing.T) {
	rules := `table inet eg_loss {
	chain loss {
		type filter hook forward priority 0; policy accept;
		iifname "gw-b*" tcp sport 8080 numgen random mod 100 < 1 counter drop
	}
}
`
	cmd := tp.gw.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft loss rule: %v %s", err, out)
	}
	defer tp.gw.Exec("nft", "delete", "table", "inet", "eg_loss")
	for _, b := range tp.b {
		b.Exec("nstat", "-n") // reset the history nstat diffs against
	}
	const size = 20 << 20
	for _, url := range []string{"http://198.18.200.10/big?n=" + strconv.Itoa(size), "http://[2001:db8:200::10]/big?n=" + strconv.Itoa(size)} {
		out := curl(t, tp.c1, "-g", "-o", "/dev/null", "-w", "%{size_download}", url)
		if strings.TrimSpace(out) != strconv.Itoa(size) {
			t.Fatalf("download %s under loss: %s bytes, want %d", url, out, size)
		}
	}
	loss, _ := tp.gw.Exec("nft", "list", "table", "inet", "eg_loss")
	var recovered, discarded int
	for _, b := range tp.b {
		out, _ := b.Exec("nstat", "-az", "TcpExtTCPSackRecovery", "TcpExtTCPSACKDiscard", "TcpExtTCPDSACKIgnoredOld")
		recovered += nstatValue(out, "TcpExtTCPSackRecovery")
		discarded += nstatValue(out, "TcpExtTCPSACKDiscard") + nstatValue(out, "TcpExtTCPDSACKIgnoredOld")
	}
	if !regexp.MustCompile(`counter packets [1-9]`).MatchString(loss) {
		t.Errorf("the loss rule dropped nothing:\n%s", loss)
	}
	t.Logf("loss rule: %s; backends: %d SACK recoveries, %d SACK blocks discarded", regexp.MustCompile(`counter packets \d+`).FindString(loss), recovered, discarded)
	if recovered == 0 {
		t.Error("no SACK recovery at the backends: the loss path was not exercised")
	}
	if discarded != 0 {
		t.Errorf("backends discarded %d SACK blocks: blocks reach them outside their sequence space", discarded)
	}
}

func nstatValue(out, name string) int {
	m := regexp.MustCompile(name + `\s+(\d+)`).FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// testProxiedIperf compares iperf3 through proxied and unproxied connections running at the same
// time, so both see the same machine: one flow starts, the mode is reloaded, the other starts
// (two iperf3 servers on the same backend), and their rates are compared second by second while
// they overlap. Two rounds, proxied first then unproxied first, cancel the advantage of either
// start; the result is the geometric mean of the two rounds' median per-second ratios.
func (tp *topo) testProxiedIperf(t *testing.T, path, cfgOn string) {
	tp.startIperfServers(t)
	for _, b := range tp.b {
		_, err := b.Start(context.Background(), "iperf3", "-s", "-p", "5202")
		must(t, err)
	}
	cfgOff := strings.Replace(cfgOn, "syn_proxy: on", "syn_proxy: off", 1)
	first := tp.concurrentRatio(t, path, cfgOn, cfgOff, true)
	second := tp.concurrentRatio(t, path, cfgOff, cfgOn, false)
	r := math.Sqrt(first * second)
	t.Logf("proxied / unproxied rate: %.2f (proxied first), %.2f (unproxied first), geometric mean %.2f", first, second, r)
	if r < 0.9 {
		t.Errorf("the proxied flows carried %.0f %% of the unproxied ones' rate, want at least 90 %%", 100*r)
	}
}

// concurrentRatio starts an iperf3 flow under cfgA, reloads cfgB and starts a second one while
// the first runs, and returns the median over the overlapping seconds of proxied / unproxied
// (proxiedFirst says which of the two is the first flow).
func (tp *topo) concurrentRatio(t *testing.T, path, cfgA, cfgB string, proxiedFirst bool) float64 {
	const overlap = 10 // seconds
	tp.reload(t, path, cfgA)
	before := tp.scrape(t).get("edgegate_synproxy_flows_total")
	t0 := time.Now()
	a, err := tp.c1.Start(context.Background(), "iperf3", "-c", "198.18.200.11", "-p", "5201", "-t", strconv.Itoa(overlap+3), "-i", "1", "-J")
	must(t, err)
	waitFor(t, 5*time.Second, "the first iperf3 flow", func() bool {
		return len(tp.flows(t, "port=5201&state=established")) >= 2 // control and data
	})
	tp.reload(t, path, cfgB)
	t1 := time.Now()
	b, err := tp.c1.Start(context.Background(), "iperf3", "-c", "198.18.200.11", "-p", "5202", "-t", strconv.Itoa(overlap), "-i", "1", "-J")
	must(t, err)
	var rates [2][]float64 // first, second
	for i, cmd := range []*exec.Cmd{a, b} {
		select {
		case <-tp.c1.Exited(cmd):
		case <-time.After(30 * time.Second):
			t.Fatal("iperf3 did not finish")
		}
		out := tp.c1.Output(cmd)
		if err := tp.c1.Wait(cmd); err != nil {
			t.Fatalf("iperf3: %v\n%s", err, out)
		}
		rates[i] = iperfRates(t, out)
	}
	if n := tp.scrape(t).get("edgegate_synproxy_flows_total") - before; n != 2 {
		t.Fatalf("%v connections spliced, want one iperf3's 2 (control and data)", n)
	}
	// Second j of the second flow is second j+shift of the first.
	shift := int(math.Round(t1.Sub(t0).Seconds()))
	var ratios []float64
	for j := 1; j < len(rates[1]) && j+shift < len(rates[0]); j++ { // skip slow start
		r := rates[0][j+shift] / rates[1][j]
		if !proxiedFirst {
			r = 1 / r
		}
		ratios = append(ratios, r)
	}
	if len(ratios) < overlap/2 {
		t.Fatalf("only %d overlapping seconds: %v, %v", len(ratios), rates[0], rates[1])
	}
	r := slices.Sorted(slices.Values(ratios))[len(ratios)/2]
	t.Logf("concurrent iperf3 (Gbit/s per second, proxied first: %v) first %.2f, second %.2f (shifted by %d s); median proxied/unproxied %.2f", proxiedFirst, gbit(rates[0]), gbit(rates[1]), shift, r)
	return r
}

func gbit(bps []float64) []float64 {
	out := make([]float64, len(bps))
	for i, b := range bps {
		out[i] = math.Round(b/1e7) / 100
	}
	return out
}

// iperfRates returns the bits per second of each reporting interval of an iperf3 -J run.
func iperfRates(t *testing.T, out string) []float64 {
	t.Helper()
	var res struct {
		Intervals []struct {
			Sum struct {
				BPS float64 `json:"bits_per_second"`
			} `json:"sum"`
		} `json:"intervals"`
	}
	must(t, json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &res))
	var bps []float64
	for _, iv := range res.Intervals {
		bps = append(bps, iv.Sum.BPS)
	}
	return bps
}
