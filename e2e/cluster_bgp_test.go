package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/edgegate/edgegate/internal/netns"
)

// A router running FRR (zebra, bgpd, bfdd) in its own namespace between a client and three
// edgegate nodes. Each node announces the VIPs by BGP with BFD; the router installs an ECMP route
// with a 5-tuple hash (fib_multipath_hash_policy=3) and spreads the client's flows over the nodes.
//
//	cli 198.18.10.2 ── 198.18.10.1 rtr ─┬─ 198.18.21.1 ── 198.18.21.2 n1 ── 198.19.1.1 ─┐
//	                                    ├─ 198.18.22.1 ── 198.18.22.2 n2 ── 198.19.2.1 ─┼─ be (backends
//	                                    └─ 198.18.23.1 ── 198.18.23.2 n3 ── 198.19.3.1 ─┘  198.19.0.2, .3)
//
// Node i masquerades as 198.18.250.i, so a backend's answer names the node a flow went through.

const (
	clusterVIP     = "198.18.200.10" // service web: both backends, maglev
	clusterVIP2    = "198.18.200.20" // service fragile: one health-checked backend on :8081
	clusterVIP3    = "198.18.200.30" // service extra: added to node 1 by reload
	routerASN      = 65000
	nodeASN        = 65100
	withdrawDelay  = 2 * time.Second
	bfdDetectLimit = 500 * time.Millisecond // the bound for BFD 100 ms x 3
	frrDir         = "/usr/lib/frr"
)

type clusterNode struct {
	i   int
	ns  *netns.NS
	cfg string
	cmd *exec.Cmd
	log *lockedBuffer
}

type bgpCluster struct {
	t            *testing.T
	dir          string
	cli, rtr, be *netns.NS
	nodes        [3]*clusterNode
	fragile      net.Listener // the only backend of service fragile
	fragileSrv   *http.Server
	routes       *netlink.Handle // a netlink socket in the router's namespace
}

// requireFRR fails under CI (scripts/deps.sh installs frr) and skips elsewhere when FRR is missing.
// linkClusterNode enables forwarding in node n and links it to the router rtr (on rtrNet.0/24:
// the router .1, the node .2, the node's default route) and to the backends' namespace be (on
// beNet.0/24: the node .1, be .2; the node reaches the backends' 198.19.0.0/24 through it).
func linkClusterNode(t *testing.T, rtr, be *netns.NS, n *clusterNode, rtrNet, beNet string) {
	t.Helper()
	for _, kv := range [][2]string{{"net.ipv4.ip_forward", "1"}, {"net.ipv6.conf.all.forwarding", "1"}, {"net.ipv4.conf.all.rp_filter", "0"}} {
		must(t, n.ns.Sysctl(kv[0], kv[1]))
	}
	up, down := fmt.Sprintf("r-n%d", n.i), fmt.Sprintf("n%d", n.i)
	must(t, netns.Link(rtr, up, n.ns, "eth0", 1500))
	must(t, rtr.Addr(up, rtrNet+".1/24"))
	must(t, n.ns.Addr("eth0", rtrNet+".2/24"))
	must(t, n.ns.Route("default", "via", rtrNet+".1"))
	must(t, netns.Link(n.ns, "eth1", be, down, 1500))
	must(t, n.ns.Addr("eth1", beNet+".1/24"))
	must(t, be.Addr(down, beNet+".2/24"))
	must(t, n.ns.Route("198.19.0.0/24", "via", beNet+".2"))
}

func requireFRR(t *testing.T) {
	t.Helper()
	for _, d := range []string{"zebra", "bgpd", "bfdd"} {
		if _, err := os.Stat(filepath.Join(frrDir, d)); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("FRR is not installed (%v): scripts/deps.sh installs it", err)
			}
			t.Skipf("FRR is not installed: %v (apt-get install frr)", err)
		}
	}
}

