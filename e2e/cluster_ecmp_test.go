package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Three edgegate nodes with bgp and cluster sections behind the FRR router of cluster_bgp_test.go
// (BGP ECMP, BFD 100 ms x 3, 5-tuple hash). The nodes share one masquerade address; the backends
// reach it through the router (link r-be), whose route to it has the same next hops as the BGP
// route to the VIP: edgegate does not announce masquerade addresses yet, so the test copies the
// VIP's next hops onto that route every 2 ms (followMasq), as a router learning both would have.
// The backends' replies are thus spread by ECMP independently of the client's packets.
//
//	cli ── rtr ─┬─ n1 ─┐
//	       │    ├─ n2 ─┼─ be (198.19.0.2, .3; replies to 198.18.251.1 via rtr 198.18.30.1)
//	       │    └─ n3 ─┘
//	       └──────────── be 198.18.30.2

const (
	ecmpMasq   = "198.18.251.1"
	ecmpConns  = 300 // the long-lived connections
	ecmpRounds = 10  // requests per connection in each phase
)

// newECMPCluster builds the router, nodes and backends of the BGP cluster, adds the backends'
// link to the router, an HTTP server on :8090 answering "<backend> <client address:port>" and an
// iperf3 server, and writes each node's configuration.
func newECMPCluster(t *testing.T) *bgpCluster {
	c := newBGPCluster(t)
	must(t, netlinkLink(c))
	for _, addr := range []string{"198.19.0.2:8090", "198.19.0.3:8090"} {
		name, _, _ := net.SplitHostPort(addr)
		var ln net.Listener
		must(t, c.be.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return }))
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, name+" "+r.RemoteAddr)
		})}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
	_, err := c.be.Start(context.Background(), "iperf3", "-s", "-p", "5201", "-i", "0.2", "-J")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(c.dir, "cluster.key"), []byte("0123456789abcdef0123456789abcdef-test-key\n"), 0o600))
	for _, n := range c.nodes {
		n.cfg = filepath.Join(c.dir, fmt.Sprintf("n%d.yaml", n.i))
		must(t, os.WriteFile(n.cfg, []byte(ecmpNodeConfig(c, n.i)), 0o644))
	}
	return c
}

func netlinkLink(c *bgpCluster) error {
	if err := linkNS(c); err != nil {
		return err
	}
	return c.be.Route(ecmpMasq+"/32", "via", "198.18.30.1")
}

func linkNS(c *bgpCluster) error {
	if err := c.rtr.IP("link", "add", "r-be", "type", "veth", "peer", "name", "rtr", "netns", c.be.Path()); err != nil {
		return err
	}
	for _, step := range []error{
		c.rtr.Addr("r-be", "198.18.30.1/24"), c.be.Addr("rtr", "198.18.30.2/24"),
		c.rtr.IP("link", "set", "r-be", "up"), c.be.IP("link", "set", "rtr", "up"),
	} {
		if step != nil {
			return step
		}
	}
	return nil
}

func ecmpNodeConfig(c *bgpCluster, i int) string {
	var peers []string
	for j := 1; j <= 3; j++ {
		if j != i {
			peers = append(peers, fmt.Sprintf("198.18.2%d.2:4790", j))
		}
	}
	return fmt.Sprintf(`tun: {name: edge0}
nat: {masquerade_addresses: [%[5]s]}
admin: {listen: "127.0.0.1:9469", socket: %[6]s}
bgp:
  asn: %[2]d
  router_id: 198.18.2%[1]d.2
  withdraw_delay: %[4]s
  peers:
    - address: 198.18.2%[1]d.1
      asn: %[3]d
      hold_time: 9
      keepalive: 3
      bfd: {enabled: true, min_tx: 100ms, min_rx: 100ms, multiplier: 3}
cluster:
  hash_seed: 8311592947014733109
  node_index: %[7]d
  listen: 198.18.2%[1]d.2:4790
  peers: [%[8]s]
  key_file: %[9]s
services:
  - name: web
    addresses: [%[10]s]
    ports: [{name: http, port: 80, target_port: 8090}, {name: iperf, port: 5201}]
    scheduler: maglev
    backends: [{address: 198.19.0.2}, {address: 198.19.0.3}]
`, i, nodeASN, routerASN, withdrawDelay, ecmpMasq, filepath.Join(c.dir, fmt.Sprintf("n%d", i), "admin.sock"),
		i-1, strings.Join(peers, ", "), filepath.Join(c.dir, "cluster.key"), clusterVIP)
}

