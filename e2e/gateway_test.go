package e2e

import (
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgegate/edgegate/internal/netns"
)

const mainConfig = `
tun: {name: edge0, mtu: 1500, queues: %d, offload: %v}
nat:
  masquerade_addresses: [198.18.250.1, "2001:db8:250::1"]
node_ports:
  addresses: [198.18.1.1]
services:
  - name: web
    addresses: [198.18.200.10, "2001:db8:200::10"]
    ports:
      - {name: http, protocol: tcp, port: 80, target_port: 8080, node_port: 30080}
      - {name: dns, protocol: udp, port: 53}
      - {name: partial, protocol: tcp, port: 81, target_port: 8081}
    scheduler: weighted_round_robin
    backends:
      - {address: 198.19.1.2, weight: 2}
      - {address: 198.19.2.2}
      - {address: 198.19.3.2}
      - {address: "2001:db8:19:1::2", weight: 2}
      - {address: "2001:db8:19:2::2"}
      - {address: "2001:db8:19:3::2"}
  - name: sticky
    addresses: [198.18.200.11]
    ports:
      - {name: http, port: 80, target_port: 8080}
      - {name: iperf, port: 5201}
      - {name: iperfu, protocol: udp, port: 5201}
    scheduler: round_robin
    session_affinity: client_ip
    backends: [{address: 198.19.1.2}, {address: 198.19.2.2}, {address: 198.19.3.2}]
  - name: direct
    addresses: [198.18.200.12]
    ports: [{name: http, port: 80, target_port: 8080}]
    source_nat: none
    backends: [{address: 198.19.1.2}, {address: 198.19.2.2}, {address: 198.19.3.2}]
egress:
  - name: pods
    sources: [198.18.64.0/18, "2001:db8:64::/48"]
    addresses: [203.0.113.10, 203.0.113.11, "2001:db8:113::10"]
conntrack: {max_entries: 65536}
admin: {listen: "127.0.0.1:9469", socket: "` + adminSocketVar + `"}
`

// TestGateway runs the end-to-end cases against one edgegate: the default TUN (offloads on, one
// queue per CPU and at least two, connection attempts steered to the last), and offloads off
// with a two-queue device (two workers sharing the flow table). One queue with offloads runs in
// TestOffloadChecksums and TestSYNProxy.
func TestGateway(t *testing.T) {
	for _, v := range []struct {
		offload bool
		queues  int // 0: the default
	}{{true, 0}, {false, 2}} {
		q := strconv.Itoa(v.queues)
		if v.queues == 0 {
			q = "default"
		}
		t.Run(fmt.Sprintf("offload=%v,queues=%s", v.offload, q), func(t *testing.T) {
			tp := newTopo(t)
			tp.serveBackends()
			cfg := fmt.Sprintf(mainConfig, v.queues, v.offload)
			if v.queues == 0 {
				cfg = strings.Replace(cfg, "queues: 0, ", "", 1)
			}
			tp.startEdgegate(tp.writeConfig("edgegate.yaml", cfg))
			t.Run("VIPSpread", tp.testVIPSpread)
			t.Run("UDPEcho", tp.testUDPEcho)
			t.Run("Ping", tp.testPing)
			t.Run("NodePort", tp.testNodePort)
			t.Run("Affinity", tp.testAffinity)
			t.Run("ClientIPPreserved", tp.testSourceNATNone)
			t.Run("Hairpin", tp.testHairpin)
			t.Run("Egress", tp.testEgress)
			t.Run("PMTU", tp.testPMTU)
			t.Run("RefusingBackend", tp.testRefusingBackend)
			t.Run("Iperf3", tp.testIperf3)
			t.Run("SIGTERM", tp.testSIGTERM)
		})
	}
}

// Case 1: 300 requests reach all three backends with weighted round robin shares 2:1:1, over
// IPv4 and IPv6.
func (tp *topo) testVIPSpread(t *testing.T) {
	for _, url := range []string{"http://198.18.200.10/", "http://[2001:db8:200::10]/"} {
		got := spread(t, tp.c1, url, 300)
		want := map[string]int{"b1": 150, "b2": 75, "b3": 75}
		for name, n := range want {
			if d := got[name] - n; d < -6 || d > 6 {
				t.Errorf("%s: backend %s answered %d of 300, want %d±6 (all: %v)", url, name, got[name], n, got)
			}
		}
		if len(got) != 3 {
			t.Errorf("%s: answers %v, want exactly b1, b2, b3", url, got)
		}
	}
}