func newBGPCluster(t *testing.T) *bgpCluster {
	netns.Require(t)
	requireFRR(t)
	c := &bgpCluster{t: t}
	c.cli = netns.ForTest(t, "eg-bc")
	c.rtr = netns.ForTest(t, "eg-br")
	c.be = netns.ForTest(t, "eg-bb")
	must(t, c.rtr.Do(func() (err error) { c.routes, err = netlink.NewHandle(unix.NETLINK_ROUTE); return }))
	t.Cleanup(func() { c.routes.Close() })
	must(t, c.rtr.Sysctl("net.ipv4.ip_forward", "1"))
	// A real router hashes the 5-tuple; policy 1 would use the socket's random hash in a veth
	// testbed (shared/scaleout finding 1).
	must(t, c.rtr.Sysctl("net.ipv4.fib_multipath_hash_policy", "3"))
	must(t, c.rtr.Sysctl("net.ipv4.fib_multipath_hash_fields", "0x0037"))
	must(t, netns.Link(c.rtr, "r-cli", c.cli, "eth0", 1500))
	must(t, c.rtr.Addr("r-cli", "198.18.10.1/24"))
	must(t, c.cli.Addr("eth0", "198.18.10.2/24"))
	must(t, c.cli.Route("default", "via", "198.18.10.1"))
	must(t, c.be.IP("addr", "add", "198.19.0.2/32", "dev", "lo"))
	must(t, c.be.IP("addr", "add", "198.19.0.3/32", "dev", "lo"))
	for i := 1; i <= 3; i++ {
		n := &clusterNode{i: i, ns: netns.ForTest(t, fmt.Sprintf("eg-bn%d", i))}
		c.nodes[i-1] = n
		linkClusterNode(t, c.rtr, c.be, n, fmt.Sprintf("198.18.2%d", i), fmt.Sprintf("198.19.%d", i))
		must(t, c.be.Route(fmt.Sprintf("198.18.250.%d/32", i), "via", fmt.Sprintf("198.19.%d.1", i)))
	}
	dir, err := os.MkdirTemp("", "eg-bgp-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	c.dir = dir
	c.serveBackends()
	c.startFRR()
	return c
}

// serveBackends answers "<backend> <client address>" on 198.19.0.2:8080, 198.19.0.3:8080 and
// (service fragile) 198.19.0.3:8081.
func (c *bgpCluster) serveBackends() {
	for _, addr := range []string{"198.19.0.2:8080", "198.19.0.3:8080"} {
		c.serve(addr)
	}
	c.fragile, c.fragileSrv = c.serve("198.19.0.3:8081")
}

func (c *bgpCluster) serve(addr string) (net.Listener, *http.Server) {
	name, _, _ := net.SplitHostPort(addr)
	var ln net.Listener
	must(c.t, c.be.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return }))
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		io.WriteString(w, name+" "+host)
	})}
	go srv.Serve(ln)
	c.t.Cleanup(func() { srv.Close() })
	return ln, srv
}

