package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// flowJSON is the part of an /conntrack row the tests read.
type flowJSON struct {
	Protocol string
	State    string
	Service  string
	Backend  string
	Original struct {
		Src, Dst     string
		Sport, Dport int
	}
}

func (tp *topo) flows(t *testing.T, query string) []flowJSON {
	t.Helper()
	var fs []flowJSON
	if err := json.Unmarshal([]byte(tp.adminGet(t, "/conntrack?"+query)), &fs); err != nil {
		t.Fatalf("/conntrack?%s: %v", query, err)
	}
	return fs
}

// waitReady waits for /readyz: the start is complete, privilege drop included.
func (tp *topo) waitReady(t *testing.T) {
	t.Helper()
	waitFor(t, 5*time.Second, "/readyz 200", func() bool {
		code, _, err := tp.adminDo(http.MethodGet, "/readyz")
		return err == nil && code == http.StatusOK
	})
}

func names(idx []int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, backendNames[i])
	}
	return out
}

// TestOpsReload: an iperf3 TCP transfer runs for 20 s while the configuration is reloaded ten
// times (backends added and removed, including the one carrying the transfer, a service added
// and removed, one bad file). The transfer survives without a reset, new connections follow each
// new configuration, the bad file changes nothing and is reported with its line.
func TestOpsReload(t *testing.T) {
	tp := newTopo(t)
	for i := range tp.b {
		tp.serveBackend(t, i)
	}
	tp.startIperfServers(t)
	web := func(b ...int) svcSpec { return svcSpec{name: "web", vip: "198.18.200.10", backends: b} }
	api := func(b ...int) svcSpec { return svcSpec{name: "api", vip: "198.18.200.20", backends: b} }
	// iperf3 needs its control and data connections on one server: client_ip affinity.
	bulk := func(b ...int) svcSpec {
		return svcSpec{name: "bulk", vip: "198.18.200.30", backends: b, extra: "    session_affinity: client_ip\n"}
	}
	path := tp.writeConfig("edgegate.yaml", opsConfig("", web(0, 1), bulk(0, 1, 2)))
	tp.startEdgegate(path)
	tp.waitReady(t)

	iperf, err := tp.c1.Start(context.Background(), "iperf3", "-c", "198.18.200.30", "-p", "5201", "-t", "20", "-J")
	must(t, err)
	var carrier string
	waitFor(t, 5*time.Second, "iperf3 flows established", func() bool {
		fs := tp.flows(t, "port=5201&state=established&service=bulk")
		if len(fs) < 2 { // control and data connection
			return false
		}
		carrier = fs[0].Backend
		return true
	})
	x := slices.Index([]string{"198.19.1.2", "198.19.2.2", "198.19.3.2"}, carrier)
	if x < 0 {
		t.Fatalf("iperf3 flow backend %q", carrier)
	}
	others := []int{}
	for i := range 3 {
		if i != x {
			others = append(others, i)
		}
	}
	type step struct {
		svcs []svcSpec
		bad  bool
	}
	steps := []step{
		{svcs: []svcSpec{web(0, 1, 2), bulk(0, 1, 2)}},
		{svcs: []svcSpec{web(0, 1, 2), bulk(others...)}}, // the iperf3 backend leaves: its TCP flows drain
		{svcs: []svcSpec{web(0, 1, 2), bulk(others...), api(2)}},
		{bad: true},
		{svcs: []svcSpec{web(0, 1, 2), bulk(others...), api(0, 2)}},
		{svcs: []svcSpec{web(1), bulk(others...), api(0, 2)}},
		{svcs: []svcSpec{web(0, 1, 2), bulk(0, 1, 2), api(0, 2)}},
		{svcs: []svcSpec{web(0, 1, 2), bulk(0, 1, 2)}},
		{svcs: []svcSpec{web(0, 1), bulk(others...)}},
		{svcs: []svcSpec{web(0, 1, 2), bulk(others...), api(1)}},
	}
	c := nsClient(tp.c1, time.Second)
	running := steps[0].svcs[:0:0]
	running = append(running, web(0, 1), bulk(0, 1, 2))
	for i, st := range steps {
		if st.bad {
			// A typo'd address: the whole file is refused, the running configuration stays.
			tp.reload(t, path, strings.Replace(opsConfig("", running...), "198.19.1.2", "198.19.1.999", 1))
		} else {
			tp.reload(t, path, opsConfig("", st.svcs...))
			running = st.svcs
		}
		want := map[string][]int{}
		for _, s := range running {
			want[s.vip] = s.backends
		}
		for _, vip := range []string{"198.18.200.10", "198.18.200.20"} {
			bs, ok := want[vip]
			if !ok {
				if body, err := get(c, "http://"+vip+"/"); err == nil {
					t.Errorf("step %d: removed service %s still answers %q", i+1, vip, body)
				}
				continue
			}
			n := 6
			got := answers(c, "http://"+vip+"/", n)
			exp := map[string]int{}
			for _, name := range names(bs) {
				exp[name] = n / len(bs)
			}
			if !maps.Equal(got, exp) {
				t.Errorf("step %d (bad=%v): %s answered %v, want %v", i+1, st.bad, vip, got, exp)
			}
		}
		if i == 1 {
			if fs := tp.flows(t, "port=5201&backend="+carrier); len(fs) == 0 {
				t.Errorf("after removing %s its iperf3 flows are gone (want them drained, not cut)", carrier)
			}
		}
		time.Sleep(500 * time.Millisecond) // spread the reloads over the transfer
	}

	select {
	case <-tp.c1.Exited(iperf):
	case <-time.After(30 * time.Second):
		t.Fatal("iperf3 did not finish")
	}
	out := tp.c1.Output(iperf)
	if err := tp.c1.Wait(iperf); err != nil {
		t.Fatalf("iperf3 failed across reloads: %v\n%s", err, out)
	}
	var res struct {
		Error string `json:"error"`
		End   struct {
			SumSent struct {
				Seconds     float64 `json:"seconds"`
				Bytes       float64 `json:"bytes"`
				Retransmits int     `json:"retransmits"`
				BPS         float64 `json:"bits_per_second"`
			} `json:"sum_sent"`
			SumReceived struct {
				Bytes float64 `json:"bytes"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &res); err != nil {
		t.Fatalf("iperf3 JSON: %v\n%s", err, out)
	}
	if res.Error != "" || res.End.SumSent.Seconds < 19 || res.End.SumReceived.Bytes == 0 {
		t.Fatalf("iperf3 did not run its 20 s cleanly: error %q, %.1f s, %.0f bytes received", res.Error, res.End.SumSent.Seconds, res.End.SumReceived.Bytes)
	}
	t.Logf("iperf3 across 10 reloads: %.2f Gbit/s for %.1f s, %d retransmits, backend %s", res.End.SumSent.BPS/1e9, res.End.SumSent.Seconds, res.End.SumSent.Retransmits, carrier)

	m := tp.scrape(t)
	if ok, bad := m.get("edgegate_config_reloads_total", "result=success"), m.get("edgegate_config_reloads_total", "result=failure"); ok != 9 || bad != 1 {
		t.Errorf("reload counters: success %v failure %v, want 9 and 1", ok, bad)
	}
	if m.get("edgegate_config_last_reload_successful") != 1 || m.get("edgegate_config_last_reload_success_timestamp_seconds") < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last reload gauges: %v %v", m.get("edgegate_config_last_reload_successful"), m.get("edgegate_config_last_reload_success_timestamp_seconds"))
	}
	if !regexp.MustCompile(`edgegate\.yaml:\d+(:\d+)?: `).MatchString(tp.egLog.String()) {
		t.Errorf("the bad file was not reported with file:line:\n%s", tp.egLog.String())
	}
}

// TestOpsDrainTimeout: a backend removed by a reload keeps its established TCP connection
// until conntrack.drain_timeout, then the flow is deleted.
func TestOpsDrainTimeout(t *testing.T) {
	tp := newTopo(t)
	for i := range tp.b {
		tp.serveBackend(t, i)
	}
	path := tp.writeConfig("edgegate.yaml", opsConfig("{drain_timeout: 2s}", svcSpec{name: "web", vip: "198.18.200.10", backends: []int{0, 1}}))
	tp.startEdgegate(path)
	tp.waitReady(t)
	var conn net.Conn
	must(t, tp.c1.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", "198.18.200.10:80", 2*time.Second)
		return
	}))
	defer conn.Close()
	ask := func() (string, error) {
		conn.SetDeadline(time.Now().Add(time.Second))
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: vip\r\n\r\n"); err != nil {
			return "", err
		}
		buf := make([]byte, 512)
		n, err := conn.Read(buf)
		return string(buf[:n]), err
	}
	first, err := ask()
	must(t, err)
	name := first[len(first)-2:]
	keep := map[string]int{"b1": 1, "b2": 0}[name]
	// Taken before the reload: the drain timer starts during it, and the time the test takes to
	// see the reload counted (polling the admin socket under load) must not shorten the drain seen.
	removed := time.Now()
	tp.reload(t, path, opsConfig("{drain_timeout: 2s}", svcSpec{name: "web", vip: "198.18.200.10", backends: []int{keep}}))
	if ans, err := ask(); err != nil || !strings.HasSuffix(ans, name) {
		t.Fatalf("connection to the removed backend %s right after the reload: %q, %v", name, ans, err)
	}
	backend := fmt.Sprintf("198.19.%c.2", name[1])
	waitFor(t, 5*time.Second, "the drained flow deleted", func() bool { return len(tp.flows(t, "backend="+backend)) == 0 })
	if el := time.Since(removed); el < 2*time.Second-100*time.Millisecond {
		t.Errorf("flow deleted %v after the reload, before drain_timeout", el)
	}
	if ans, err := ask(); err == nil {
		t.Errorf("connection still served after the drain timeout: %q", ans)
	}
	if m := tp.scrape(t); m.get("edgegate_conntrack_flows_removed_total", "cause=deleted") < 1 {
		t.Error("drain deletion not counted")
	}
}

// TestOpsReloadRollback: a reload is one transaction across L4 and L7. The new file adds a
// service (L4: rules, routes) and an ingress whose listener address is taken, so the L7 step
// fails after the L4 one succeeded: the L4 change is rolled back (the new service does not
// answer, the running one still does), the failure is counted, and the same file reloads once
// the address is free.
func TestOpsReloadRollback(t *testing.T) {
	tp := newTopo(t)
	for i := range tp.b {
		tp.serveBackend(t, i)
	}
	web := svcSpec{name: "web", vip: "198.18.200.10", backends: []int{0, 1}}
	api := svcSpec{name: "api", vip: "198.18.200.20", backends: []int{2}}
	path := tp.writeConfig("edgegate.yaml", opsConfig("", web))
	tp.startEdgegate(path)
	tp.waitReady(t)

	const taken = "198.18.1.1:9000"
	var ln net.Listener
	must(t, tp.gw.Do(func() (err error) { ln, err = net.Listen("tcp", taken); return }))
	next := opsConfig("", web, api) + `ingress:
  listeners: [{name: main, address: "` + taken + `"}]
  routes: [{name: r, rules: [{backends: [{service: web, port: 80}]}]}]
`
	failures := tp.scrape(t).get("edgegate_config_reloads_total", "result=failure")
	tp.reload(t, path, next)
	m := tp.scrape(t)
	if m.get("edgegate_config_reloads_total", "result=failure") != failures+1 || m.get("edgegate_config_last_reload_successful") != 0 {
		t.Fatalf("the reload with a taken ingress address was not counted as failed:\n%s", tp.egLog.String())
	}
	c := nsClient(tp.c1, time.Second)
	if body, err := get(c, "http://198.18.200.20/"); err == nil {
		t.Errorf("the failed reload's service answers %q: its L4 part was not rolled back", body)
	}
	if got := answers(c, "http://198.18.200.10/", 4); !maps.Equal(got, map[string]int{backendNames[0]: 2, backendNames[1]: 2}) {
		t.Errorf("the running service answered %v after the failed reload", got)
	}

	ln.Close()
	tp.reload(t, path, next)
	if m := tp.scrape(t); m.get("edgegate_config_last_reload_successful") != 1 {
		t.Fatalf("the same file with the address free did not reload:\n%s", tp.egLog.String())
	}
	if got := answers(c, "http://198.18.200.20/", 2); got[backendNames[2]] != 2 {
		t.Errorf("after the successful reload the new service answered %v", got)
	}
}