// Case 3: 50 concurrent UDP clients each get their own answer through the VIP.
func (tp *topo) testUDPEcho(t *testing.T) {
	conns := make([]net.Conn, 50)
	for i := range conns {
		var err error
		must(t, tp.c1.Do(func() error {
			conns[i], err = net.Dial("udp", "198.18.200.10:53")
			return err
		}))
		defer conns[i].Close()
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := fmt.Sprintf("query-%d", i)
			buf := make([]byte, 256)
			// UDP may lose a datagram: retry a bounded number of times.
			for try := 0; try < 5; try++ {
				c.Write([]byte(msg))
				c.SetReadDeadline(time.Now().Add(time.Second))
				n, err := c.Read(buf)
				if err != nil {
					continue
				}
				ans := string(buf[:n])
				if !strings.HasSuffix(ans, " "+msg) || !regexp.MustCompile(`^b[123] `).MatchString(ans) {
					errs <- fmt.Errorf("client %d: answer %q does not match %q", i, ans, msg)
				}
				return
			}
			errs <- fmt.Errorf("client %d: no answer", i)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Case 4: the gateway answers echo requests to service addresses itself.
func (tp *topo) testPing(t *testing.T) {
	for _, a := range []string{"198.18.200.10", "2001:db8:200::10"} {
		out, err := tp.c1.Exec("ping", "-c", "3", "-i", "0.2", "-W", "2", a)
		if err != nil {
			t.Fatalf("ping %s: %v", a, err)
		}
		if !strings.Contains(out, "3 received") {
			t.Errorf("ping %s: %s", a, out)
		}
	}
}

// Case 5: the node address + node_port reaches the service.
func (tp *topo) testNodePort(t *testing.T) {
	got := spread(t, tp.c1, "http://198.18.1.1:30080/", 8)
	total := got["b1"] + got["b2"] + got["b3"]
	if total != 8 || len(got) < 2 {
		t.Fatalf("node port answers %v, want 8 answers from several backends", got)
	}
}

// Case 6: with client_ip affinity all connections of a client land on one backend; round robin
// (web) spreads them.
func (tp *topo) testAffinity(t *testing.T) {
	got := spread(t, tp.c1, "http://198.18.200.11/", 20)
	if len(got) != 1 {
		t.Errorf("sticky service answered from %v, want one backend", got)
	}
	for _, n := range got {
		if n != 20 {
			t.Errorf("sticky service: %v, want 20 answers from one backend", got)
		}
	}
	if other := spread(t, tp.c1, "http://198.18.200.10/", 8); len(other) < 2 {
		t.Errorf("round robin service answered only from %v", other)
	}
}

// Case 7: source_nat none: the backend sees the client's own address.
func (tp *topo) testSourceNATNone(t *testing.T) {
	for i := 0; i < 3; i++ {
		if got := strings.TrimSpace(curl(t, tp.c1, "http://198.18.200.12/remote")); got != "198.18.1.2" {
			t.Fatalf("backend saw %q, want the client address 198.18.1.2", got)
		}
	}
	// With masquerade the backend sees the masquerade address instead.
	if got := strings.TrimSpace(curl(t, tp.c1, "http://198.18.200.10/remote")); got != "198.18.250.1" {
		t.Fatalf("masqueraded flow: backend saw %q, want 198.18.250.1", got)
	}
}

// Hairpin: a backend reaching a service it belongs to is served, also when it is picked itself
// and even for source_nat: none (such a flow is masqueraded, or the backend would answer itself).
func (tp *topo) testHairpin(t *testing.T) {
	self := 0
	for i := 0; i < 9; i++ {
		got := strings.TrimSpace(curl(t, tp.b[0], "http://198.18.200.12/remote"))
		switch got {
		case "198.18.250.1":
			self++ // answered by b1 itself: masqueraded
		case "198.19.1.2":
			// answered by another backend, which sees b1's own address (client IP preserved)
		default:
			t.Fatalf("hairpin request answered with remote %q", got)
		}
	}
	if self == 0 || self == 9 {
		t.Errorf("round robin over 3 backends: b1 answered its own request %d of 9 times, want some", self)
	}
	// A masqueraded service from a backend: every request answered.
	if got := spread(t, tp.b[2], "http://198.18.200.10/", 6); got["b1"]+got["b2"]+got["b3"] != 6 {
		t.Errorf("hairpin to a masqueraded service: answers %v, want 6", got)
	}
}

// Case 8: 200 parallel TCP connections from two inside hosts to the internet host: all succeed, the
// server sees only pool addresses and never one (address, port) twice at once.
func (tp *topo) testEgress(t *testing.T) {
	var ln net.Listener
	must(t, tp.inet.Do(func() (err error) { ln, err = net.Listen("tcp", ":9000"); return }))
	defer ln.Close()
	var mu sync.Mutex
	seen := map[string]int{} // remote address -> open connections
	var bad []string
	dup := 0
	accepted := 0
	release := make(chan struct{})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ra := c.RemoteAddr().String()
			host, _, _ := net.SplitHostPort(ra)
			mu.Lock()
			accepted++
			if host != "203.0.113.10" && host != "203.0.113.11" {
				bad = append(bad, ra)
			}
			seen[ra]++
			if seen[ra] > 1 {
				dup++
			}
			mu.Unlock()
			go func() {
				defer c.Close()
				<-release
				c.Write([]byte("ok"))
			}()
		}
	}()
	const perHost = 100
	var conns []net.Conn
	for _, p := range tp.pods() {
		for i := 0; i < perHost; i++ {
			var c net.Conn
			must(t, p.Do(func() (err error) {
				d := net.Dialer{Timeout: 5 * time.Second}
				c, err = d.Dial("tcp", "198.51.100.100:9000")
				return
			}))
			conns = append(conns, c)
		}
	}
	waitFor(t, 10*time.Second, "all egress connections accepted", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return accepted == 2*perHost
	})
	close(release)
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 2)
		if _, err := c.Read(buf); err != nil || string(buf) != "ok" {
			t.Errorf("egress connection %v: read %q, %v", c.LocalAddr(), buf, err)
		}
		c.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("server saw non-pool sources: %v", bad)
	}
	if dup > 0 {
		t.Errorf("server saw %d duplicate (address, port) pairs at once", dup)
	}
	// ICMP echo through egress translates the identifier, IPv4 and IPv6.
	for _, dst := range []string{"198.51.100.100", "2001:db8:51::100"} {
		if out, err := tp.p1.Exec("ping", "-c", "2", "-i", "0.2", "-W", "2", dst); err != nil || !strings.Contains(out, "2 received") {
			t.Errorf("egress ping %s: %v %s", dst, err, out)
		}
	}
	// IPv6 egress: the server sees the IPv6 pool address.
	var ln6 net.Listener
	must(t, tp.inet.Do(func() (err error) { ln6, err = net.Listen("tcp", "[2001:db8:51::100]:9001"); return }))
	defer ln6.Close()
	seen6 := make(chan string, 1)
	go func() {
		c, err := ln6.Accept()
		if err != nil {
			return
		}
		seen6 <- c.RemoteAddr().String()
		c.Close()
	}()
	var c6 net.Conn
	must(t, tp.p2.Do(func() (err error) {
		c6, err = net.DialTimeout("tcp", "[2001:db8:51::100]:9001", 5*time.Second)
		return
	}))
	c6.Close()
	select {
	case ra := <-seen6:
		if host, _, _ := net.SplitHostPort(ra); host != "2001:db8:113::10" {
			t.Errorf("IPv6 egress: server saw %s, want the pool address 2001:db8:113::10", ra)
		}
	case <-time.After(5 * time.Second):
		t.Error("IPv6 egress connection not accepted")
	}
}