// startFRR writes the router's configs and starts zebra, bfdd and bgpd with paths of their own
// (no system directories, no VTY port); the namespace stops them by PID when the test ends.
func (c *bgpCluster) startFRR() {
	t := c.t
	run := filepath.Join(c.dir, "rtr")
	must(t, os.Mkdir(run, 0o755))
	must(t, os.Chmod(c.dir, 0o755))
	u, err := user.Lookup("frr")
	must(t, err)
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	must(t, os.Chown(run, uid, gid))
	var nb strings.Builder
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(&nb, " neighbor 198.18.2%d.2 peer-group NODES\n neighbor 198.18.2%d.2 update-source 198.18.2%d.1\n", i, i, i)
	}
	files := map[string]string{
		"zebra.conf": "hostname rtr\nlog file " + run + "/zebra.log informational\n",
		"bfdd.conf": "hostname rtr\nlog file " + run + "/bfdd.log informational\nbfd\n profile fast\n  detect-multiplier 3\n" +
			"  receive-interval 100\n  transmit-interval 100\n !\n!\n",
		"bgpd.conf": fmt.Sprintf(`hostname rtr
log file %s/bgpd.log informational
ip prefix-list VIPS seq 10 permit 198.18.200.0/24 le 32
route-map FROM-NODES permit 10
 match ip address prefix-list VIPS
route-map DENY-ALL deny 10
router bgp %d
 bgp router-id 198.18.10.1
 no bgp ebgp-requires-policy
 bgp log-neighbor-changes
 neighbor NODES peer-group
 neighbor NODES remote-as %d
 neighbor NODES passive
 neighbor NODES bfd
 neighbor NODES bfd profile fast
%s address-family ipv4 unicast
  neighbor NODES route-map FROM-NODES in
  neighbor NODES route-map DENY-ALL out
  maximum-paths 8
 exit-address-family
`, run, routerASN, nodeASN, nb.String()),
	}
	for name, text := range files {
		p := filepath.Join(run, name)
		must(t, os.WriteFile(p, []byte(text), 0o644))
		must(t, os.Chown(p, uid, gid))
	}
	common := func(d string) []string {
		return []string{"-f", filepath.Join(run, d+".conf"), "-i", filepath.Join(run, d+".pid"),
			"-z", filepath.Join(run, "zserv.api"), "--vty_socket", run, "-P", "0"}
	}
	start := func(d string, extra ...string) {
		cmd, err := c.rtr.Start(context.Background(), filepath.Join(frrDir, d), append(common(d), extra...)...)
		must(t, err)
		t.Cleanup(func() {
			if t.Failed() {
				out, _ := os.ReadFile(filepath.Join(run, d+".log"))
				t.Logf("%s output:\n%s\n%s log (tail):\n%s", d, c.rtr.Output(cmd), d, tail(string(out), 4000))
			}
		})
	}
	start("zebra")
	waitFor(t, 10*time.Second, "zebra's zserv socket", func() bool {
		_, err := os.Stat(filepath.Join(run, "zserv.api"))
		return err == nil
	})
	start("bfdd", "--bfdctl", filepath.Join(run, "bfdd.sock"))
	start("bgpd")
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// nodeConfig renders node i's configuration; extra adds services. The admin socket is the
// node's own (the file system is shared between the namespaces), in a directory edgegate creates
// and gives to the user it switches to.
func (c *bgpCluster) nodeConfig(i int, extra string) string {
	return fmt.Sprintf(`tun: {name: edge0}
nat: {masquerade_addresses: [198.18.250.%[1]d]}
admin: {listen: "127.0.0.1:9469", socket: %[8]s}
bgp:
  asn: %[2]d
  router_id: 198.18.2%[1]d.2
  withdraw_delay: %[4]s
  communities: ["%[2]d:10"]
  peers:
    - address: 198.18.2%[1]d.1
      asn: %[3]d
      hold_time: 9
      keepalive: 3
      bfd: {enabled: true, min_tx: 100ms, min_rx: 100ms, multiplier: 3}
services:
  - name: web
    addresses: [%[5]s]
    ports: [{port: 80, target_port: 8080}]
    scheduler: maglev
    backends: [{address: 198.19.0.2}, {address: 198.19.0.3}]
  - name: fragile
    addresses: [%[6]s]
    ports: [{port: 80, target_port: 8081}]
    backends: [{address: 198.19.0.3}]
    health_check: {interval: 200ms, timeout: 200ms, healthy_threshold: 1, unhealthy_threshold: 2}
%[7]s`, i, nodeASN, routerASN, withdrawDelay, clusterVIP, clusterVIP2, extra, filepath.Join(c.dir, fmt.Sprintf("n%d", i), "admin.sock"))
}

func (c *bgpCluster) startNode(n *clusterNode) {
	t := c.t
	t.Helper()
	if n.cfg == "" {
		n.cfg = filepath.Join(c.dir, fmt.Sprintf("n%d.yaml", n.i))
		must(t, os.WriteFile(n.cfg, []byte(c.nodeConfig(n.i, "")), 0o644))
	}
	n.log = &lockedBuffer{}
	cmd := n.ns.Command(context.Background(), edgegateBin, "run", "-c", n.cfg)
	cmd.Stdout, cmd.Stderr = n.log, n.log
	must(t, n.ns.StartCmd(cmd))
	n.cmd = cmd
	log := n.log
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node %d output:\n%s", n.i, tail(log.String(), 6000))
		}
	})
}

