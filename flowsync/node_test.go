package flowsync

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/packet"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pair starts two nodes on loopback, each with its own table, peers of each other. Node a's
// peers also include spy, a socket that receives copies of a's datagrams.
type testNode struct {
	n    *Node
	tb   *conntrack.Table
	load atomic.Int64
}

func startNode(t *testing.T, idx int, conn *net.UDPConn, peers ...netip.AddrPort) *testNode {
	t.Helper()
	return startNodeCap(t, idx, conn, 1024, peers...)
}

func startNodeCap(t *testing.T, idx int, conn *net.UDPConn, capacity int, peers ...netip.AddrPort) *testNode {
	t.Helper()
	tn := &testNode{}
	var node atomic.Pointer[Node]
	tn.tb = conntrack.New(conntrack.Config{MaxEntries: capacity, OnEvent: func(e *conntrack.Entry, ev conntrack.Event) {
		if n := node.Load(); n != nil {
			n.Event(e, ev)
		}
	}})
	addr := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	conn.Close()
	n, err := Start(Config{Index: idx, Listen: addr, Peers: peers, Key: testKey, Table: tn.tb,
		Resolve: func(kind uint8, _ *[2]conntrack.Tuple) (uint32, *atomic.Int64, bool) { return 7, &tn.load, kind == 1 },
		Log:     slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	node.Store(n)
	tn.n = n
	t.Cleanup(func() { n.Close() })
	return tn
}

func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// TestNodesShareFlows: a flow created on node A appears on node B with A's tuples, labels and
// origin, follows A's state changes and A's Delete; B's copies do not echo back to A. A forged
// datagram and a replayed one are counted and change nothing.
func TestNodesShareFlows(t *testing.T) {
	ca, cb, spy := listen(t), listen(t), listen(t)
	defer spy.Close()
	pa, pb := addrOf(ca), addrOf(cb)
	a := startNode(t, 0, ca, pb, addrOf(spy))
	b := startNode(t, 1, cb, pa)

	rec := testRecord(1)
	seg := func(d conntrack.Dir, flags packet.TCPFlags) *packet.Packet {
		k := rec.Tuple[d]
		return &packet.Packet{Version: 4, Proto: 6, Src: k.SrcAddr(), Dst: k.DstAddr(), SrcPort: k.SrcPort, DstPort: k.DstPort, TCPFlags: flags}
	}
	now := time.Now().UnixNano()
	e := &conntrack.Entry{Kind: 1, Service: 3, Tuple: rec.Tuple}
	e.Init(seg(conntrack.Original, packet.TCPSyn), now)
	if _, err := a.tb.Insert(e, now); err != nil {
		t.Fatal(err)
	}
	var got *conntrack.Entry
	waitFor(t, "the flow on B", func() bool {
		got, _ = b.tb.Lookup(&rec.Tuple[conntrack.Reply], time.Now().UnixNano())
		return got != nil
	})
	if got.Tuple != e.Tuple || got.Origin != 1 || got.Service != 7 || got.State() != conntrack.StateSynSent || b.load.Load() != 1 {
		t.Fatalf("B has %+v origin %d service %d state %v load %d", got.Tuple, got.Origin, got.Service, got.State(), b.load.Load())
	}
	// A's state changes reach B's copy.
	e.Update(conntrack.Reply, seg(conntrack.Reply, packet.TCPSyn|packet.TCPAck), now)
	e.Update(conntrack.Original, seg(conntrack.Original, packet.TCPAck), now)
	waitFor(t, "established on B", func() bool { return got.State() == conntrack.StateEstablished && got.Assured() })
	if st := b.n.Stats(); st.Installed != 1 || st.Updated < 1 {
		t.Fatalf("B: %+v", st)
	}
	// B's dump to A (it heard A's new epoch) may carry A's own flow back: A keeps its entry.
	if x, _ := a.tb.Lookup(&rec.Tuple[0], time.Now().UnixNano()); x != e || a.tb.Len() != 1 {
		t.Fatalf("A's own flow replaced: %p (len %d)", x, a.tb.Len())
	}

	// Forged: right shape, wrong key. Replayed: three copies of a datagram of A the spy
	// captured; the first copy is fresh if the original never reached B (sent before B was
	// listening): a sequence number is accepted once.
	spy.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, MaxDatagram)
	k, _, err := spy.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	captured := bytes.Clone(buf[:k])
	forged := NewEncoder(bytes.Repeat([]byte("z"), MinKeyLen)).Encode(Header{Node: 0, Epoch: a.n.epoch, Seq: 1 << 40}, []Record{testRecord(9)})
	for _, dg := range [][]byte{forged, captured, captured, captured} {
		if _, err := spy.WriteToUDPAddrPort(dg, pb); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "drops counted", func() bool {
		st := b.n.Stats()
		return st.Drops["auth"] == 1 && st.Drops["replay"] >= 2
	})
	if st := b.n.Stats(); st.Drops["replay"] > 3 {
		t.Fatalf("drops %v", st.Drops)
	}
	if forgedTuple := testRecord(9).Tuple[0]; b.tb.Len() != 1 {
		t.Fatalf("forged flow %v installed", forgedTuple)
	}
	if x, _ := b.tb.Lookup(&rec.Tuple[0], time.Now().UnixNano()); x != got {
		t.Fatal("the replay changed B's flow")
	}

	// A deletes the flow: B deletes its copy.
	a.tb.Delete(e)
	waitFor(t, "the delete on B", func() bool { return got.Removed() })
	if b.load.Load() != 0 || b.n.installed[0].Load() != 0 {
		t.Fatalf("after delete: load %d installed %d", b.load.Load(), b.n.installed[0].Load())
	}
}

// TestDumpToRestartedPeer: a node that starts after the flows were created (or restarts: a new
// epoch) gets every flow from its peers within about HelloInterval, its own old ones included:
// node B restarts, and A's copies of B's flows go back to it.
func TestDumpToRestartedPeer(t *testing.T) {
	ca, cb := listen(t), listen(t)
	pa, pb := addrOf(ca), addrOf(cb)
	a := startNode(t, 0, ca, pb)
	const flows = 100 // several datagrams
	now := time.Now().UnixNano()
	for i := range flows {
		r := testRecord(i)
		r.Tuple[0].SrcPort, r.Tuple[1].DstPort = uint16(20000+i), uint16(20000+i)
		e := &conntrack.Entry{Kind: 1, Tuple: r.Tuple}
		e.Init(&packet.Packet{Version: 4, Proto: 17, Src: r.Tuple[0].SrcAddr(), Dst: r.Tuple[0].DstAddr()}, now)
		e.Tuple[0].Proto, e.Tuple[1].Proto = 17, 17
		if _, err := a.tb.Insert(e, now); err != nil {
			t.Fatal(err)
		}
	}
	// A sends the flows as they are created, while B is not running: they are lost.
	waitFor(t, "A's flows sent", func() bool { return a.n.Stats().TxRecords >= flows })
	b := startNode(t, 1, cb, pa)
	waitFor(t, "the dump", func() bool { return b.tb.Len() == flows })
	if st := a.n.Stats(); st.Dumps != 1 {
		t.Fatalf("A: %+v", st)
	}
	// A restarts with an empty table (a new epoch): B gives A's flows back, marked as A's.
	a.n.Close()
	a2 := startNode(t, 0, mustRebind(t, pa), pb)
	waitFor(t, "A's flows back on A", func() bool { return a2.tb.Len() == flows })
	a2.tb.Range(func(e *conntrack.Entry) bool {
		if e.Origin != 1 {
			t.Fatalf("flow %v back with origin %d, want 1 (node 0)", e.Tuple[0], e.Origin)
		}
		return true
	})
}

// mustRebind opens a UDP socket on addr (free again after a node closed it).
func mustRebind(t *testing.T, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestUnknownSender: datagrams from an address that is no peer, or naming this node as
// sender, are dropped and counted.
func TestUnknownSender(t *testing.T) {
	ca := listen(t)
	pa := addrOf(ca)
	a := startNode(t, 0, ca, netip.MustParseAddrPort("198.18.0.9:4790"))
	stranger := listen(t)
	defer stranger.Close()
	dg := NewEncoder(testKey).Encode(Header{Node: 1, Epoch: 1, Seq: 1}, []Record{testRecord(1)})
	stranger.WriteToUDPAddrPort(dg, pa)
	waitFor(t, "the drop", func() bool { return a.n.Stats().Drops["unknown_peer"] == 1 })
	if a.tb.Len() != 0 {
		t.Fatal("a stranger's flow was installed")
	}
}

// TestQueue: concurrent producers and one consumer see every event once; a full queue
// refuses.
func TestQueue(t *testing.T) {
	q := newQueue()
	es := make([]conntrack.Entry, 4)
	const per = 50000
	done := make(chan struct{})
	for w := range es {
		go func() {
			for i := 0; i < per; {
				if q.push(&es[w], conntrack.EventInserted) {
					i++
				}
			}
			done <- struct{}{}
		}()
	}
	counts := map[*conntrack.Entry]int{}
	for n, finished := 0, 0; n < per*len(es); {
		if e, _, ok := q.pop(); ok {
			counts[e]++
			n++
		}
		select {
		case <-done:
			finished++
		default:
		}
	}
	for i := range es {
		if counts[&es[i]] != per {
			t.Fatalf("producer %d: %d events, want %d", i, counts[&es[i]], per)
		}
	}
	for i := range QueueLen {
		if !q.push(&es[0], conntrack.EventState) {
			t.Fatalf("full after %d", i)
		}
	}
	if q.push(&es[0], conntrack.EventState) {
		t.Fatal("push beyond QueueLen accepted")
	}
}

// TestPeerShare: a peer installs at most Cap/PeerShareDiv flows in this node's table; the rest
// are counted, and room frees up as the peer's flows go.
func TestPeerShare(t *testing.T) {
	cb, from := listen(t), listen(t)
	defer from.Close()
	b := startNodeCap(t, 1, cb, 16, addrOf(from))
	var recs []Record
	for i := range 12 {
		r := testRecord(i)
		r.Origin = 0
		recs = append(recs, r)
	}
	dg := NewEncoder(testKey).Encode(Header{Node: 0, Epoch: 1, Seq: 1}, recs)
	if _, err := from.WriteToUDPAddrPort(dg, addrOf(cb)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the records applied", func() bool { st := b.n.Stats(); return st.Installed+st.PeerLimit == 12 })
	if st := b.n.Stats(); st.Installed != 16/PeerShareDiv || b.tb.Len() != 16/PeerShareDiv {
		t.Fatalf("installed %d (table %d), want %d; %+v", st.Installed, b.tb.Len(), 16/PeerShareDiv, st)
	}
	// One of the peer's flows goes: one more fits.
	var gone *conntrack.Entry
	b.tb.Range(func(e *conntrack.Entry) bool { gone = e; return false })
	b.tb.Delete(gone)
	dg = NewEncoder(testKey).Encode(Header{Node: 0, Epoch: 1, Seq: 2}, recs)
	from.WriteToUDPAddrPort(dg, addrOf(cb))
	waitFor(t, "the second datagram applied", func() bool { st := b.n.Stats(); return st.RxRecords == 24 })
	if b.tb.Len() != 16/PeerShareDiv {
		t.Fatalf("table holds %d of the peer's flows, want %d", b.tb.Len(), 16/PeerShareDiv)
	}
}