func (tp *topo) pods() [2]*netns.NS { return [2]*netns.NS{tp.p1, tp.p2} }

// Case 9: a large transfer from a backend to a client behind a 1280-byte hop completes because the
// router's "fragmentation needed" / "packet too big" is translated back to the backend.
func (tp *topo) testPMTU(t *testing.T) {
	for _, url := range []string{"http://198.18.200.10/big?n=2000000", "http://[2001:db8:200::10]/big?n=2000000"} {
		out, err := tp.c2.Exec("curl", "-sS", "--max-time", "15", "-g", "-o", "/dev/null", "-w", "%{size_download}", url)
		if err != nil {
			t.Fatalf("download %s across the small-MTU hop: %v", url, err)
		}
		if strings.TrimSpace(out) != "2000000" {
			t.Fatalf("download %s: got %s bytes, want 2000000", url, out)
		}
	}
	// The transfers needed the router's errors: it sent "fragmentation needed" and "packet too
	// big" toward the service address, and the backends lowered their path MTU from them.
	out, err := tp.r.Exec("nstat", "-az", "IcmpOutDestUnreachs", "Icmp6OutPktTooBigs")
	if err != nil {
		t.Fatalf("nstat: %v", err)
	}
	for _, name := range []string{"IcmpOutDestUnreachs", "Icmp6OutPktTooBigs"} {
		m := regexp.MustCompile(name + `\s+(\d+)`).FindStringSubmatch(out)
		if m == nil || m[1] == "0" {
			t.Errorf("router sent no %s: the PMTU path was not exercised\n%s", name, out)
		}
	}
}

