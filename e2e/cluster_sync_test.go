package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/edgegate/edgegate/flowsync"
	"github.com/edgegate/edgegate/internal/netns"
)

// Two edgegate nodes share their flows (cluster section, flow sync). A router sends the service
// address to node A, the backends send the shared masquerade address to node A; mid-test both
// routes move to node B, as ECMP moves flows when a node leaves, and A is then killed.
//
//	cli 198.18.40.2 ── 198.18.40.1 rtr ─┬─ 198.18.41.1 ── 198.18.41.2 A ── 198.19.41.1 ─┐
//	           (spy 198.18.40.1:4790)   └─ 198.18.42.1 ── 198.18.42.2 B ── 198.19.42.1 ─┴─ be 198.19.0.2, .3
//
// The cluster has three slots: A (node 0), B (node 1) and a spy socket on the router (node 2)
// that receives what the nodes send, so the test can replay a real datagram.

const (
	syncVIP        = "198.18.201.10"
	syncMasq       = "198.18.251.1"
	syncConns      = 100                    // long-lived connections, a request every syncInterval
	syncInterval   = 200 * time.Millisecond // the request period
	syncMaxStall   = time.Second            // the longest iperf3 pause the route move may cause
	syncRoundsEach = 10                     // requests per connection in each phase
)

type syncCluster struct {
	t            *testing.T
	dir          string
	cli, rtr, be *netns.NS
	nodes        [2]*clusterNode
	spy          *net.UDPConn
}

func newSyncCluster(t *testing.T) *syncCluster {
	netns.Require(t)
	c := &syncCluster{t: t}
	c.cli = netns.ForTest(t, "eg-sc")
	c.rtr = netns.ForTest(t, "eg-sr")
	c.be = netns.ForTest(t, "eg-sb")
	for _, ns := range []*netns.NS{c.rtr, c.be} {
		must(t, ns.Sysctl("net.ipv4.ip_forward", "1"))
		must(t, ns.Sysctl("net.ipv4.conf.all.rp_filter", "0"))
	}
	must(t, netns.Link(c.rtr, "r-cli", c.cli, "eth0", 1500))
	must(t, c.rtr.Addr("r-cli", "198.18.40.1/24"))
	must(t, c.cli.Addr("eth0", "198.18.40.2/24"))
	must(t, c.cli.Route("default", "via", "198.18.40.1"))
	must(t, c.be.IP("addr", "add", "198.19.0.2/32", "dev", "lo"))
	must(t, c.be.IP("addr", "add", "198.19.0.3/32", "dev", "lo"))
	for i := 1; i <= 2; i++ {
		n := &clusterNode{i: i, ns: netns.ForTest(t, fmt.Sprintf("eg-sn%d", i))}
		c.nodes[i-1] = n
		linkClusterNode(t, c.rtr, c.be, n, fmt.Sprintf("198.18.4%d", i), fmt.Sprintf("198.19.4%d", i))
	}
	c.moveTo(1)
	dir, err := os.MkdirTemp("", "eg-sync-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	must(t, os.Chmod(dir, 0o755))
	c.dir = dir
	must(t, os.WriteFile(filepath.Join(dir, "cluster.key"), []byte("0123456789abcdef0123456789abcdef-test-key\n"), 0o600))
	must(t, c.rtr.Do(func() (err error) {
		c.spy, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("198.18.40.1"), Port: 4790})
		return
	}))
	t.Cleanup(func() { c.spy.Close() })
	c.serveBackends()
	return c
}

// moveTo routes the service address (router) and the masquerade address (backends) to node i.
func (c *syncCluster) moveTo(i int) {
	must(c.t, c.rtr.IP("route", "replace", syncVIP+"/32", "via", fmt.Sprintf("198.18.4%d.2", i)))
	must(c.t, c.be.IP("route", "replace", syncMasq+"/32", "via", fmt.Sprintf("198.19.4%d.1", i)))
}

// serveBackends answers "<backend> <client address:port>" on :8080 of both backends, and runs
// an iperf3 server (receiver's 0.2 s intervals measure stalls).
func (c *syncCluster) serveBackends() {
	for _, addr := range []string{"198.19.0.2:8080", "198.19.0.3:8080"} {
		name, _, _ := net.SplitHostPort(addr)
		var ln net.Listener
		must(c.t, c.be.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return }))
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, name+" "+r.RemoteAddr)
		})}
		go srv.Serve(ln)
		c.t.Cleanup(func() { srv.Close() })
	}
	_, err := c.be.Start(context.Background(), "iperf3", "-s", "-p", "5201", "-i", "0.2", "-J")
	must(c.t, err)
	waitFor(c.t, 5*time.Second, "iperf3 server listening", func() bool {
		out, _ := c.be.Exec("ss", "-ltn", "sport = :5201")
		return strings.Contains(out, "5201")
	})
}