// followMasq keeps the router's route to the masquerade address on the VIP's next hops until
// stop is closed.
func followMasq(c *bgpCluster, stop <-chan struct{}) {
	dst := &net.IPNet{IP: net.ParseIP(ecmpMasq).To4(), Mask: net.CIDRMask(32, 32)}
	var last []string
	for {
		select {
		case <-stop:
			return
		case <-time.After(2 * time.Millisecond):
		}
		hops := c.nexthops(clusterVIP)
		if slices.Equal(hops, last) {
			continue
		}
		last = hops
		r := &netlink.Route{Dst: dst, Table: unix.RT_TABLE_MAIN}
		if len(hops) == 0 {
			c.routes.RouteDel(r)
			continue
		}
		for _, h := range hops {
			r.MultiPath = append(r.MultiPath, &netlink.NexthopInfo{Gw: net.ParseIP(h)})
		}
		if err := c.routes.RouteReplace(r); err != nil {
			c.t.Logf("masquerade route %v: %v", hops, err)
		}
	}
}

// flowNodes asks the router which node each held connection's packets go to now (its 5-tuple
// hash, `ip route get ... ipproto tcp sport dport`), in one batch.
func flowNodes(c *bgpCluster, held []*heldConn) []string {
	c.t.Helper()
	var b strings.Builder
	for _, h := range held {
		la := h.c.LocalAddr().(*net.TCPAddr)
		fmt.Fprintf(&b, "route get %s from %s iif r-cli ipproto tcp sport %d dport 80\n", clusterVIP, la.IP, la.Port)
	}
	f := filepath.Join(c.dir, "flows.batch")
	must(c.t, os.WriteFile(f, []byte(b.String()), 0o644))
	out, err := c.rtr.Exec("ip", "-batch", f)
	if err != nil {
		c.t.Fatalf("ip route get: %v\n%s", err, out)
	}
	var nodes []string
	for _, l := range strings.Split(out, "\n") {
		if _, after, ok := strings.Cut(l, " via "); ok {
			nodes = append(nodes, strings.Fields(after)[0])
		}
	}
	if len(nodes) != len(held) {
		c.t.Fatalf("ip route get: %d answers for %d flows:\n%s", len(nodes), len(held), out)
	}
	return nodes
}

func countNodes(nodes []string) map[string]int {
	m := map[string]int{}
	for _, n := range nodes {
		m[n]++
	}
	return m
}

func movedFlows(before, after []string) int {
	moved := 0
	for i := range before {
		if before[i] != after[i] {
			moved++
		}
	}
	return moved
}

// holdECMP opens n held connections in parallel; with ECMP on the replies a SYN-ACK may reach a
// node that has not yet heard of the flow (docs/cluster.md): such an attempt (no answer within
// holdAskLimit) is counted and retried, up to holdTries per connection.
const (
	holdTries    = 40
	holdAskLimit = 2 * time.Second
)

func holdECMP(t *testing.T, c *bgpCluster, n int) (held []*heldConn, failed int) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	var lastErr error
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range holdTries {
				var conn net.Conn
				err := c.cli.Do(func() (err error) { conn, err = net.DialTimeout("tcp", clusterVIP+":80", holdAskLimit); return })
				if err == nil {
					h := &heldConn{c: conn, r: bufio.NewReader(conn)}
					if h.backend, err = h.askWithin(holdAskLimit); err == nil {
						mu.Lock()
						held = append(held, h)
						mu.Unlock()
						return
					}
					conn.Close()
				}
				mu.Lock()
				failed, lastErr = failed+1, err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, h := range held {
			h.c.Close()
		}
	})
	if len(held) < n {
		t.Fatalf("%d of %d connections opened in %d tries each (last error: %v)", len(held), n, holdTries, lastErr)
	}
	return held, failed
}