// nexthops returns the router's next hops for vip, sorted (none when it has no route). It reads
// the routing table over netlink in-process: polling it every few ms costs no fork and exec,
// which on a 2-CPU machine would take CPU from the daemons whose timing is measured.
func (c *bgpCluster) nexthops(vip string) []string {
	dst := &net.IPNet{IP: net.ParseIP(vip).To4(), Mask: net.CIDRMask(32, 32)}
	routes, err := c.routes.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: dst, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		c.t.Fatalf("router routes: %v", err)
	}
	var hops []string
	for _, r := range routes {
		if r.Gw != nil {
			hops = append(hops, r.Gw.String())
		}
		for _, nh := range r.MultiPath {
			hops = append(hops, nh.Gw.String())
		}
	}
	slices.Sort(hops)
	return hops
}

func nodeAddrs(idx ...int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, fmt.Sprintf("198.18.2%d.2", i))
	}
	return out
}

// waitHops polls the router every few ms until vip's next hops are want; it returns when that
// was first seen.
func (c *bgpCluster) waitHops(vip string, want []string, limit time.Duration) time.Time {
	c.t.Helper()
	var got []string
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if got = c.nexthops(vip); slices.Equal(got, want) {
			return time.Now()
		}
		time.Sleep(2 * time.Millisecond)
	}
	c.t.Fatalf("router's next hops for %s: %v after %v, want %v", vip, got, limit, want)
	return time.Time{}
}

// waitGone polls the router until vip's route no longer has hop (whatever the other nodes do)
// and returns when that was first seen.
func (c *bgpCluster) waitGone(vip, hop string, limit time.Duration) time.Time {
	c.t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if !slices.Contains(c.nexthops(vip), hop) {
			return time.Now()
		}
		time.Sleep(2 * time.Millisecond)
	}
	c.t.Fatalf("router still routes %s via %s after %v", vip, hop, limit)
	return time.Time{}
}

// spread opens n connections to vip (one request each) from the client and counts answers per
// node (by the masquerade address the backend saw); every request must succeed.
func (c *bgpCluster) spread(vip string, n int) map[int]int {
	c.t.Helper()
	cl := nsClient(c.cli, 3*time.Second)
	got := map[int]int{}
	for k := range n {
		body, err := get(cl, "http://"+vip+"/")
		if err != nil {
			c.t.Fatalf("request %d of %d to %s: %v", k+1, n, vip, err)
		}
		var backend, masq string
		fmt.Sscan(body, &backend, &masq)
		node, ok := strings.CutPrefix(masq, "198.18.250.")
		i, err := strconv.Atoi(node)
		if !ok || err != nil {
			c.t.Fatalf("answer %q names no node", body)
		}
		got[i]++
	}
	return got
}

func (c *bgpCluster) nodeExec(n *clusterNode, args ...string) string {
	c.t.Helper()
	out, err := n.ns.Exec(args...)
	if err != nil {
		c.t.Fatalf("node %d: %v", n.i, err)
	}
	return out
}

// status returns `edgegate status` of node n ("" when it does not answer).
func (c *bgpCluster) status(n *clusterNode) string {
	out, err := n.ns.Exec(edgegateBin, "status", "-c", n.cfg)
	if err != nil {
		return ""
	}
	return out
}

// waitSteady waits until each node's session is established with BFD up. FRR re-registers a BFD
// session once when BGP comes up (finding 4 of shared/scaleout), which resets the session a
// second or two after start; later checks must not run into that.
func (c *bgpCluster) waitSteady(nodes ...*clusterNode) {
	c.t.Helper()
	for _, n := range nodes {
		re := regexp.MustCompile(fmt.Sprintf(`198\.18\.2%d\.1\s+%d\s+established\s+\S+\s+\d+\s+up`, n.i, routerASN))
		deadline := time.Now().Add(30 * time.Second)
		for !re.MatchString(c.status(n)) {
			if time.Now().After(deadline) {
				c.t.Fatalf("node %d: no session established with BFD up after 30s:\n%s", n.i, c.status(n))
			}
			time.Sleep(100 * time.Millisecond) // each look runs a process
		}
	}
}