func (c *syncCluster) nodeConfig(i int) string {
	peers := []string{}
	for j := 1; j <= 2; j++ {
		if j != i {
			peers = append(peers, fmt.Sprintf("198.18.4%d.2:4790", j))
		}
	}
	peers = append(peers, "198.18.40.1:4790") // the spy's slot, node 2
	return fmt.Sprintf(`tun: {name: edge0}
nat: {masquerade_addresses: [%[2]s]}
admin: {listen: "127.0.0.1:9469", socket: %[3]s}
cluster:
  hash_seed: 8311592947014733109
  node_index: %[4]d
  listen: 198.18.4%[1]d.2:4790
  peers: [%[5]s]
  key_file: %[6]s
services:
  - name: web
    addresses: [%[7]s]
    ports: [{name: http, port: 80, target_port: 8080}, {name: iperf, port: 5201}]
    scheduler: maglev
    backends: [{address: 198.19.0.2}, {address: 198.19.0.3}]
`, i, syncMasq, filepath.Join(c.dir, fmt.Sprintf("n%d", i), "admin.sock"), i-1, strings.Join(peers, ", "),
		filepath.Join(c.dir, "cluster.key"), syncVIP)
}

func (c *syncCluster) startNode(n *clusterNode) {
	t := c.t
	n.cfg = filepath.Join(c.dir, fmt.Sprintf("n%d.yaml", n.i))
	must(t, os.WriteFile(n.cfg, []byte(c.nodeConfig(n.i)), 0o644))
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
	cl := nsClient(n.ns, time.Second)
	waitFor(t, 15*time.Second, fmt.Sprintf("node %d ready", n.i), func() bool {
		resp, err := cl.Get("http://127.0.0.1:9469/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// metric returns the sum of node n's series name with the given labels ("k=v").
func (c *syncCluster) metric(n *clusterNode, name string, labels ...string) float64 {
	c.t.Helper()
	body, err := get(nsClient(n.ns, 3*time.Second), "http://127.0.0.1:9469/metrics")
	if err != nil {
		c.t.Fatalf("node %d metrics: %v", n.i, err)
	}
	m := metrics{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		var v float64
		fmt.Sscan(l[i+1:], &v)
		m[l[:i]] = v
	}
	return m.get(name, labels...)
}

// rxPackets counts the packets node n received on its router link.
func (c *syncCluster) rxPackets(n *clusterNode) uint64 {
	var rx uint64
	must(c.t, n.ns.Do(func() error {
		l, err := netlink.LinkByName("eth0")
		if err == nil {
			rx = l.Attrs().Statistics.RxPackets
		}
		return err
	}))
	return rx
}

// pinger asks each held connection every syncInterval and remembers its first answer; an error
// or another answer (other backend, other masquerade address or port) breaks the connection.
type pinger struct {
	held   []*heldConn
	rounds []atomic.Int64
	broken []atomic.Value // error, once broken
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startPinger(held []*heldConn) *pinger {
	p := &pinger{held: held, rounds: make([]atomic.Int64, len(held)), broken: make([]atomic.Value, len(held)), stop: make(chan struct{})}
	for i, h := range held {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			tick := time.NewTicker(syncInterval)
			defer tick.Stop()
			for {
				select {
				case <-p.stop:
					return
				case <-tick.C:
				}
				b, err := h.ask()
				if err == nil && b != h.backend {
					err = fmt.Errorf("answered %q, first %q", b, h.backend)
				}
				if err != nil {
					p.broken[i].Store(err)
					return
				}
				p.rounds[i].Add(1)
			}
		}()
	}
	return p
}

// minRounds is the fewest requests any unbroken connection has made.
func (p *pinger) minRounds() int64 {
	least := int64(1 << 62)
	for i := range p.rounds {
		if p.broken[i].Load() == nil {
			least = min(least, p.rounds[i].Load())
		}
	}
	return least
}

func (p *pinger) brokenCount() (n int, first error) {
	for i := range p.broken {
		if err := p.broken[i].Load(); err != nil {
			n++
			if first == nil {
				first = err.(error)
			}
		}
	}
	return
}

// waitRounds waits until every unbroken connection made k more requests than at the call (or
// none is left).
func (c *syncCluster) waitRounds(p *pinger, k int64, what string) {
	c.t.Helper()
	base := p.minRounds()
	waitFor(c.t, time.Duration(k)*syncInterval*5+10*time.Second, what, func() bool {
		n, _ := p.brokenCount()
		return n == len(p.held) || p.minRounds() >= base+k
	})
}

// TestClusterFlowSync: connections and an iperf3 transfer opened through node A keep working,
// on the same backend with the same masquerade address and port, after their packets (both
// directions) start arriving at node B, after A is killed, and after A is started again (with
// an empty table) and the routes move back to it. Forged and replayed flow-sync datagrams are
// counted and change nothing.
func TestClusterFlowSync(t *testing.T) {
	c := newSyncCluster(t)
	a, b := c.nodes[0], c.nodes[1]
	c.startNode(a)
	c.startNode(b)

	held := holdConns(t, c.cli, syncVIP+":80", syncConns)
	perBackend := map[string]int{}
	for _, h := range held {
		backend, _, _ := strings.Cut(h.backend, " ")
		perBackend[backend]++
		if !strings.Contains(h.backend, " "+syncMasq+":") {
			t.Fatalf("answer %q: not from the shared masquerade address", h.backend)
		}
	}
	t.Logf("%d connections through node A, per backend: %v", syncConns, perBackend)
	iperf, err := c.cli.Start(context.Background(), "iperf3", "-c", syncVIP, "-p", "5201", "-t", "20", "-J", "--get-server-output")
	must(t, err)
	p := startPinger(held)
	defer func() {
		close(p.stop)
		p.wg.Wait()
	}()
	waitFor(t, 10*time.Second, "node B to hold node A's flows", func() bool {
		return c.metric(b, "edgegate_flowsync_peer_flows", "node=0") >= syncConns+2 // + iperf3's two
	})
	c.waitRounds(p, syncRoundsEach, "requests through node A")

	rxBefore := c.rxPackets(b)
	moved := time.Now()
	c.moveTo(2)
	c.waitRounds(p, syncRoundsEach, "requests through node B")
	t.Logf("node B received %d packets on its router link in the %v after the move", c.rxPackets(b)-rxBefore, time.Since(moved).Round(time.Millisecond))
	must(t, a.cmd.Process.Signal(syscall.SIGKILL))
	<-a.ns.Exited(a.cmd)
	c.waitRounds(p, syncRoundsEach, "requests with node A dead")

	// A returns with an empty table: B sends it the flows (A's own included) when it hears A's
	// new epoch, and the routes move back to A.
	c.startNode(a)
	waitFor(t, 10*time.Second, "node A to get its flows back from B", func() bool {
		return c.metric(a, "edgegate_flowsync_peer_flows", "node=0") >= syncConns+2
	})
	rxBack := c.rxPackets(a)
	c.moveTo(1)
	c.waitRounds(p, syncRoundsEach, "requests through the returned node A")

	if n, first := p.brokenCount(); n > 0 {
		t.Errorf("%d of %d connections broke (first: %v)", n, syncConns, first)
	}
	if rx := c.rxPackets(b) - rxBefore; rx < syncConns*2*syncRoundsEach {
		t.Errorf("node B received only %d packets after the move: the traffic did not go through it", rx)
	}
	if rx := c.rxPackets(a) - rxBack; rx < syncConns*syncRoundsEach {
		t.Errorf("node A received only %d packets after the move back: the traffic did not go through it", rx)
	}
	if err := c.cli.Wait(iperf); err != nil {
		t.Fatalf("iperf3 did not complete: %v\n%s", err, c.cli.Output(iperf))
	}
	bytes, secs := iperfIntervals(t, c.cli.Output(iperf))
	stall := longestStall(bytes, secs)
	t.Logf("iperf3: longest stall %.1f s (receiver's 0.2 s intervals)", stall)
	if stall > syncMaxStall.Seconds() {
		t.Errorf("iperf3 stalled %.1f s across the move, want at most %v (intervals %v)", stall, syncMaxStall, bytes)
	}
	c.forgeAndReplay(b)
}

// forgeAndReplay sends node B, from the spy's peer address, one datagram signed with the
// wrong key and three times the last datagram node A sent: B counts one authentication failure
// and at least two replays (the first copy is fresh if the original never reached B: the window
// accepts a sequence number once), and holds no more of A's flows than before.
func (c *syncCluster) forgeAndReplay(b *clusterNode) {
	t := c.t
	buf := make([]byte, flowsync.MaxDatagram)
	var captured []byte
	for {
		c.spy.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, from, err := c.spy.ReadFromUDPAddrPort(buf)
		if err != nil {
			break // drained
		}
		if from.Addr() == netip.MustParseAddr("198.18.41.2") {
			captured = append(captured[:0], buf[:n]...)
		}
	}
	if captured == nil {
		t.Fatal("spy: no datagram from node A")
	}
	flowsBefore := c.metric(b, "edgegate_flowsync_peer_flows", "node=0")
	forged := flowsync.NewEncoder([]byte("not-the-cluster-key-but-32-bytes-long")).Encode(
		flowsync.Header{Node: 0, Epoch: uint64(time.Now().UnixNano()), Seq: 1}, nil)
	to := netip.MustParseAddrPort("198.18.42.2:4790")
	for _, dg := range [][]byte{forged, captured, captured, captured} {
		if _, err := c.spy.WriteToUDPAddrPort(dg, to); err != nil {
			t.Fatal(err)
		}
	}
	drops := map[string]float64{}
	waitFor(t, 5*time.Second, "node B to count the forged and replayed datagrams", func() bool {
		for _, r := range flowsync.DropReasons {
			drops[r] = c.metric(b, "edgegate_flowsync_dropped_total", "reason="+r)
		}
		return drops["auth"] == 1 && drops["replay"] >= 2
	})
	t.Logf("node B's flow-sync drops: %v", drops)
	if drops["replay"] > 3 || drops["auth"] != 1 {
		t.Errorf("node B's flow-sync drops %v, want auth 1 and replay 2 or 3", drops)
	}
	if after := c.metric(b, "edgegate_flowsync_peer_flows", "node=0"); after > flowsBefore {
		t.Errorf("node B holds %v of A's flows after the replay, %v before", after, flowsBefore)
	}
}