// TestClusterECMP is issue 15's "Done when" (a) and (b) with the router's real ECMP: 300
// long-lived connections through the VIP while one node is stopped with SIGTERM and started
// again; none may break, and the router must move flows between nodes. Not yet here: the iperf3
// flow (its control connection was reset in the one run that had it: opening a connection races
// the flow sync, see holdECMP), (c) SIGKILL and (d) backend removal.
// Measured (2026-12-03, shared 2-CPU machine): 565 failed open attempts for 300 connections;
// 102/106/92 flows per node, (a) router dropped node 3 in 67 ms, 141 flows moved, 0 broken;
// (b) node 3 back in the route 2.45 s after its start holding 866 peer flows, 141 moved, 0 broken.
// Second run: 523 failed opens, 103/100/97 per node, (a) 65 ms, 97 moved; (b) 2.24 s, 97 moved; 0 broken.
func TestClusterECMP(t *testing.T) {
	c := newECMPCluster(t)
	for _, n := range c.nodes {
		c.startNode(n)
	}
	all := nodeAddrs(1, 2, 3)
	c.waitHops(clusterVIP, all, 60*time.Second)
	c.waitSteady(c.nodes[:]...)
	c.waitHops(clusterVIP, all, 10*time.Second)
	stopFollow := make(chan struct{})
	followDone := make(chan struct{})
	go func() { followMasq(c, stopFollow); close(followDone) }()
	defer func() { close(stopFollow); <-followDone }()

	held, failed := holdECMP(t, c, ecmpConns)
	t.Logf("%d connections held (%d attempts failed at open, retried)", len(held), failed)
	for _, h := range held {
		if !strings.Contains(h.backend, " "+ecmpMasq+":") {
			t.Fatalf("answer %q: not from the shared masquerade address", h.backend)
		}
	}
	p := startPinger(held)
	defer func() {
		close(p.stop)
		p.wg.Wait()
	}()
	sc := &syncCluster{t: t}
	sc.waitRounds(p, ecmpRounds, "requests through three nodes")
	before := flowNodes(c, held)
	t.Logf("flows per node before: %v", countNodes(before))

	n3 := c.nodes[2]
	t0 := time.Now()
	must(t, n3.cmd.Process.Signal(syscall.SIGTERM))
	t1 := c.waitGone(clusterVIP, nodeAddrs(3)[0], 5*time.Second)
	<-n3.ns.Exited(n3.cmd)
	t.Logf("(a) SIGTERM: router dropped node 3 after %v, node exited after %v", t1.Sub(t0).Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
	sc.waitRounds(p, ecmpRounds, "requests through two nodes")
	left := flowNodes(c, held)
	t.Logf("(a) flows per node after: %v, %d moved", countNodes(left), movedFlows(before, left))
	if n, first := p.brokenCount(); n > 0 {
		t.Errorf("(a) %d of %d connections broke when node 3 left (first: %v)", n, len(held), first)
	}

	t0 = time.Now()
	c.startNode(n3)
	t1 = c.waitHops(clusterVIP, all, 60*time.Second)
	ready := c.status(n3) != ""
	t.Logf("(b) node 3 back in the route %v after its start (answering status then: %v), holding %.0f peer flows",
		t1.Sub(t0).Round(time.Millisecond), ready, (&syncCluster{t: t}).metric(n3, "edgegate_flowsync_peer_flows"))
	c.waitSteady(n3)
	sc.waitRounds(p, ecmpRounds, "requests through three nodes again")
	back := flowNodes(c, held)
	t.Logf("(b) flows per node after: %v, %d moved", countNodes(back), movedFlows(left, back))
	if n, first := p.brokenCount(); n > 0 {
		t.Errorf("%d of %d connections broke (first: %v)", n, len(held), first)
	}
	if movedFlows(before, left) == 0 || movedFlows(left, back) == 0 {
		t.Errorf("the router moved no flows: the test did not test the change")
	}
}