func TestClusterBGP(t *testing.T) {
	c := newBGPCluster(t)
	for _, n := range c.nodes {
		c.startNode(n)
	}
	all := nodeAddrs(1, 2, 3)
	up := time.Now()
	// Slow only on a loaded machine: FRR's BFD re-registration resets each session once at start.
	c.waitHops(clusterVIP, all, 60*time.Second)
	c.waitHops(clusterVIP2, all, 10*time.Second)
	c.waitSteady(c.nodes[:]...)
	c.waitHops(clusterVIP, all, 10*time.Second)
	t.Logf("ECMP route with 3 next hops, sessions and BFD up %v after start", time.Since(up).Round(time.Millisecond))

	t.Run("flows spread over the nodes", func(t *testing.T) {
		got := c.spread(clusterVIP, 90)
		t.Logf("90 connections per node: %v", got)
		for i := 1; i <= 3; i++ {
			if got[i] == 0 {
				t.Errorf("node %d got none of 90 connections: %v", i, got)
			}
		}
	})

	t.Run("status and metrics", func(t *testing.T) {
		n := c.nodes[0]
		// Polled: BFD comes up shortly after the session (FRR re-registers it once, finding 4 of
		// shared/scaleout), and on a loaded machine a 300 ms stall takes BFD down for a moment.
		statusRE := regexp.MustCompile(`198\.18\.21\.1\s+65000\s+established\s+\S+\s+\d+\s+up`)
		wantMetrics := []string{`edgegate_bgp_session_established{peer="198.18.21.1"} 1`, `edgegate_bgp_bfd_up{peer="198.18.21.1"} 1`,
			`edgegate_bgp_announced{prefix="198.18.200.10/32"} 1`, `edgegate_bgp_announced{prefix="198.18.200.20/32"} 1`}
		var out, m string
		waitFor(t, 15*time.Second, "session established and BFD up in edgegate status and metrics", func() bool {
			out, _ = n.ns.Exec(edgegateBin, "status", "-c", n.cfg)
			m, _ = n.ns.Exec("curl", "-sS", "--max-time", "5", "http://127.0.0.1:9469/metrics")
			return statusRE.MatchString(out) && containsAll(m, wantMetrics...)
		})
		t.Logf("edgegate status on node 1:\n%s", out)
		if !strings.Contains(out, "bgp: as 65100, router id 198.18.21.2, announcing 198.18.200.10/32 198.18.200.20/32") {
			t.Errorf("status:\n%s", out)
		}
		vtysh, err := c.rtr.Exec("vtysh", "--vty_socket", filepath.Join(c.dir, "rtr"), "-c", "show bgp ipv4 unicast "+clusterVIP+"/32")
		if err != nil || !strings.Contains(vtysh, "65100:10") {
			t.Errorf("router does not see the community 65100:10: %v\n%s", err, vtysh)
		}
	})

	t.Run("all backends unhealthy withdraws", func(t *testing.T) {
		c.fragileSrv.Close()
		t0 := time.Now()
		c.waitHops(clusterVIP2, nil, 10*time.Second)
		t.Logf("service fragile withdrawn by all nodes %v after its only backend stopped", time.Since(t0).Round(time.Millisecond))
		for _, n := range c.nodes { // each node's own announcements (the router's view may flap)
			if out := c.status(n); !strings.Contains(out, "announcing 198.18.200.10/32\n") {
				t.Errorf("node %d withdrew more than service fragile:\n%s", n.i, out)
			}
		}
		c.fragile, c.fragileSrv = c.serve("198.19.0.3:8081")
		t0 = time.Now()
		c.waitHops(clusterVIP2, all, 10*time.Second)
		t.Logf("announced again %v after the backend returned", time.Since(t0).Round(time.Millisecond))
	})

	t.Run("reload adds and removes an announcement", func(t *testing.T) {
		n := c.nodes[0]
		extra := fmt.Sprintf("  - name: extra\n    addresses: [%s]\n    ports: [{port: 80, target_port: 8080}]\n    backends: [{address: 198.19.0.2}]\n", clusterVIP3)
		must(t, os.WriteFile(n.cfg, []byte(c.nodeConfig(1, extra)), 0o644))
		must(t, n.cmd.Process.Signal(syscall.SIGHUP))
		c.waitHops(clusterVIP3, nodeAddrs(1), 10*time.Second)
		if got := c.spread(clusterVIP3, 5); got[1] != 5 {
			t.Errorf("VIP announced by node 1 only went elsewhere: %v", got)
		}
		must(t, os.WriteFile(n.cfg, []byte(c.nodeConfig(1, "")), 0o644))
		must(t, n.cmd.Process.Signal(syscall.SIGHUP))
		c.waitHops(clusterVIP3, nil, 10*time.Second)
	})

	t.Run("SIGTERM withdraws before the node exits", func(t *testing.T) {
		n := c.nodes[2]
		t0 := time.Now()
		must(t, n.cmd.Process.Signal(syscall.SIGTERM))
		t1 := c.waitGone(clusterVIP, nodeAddrs(3)[0], 5*time.Second)
		select {
		case <-n.ns.Exited(n.cmd):
			t.Fatalf("node 3 exited before the router had withdrawn it")
		default:
		}
		got := c.spread(clusterVIP, 30) // new connections while node 3 waits withdraw_delay
		select {
		case <-n.ns.Exited(n.cmd):
			t.Fatalf("node 3 exited within the withdraw_delay (%v)", withdrawDelay)
		default:
		}
		if got[3] != 0 {
			t.Errorf("new connections reached the withdrawn node: %v", got)
		}
		select {
		case <-n.ns.Exited(n.cmd):
		case <-time.After(withdrawDelay + 10*time.Second):
			t.Fatal("node 3 did not exit after SIGTERM")
		}
		t2 := time.Now()
		if code := n.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("node 3 exit code %d", code)
		}
		if t2.Sub(t0) < withdrawDelay {
			t.Errorf("node 3 exited %v after SIGTERM, before its withdraw_delay %v", t2.Sub(t0), withdrawDelay)
		}
		t.Logf("SIGTERM: router dropped node 3 after %v, node exited after %v (withdraw_delay %v); 30 new connections during the delay: %v",
			t1.Sub(t0).Round(time.Millisecond), t2.Sub(t0).Round(time.Millisecond), withdrawDelay, got)
	})

	t.Run("returning node rejoins", func(t *testing.T) {
		t0 := time.Now()
		c.startNode(c.nodes[2])
		c.waitHops(clusterVIP, all, 60*time.Second)
		c.waitSteady(c.nodes[2])
		t.Logf("node 3 back in the ECMP route %v after its start", time.Since(t0).Round(time.Millisecond))
	})

	t.Run("SIGKILL is detected within 0.5 s", func(t *testing.T) {
		n := c.nodes[2]
		t0 := time.Now()
		must(t, n.cmd.Process.Signal(syscall.SIGKILL))
		t1 := c.waitGone(clusterVIP, nodeAddrs(3)[0], 5*time.Second)
		if d := t1.Sub(t0); d > bfdDetectLimit {
			t.Errorf("router removed the killed node after %v, want <= %v", d, bfdDetectLimit)
		} else {
			t.Logf("SIGKILL: router dropped node 3 after %v (limit %v)", d.Round(time.Millisecond), bfdDetectLimit)
		}
	})

	t.Run("BFD detects a hung node within 0.5 s", func(t *testing.T) {
		// SIGSTOP keeps the TCP session open: only BFD (or the 9 s hold timer) can tell.
		n := c.nodes[1]
		t0 := time.Now()
		must(t, n.cmd.Process.Signal(syscall.SIGSTOP))
		defer n.cmd.Process.Signal(syscall.SIGKILL)
		t1 := c.waitGone(clusterVIP, nodeAddrs(2)[0], 5*time.Second)
		if d := t1.Sub(t0); d > bfdDetectLimit {
			t.Errorf("router removed the hung node after %v, want <= %v", d, bfdDetectLimit)
		} else {
			t.Logf("SIGSTOP: router dropped node 2 after %v (limit %v)", d.Round(time.Millisecond), bfdDetectLimit)
		}
		c.waitHops(clusterVIP, nodeAddrs(1), 10*time.Second)
		if got := c.spread(clusterVIP, 10); got[1] != 10 {
			t.Errorf("connections after the failover: %v", got)
		}
	})
}