// Case 10: a backend without a listener refuses quickly (RST translated back), the others serve.
func (tp *topo) testRefusingBackend(t *testing.T) {
	refused, served := 0, 0
	for i := 0; i < 8; i++ {
		start := time.Now()
		out, err := tp.c1.Exec("curl", "-sS", "--max-time", "5", "http://198.18.200.10:81/")
		el := time.Since(start)
		switch {
		case err == nil && (out == "b1" || out == "b2"):
			served++
		case err != nil && strings.Contains(err.Error(), "exit status 7"): // curl: could not connect (refused)
			refused++
			if el > 2*time.Second {
				t.Errorf("refusal took %v", el)
			}
		default:
			t.Errorf("request %d: %q, %v", i, out, err)
		}
	}
	if refused == 0 || served == 0 {
		t.Errorf("refused %d, served %d: want both", refused, served)
	}
}

// Case 2: iperf3 TCP (one and four streams) and UDP through a VIP.
func (tp *topo) testIperf3(t *testing.T) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Fatalf("iperf3 not installed: %v", err)
	}
	tp.startIperfServers(t)
	for _, args := range [][]string{{"-t", "5"}, {"-t", "5", "-P", "4"}, {"-t", "5", "-R"}, {"-t", "3", "-u", "-b", "200M"}} {
		out, err := tp.c1.Exec(append([]string{"iperf3", "-c", "198.18.200.11", "-p", "5201", "-J"}, args...)...)
		if err != nil {
			t.Fatalf("iperf3 %v: %v\n%s", args, err, out)
		}
		bps := iperfBitsPerSecond(out)
		if bps <= 0 {
			t.Fatalf("iperf3 %v: no throughput in result", args)
		}
		t.Logf("iperf3 %v through the VIP: %.2f Gbit/s", args, bps/1e9)
	}
}

var bpsRE = regexp.MustCompile(`"sum_received":\s*\{[^}]*"bits_per_second":\s*([0-9.e+]+)`)
var bpsUDPRE = regexp.MustCompile(`"sum":\s*\{[^}]*"bits_per_second":\s*([0-9.e+]+)`)

func iperfBitsPerSecond(js string) float64 {
	m := bpsRE.FindStringSubmatch(js)
	if m == nil {
		m = bpsUDPRE.FindStringSubmatch(js)
	}
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// Case 12: SIGTERM: edgegate exits 0 and its routes, rules and TUN are gone.
func (tp *topo) testSIGTERM(t *testing.T) {
	tp.stopEdgegate(t)
	for _, args := range [][]string{{"ip", "route", "show", "proto", "201"}, {"ip", "-6", "route", "show", "proto", "201"},
		{"ip", "route", "show", "table", "4242"}, {"ip", "link", "show", "edge0"}} {
		out, _ := tp.gw.Exec(args...)
		if strings.TrimSpace(out) != "" && !strings.Contains(out, "does not exist") {
			t.Errorf("%v after exit: %s", args, out)
		}
	}
	rules, _ := tp.gw.Exec("ip", "rule")
	if strings.Contains(rules, "4242") || !strings.Contains(rules, "0:\tfrom all lookup local") {
		t.Errorf("policy rules after exit:\n%s", rules)
	}
}
