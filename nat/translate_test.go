package nat

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/internal/pkttest"
	"github.com/edgegate/edgegate/lb"
	"github.com/edgegate/edgegate/packet"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var (
	client  = netip.MustParseAddr("198.18.1.2")
	vip     = netip.MustParseAddr("198.18.200.10")
	masq    = netip.MustParseAddr("198.18.250.1")
	b1      = netip.MustParseAddr("198.19.1.2")
	b2      = netip.MustParseAddr("198.19.2.2")
	inet    = netip.MustParseAddr("198.51.100.100")
	pool    = netip.MustParseAddr("203.0.113.10")
	pod     = netip.MustParseAddr("198.18.65.2")
	client6 = netip.MustParseAddr("2001:db8:1::2")
	vip6    = netip.MustParseAddr("2001:db8:200::10")
	masq6   = netip.MustParseAddr("2001:db8:250::1")
	b6      = netip.MustParseAddr("2001:db8:19:1::2")
	router  = netip.MustParseAddr("198.18.3.1")
)

type fixture struct {
	tr    *Translator
	rules *Rules
	now   int64
}

func newFixture(t testing.TB, masquerade bool, sched string, backends ...netip.Addr) *fixture {
	t.Helper()
	var bs4, bs6 []lb.Backend
	for _, a := range backends {
		if a.Is4() {
			bs4 = append(bs4, lb.Backend{Addr: a, Weight: 1})
		} else {
			bs6 = append(bs6, lb.Backend{Addr: a, Weight: 1})
		}
	}
	svc := Service{ID: 7, Name: "web", Addrs: []netip.Addr{vip, vip6}, Masquerade: masquerade,
		Ports: []Port{{Name: "http", Proto: packet.ProtoTCP, Port: 80, TargetPort: 8080, NodePort: 30080}, {Name: "dns", Proto: packet.ProtoUDP, Port: 53, TargetPort: 53}}}
	var err error
	if len(bs4) > 0 {
		if svc.Set4, err = lb.Build(lb.Spec{Scheduler: sched, Backends: bs4}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if len(bs6) > 0 {
		if svc.Set6, err = lb.Build(lb.Spec{Scheduler: sched, Backends: bs6}, nil); err != nil {
			t.Fatal(err)
		}
	}
	rules := NewRules(Spec{
		Services:   []Service{svc},
		NodeAddrs:  []netip.Addr{netip.MustParseAddr("198.18.1.1")},
		Egress:     []Egress{{Name: "pods", Sources: []netip.Prefix{netip.MustParsePrefix("198.18.64.0/18")}, Pool: []netip.Addr{pool}}},
		Masquerade: []netip.Addr{masq, masq6},
		PortLo:     1024, PortHi: 65535,
		ProxyMSS: 1460, // tun.mtu 1500
	})
	return &fixture{tr: &Translator{CT: conntrack.New(conntrack.Config{MaxEntries: 1 << 16})}, rules: rules, now: 1e18}
}

// run translates b in place and returns the verdict, the reason and the parsed result.
func (f *fixture) run(t testing.TB, b []byte) (Verdict, Reason, *packet.Packet) {
	t.Helper()
	p := new(packet.Packet)
	if r := p.Parse(b); r != packet.OK {
		t.Fatalf("parse: %v", r)
	}
	v, why := f.tr.Translate(p, f.rules, f.now)
	return v, why, p
}

func TestServiceFlowTCP(t *testing.T) {
	for _, tc := range []struct {
		name              string
		masquerade        bool
		client, vip, back netip.Addr
		wantSrc           netip.Addr
	}{
		{"masquerade v4", true, client, vip, b1, masq},
		{"client ip v4", false, client, vip, b1, client},
		{"masquerade v6", true, client6, vip6, b6, masq6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.masquerade, "round_robin", b1, b6)
			syn := pkttest.P{Proto: packet.ProtoTCP, Src: tc.client, Dst: tc.vip, Sport: 40000, Dport: 80, Flags: "S"}.Build(t)
			v, why, p := f.run(t, syn)
			if v != Forward {
				t.Fatalf("SYN: verdict %v (%v)", v, why)
			}
			pkttest.Verify(t, syn)
			if p.Dst != tc.back || p.DstPort != 8080 || p.Src != tc.wantSrc {
				t.Fatalf("SYN translated to %v:%d -> %v:%d, want %v:* -> %v:8080", p.Src, p.SrcPort, p.Dst, p.DstPort, tc.wantSrc, tc.back)
			}
			if tc.masquerade && (p.SrcPort < 1024) {
				t.Fatalf("masquerade port %d outside range", p.SrcPort)
			}
			if !tc.masquerade && p.SrcPort != 40000 {
				t.Fatalf("client port changed to %d without masquerade", p.SrcPort)
			}
			// The backend's SYN-ACK comes back to the translated source.
			synack := pkttest.P{Proto: packet.ProtoTCP, Src: tc.back, Dst: p.Src, Sport: 8080, Dport: p.SrcPort, Flags: "SA", Payload: "hi"}.Build(t)
			v, why, r := f.run(t, synack)
			if v != Forward {
				t.Fatalf("SYN-ACK: verdict %v (%v)", v, why)
			}
			pkttest.Verify(t, synack)
			if r.Src != tc.vip || r.SrcPort != 80 || r.Dst != tc.client || r.DstPort != 40000 {
				t.Fatalf("reply translated to %v:%d -> %v:%d", r.Src, r.SrcPort, r.Dst, r.DstPort)
			}
			// The client's ACK completes the handshake; the flow is assured.
			ack := pkttest.P{Proto: packet.ProtoTCP, Src: tc.client, Dst: tc.vip, Sport: 40000, Dport: 80, Flags: "A"}.Build(t)
			if v, why, _ := f.run(t, ack); v != Forward {
				t.Fatalf("ACK: %v (%v)", v, why)
			}
			k := conntrack.MakeTuple(packet.ProtoTCP, tc.client, tc.vip, 40000, 80)
			e, _ := f.tr.CT.Lookup(&k, f.now)
			if e == nil || !e.Assured() || e.Service != 7 {
				t.Fatalf("entry %+v: want assured, service 7", e)
			}
		})
	}
}

func TestInvalidAndUnknown(t *testing.T) {
	f := newFixture(t, true, "round_robin", b1)
	for _, tc := range []struct {
		name string
		p    pkttest.P
		want Reason
	}{
		{"ACK without flow", pkttest.P{Proto: packet.ProtoTCP, Src: client, Dst: vip, Sport: 1, Dport: 80, Flags: "A"}, Invalid},
		{"RST without flow", pkttest.P{Proto: packet.ProtoTCP, Src: client, Dst: vip, Sport: 1, Dport: 80, Flags: "R"}, Invalid},
		{"no service port", pkttest.P{Proto: packet.ProtoTCP, Src: client, Dst: vip, Sport: 1, Dport: 81, Flags: "S"}, NoRule},
		{"no rule", pkttest.P{Proto: packet.ProtoUDP, Src: client, Dst: inet, Sport: 1, Dport: 53}, NoRule},
		{"no v6 backend", pkttest.P{Proto: packet.ProtoTCP, Src: client6, Dst: vip6, Sport: 1, Dport: 80, Flags: "S"}, NoBackend},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.p.Build(t)
			orig := append([]byte(nil), b...)
			v, why, _ := f.run(t, b)
			if v != Drop || why != tc.want {
				t.Fatalf("verdict %v %v, want drop %v", v, why, tc.want)
			}
			if string(b) != string(orig) {
				t.Fatal("a dropped packet was rewritten")
			}
		})
	}
}

func TestNodePortAndPing(t *testing.T) {
	f := newFixture(t, true, "round_robin", b1)
	b := pkttest.P{Proto: packet.ProtoTCP, Src: client, Dst: netip.MustParseAddr("198.18.1.1"), Sport: 5000, Dport: 30080, Flags: "S"}.Build(t)
	if v, why, p := f.run(t, b); v != Forward || p.Dst != b1 || p.DstPort != 8080 {
		t.Fatalf("node port: %v %v -> %v:%d", v, why, p.Dst, p.DstPort)
	}
	pkttest.Verify(t, b)
	echo := pkttest.P{Proto: packet.ProtoICMP, Src: client, Dst: vip, ICMPType: 8, Sport: 99}.Build(t)
	v, _, p := f.run(t, echo)
	if v != Local || p.Src != vip || p.Dst != client || p.ICMPType != 0 {
		t.Fatalf("ping VIP: %v, %v -> %v type %d", v, p.Src, p.Dst, p.ICMPType)
	}
	pkttest.Verify(t, echo)
}

func TestEgressUDPAndEcho(t *testing.T) {
	f := newFixture(t, true, "round_robin", b1)
	for _, csum0 := range []bool{false, true} {
		b := pkttest.P{Proto: packet.ProtoUDP, Src: pod, Dst: inet, Sport: 3333, Dport: 7000, UDPNoCsum: csum0, Payload: "q"}.Build(t)
		v, why, p := f.run(t, b)
		if v != Forward || p.Src != pool || p.Dst != inet || p.DstPort != 7000 {
			t.Fatalf("egress: %v %v -> %v:%d", v, why, p.Src, p.SrcPort)
		}
		pkttest.Verify(t, b)
		if csum0 && (b[26] != 0 || b[27] != 0) {
			t.Fatal("IPv4 UDP checksum 0 did not stay 0")
		}
		back := pkttest.P{Proto: packet.ProtoUDP, Src: inet, Dst: pool, Sport: 7000, Dport: p.SrcPort, Payload: "a"}.Build(t)
		if v, _, r := f.run(t, back); v != Forward || r.Dst != pod || r.DstPort != 3333 {
			t.Fatalf("egress reply: %v -> %v:%d", v, r.Dst, r.DstPort)
		}
		pkttest.Verify(t, back)
		f.tr.CT.DeleteMatching(conntrack.Filter{})
	}
	// ICMP echo: the identifier is translated and restored.
	req := pkttest.P{Proto: packet.ProtoICMP, Src: pod, Dst: inet, ICMPType: 8, Sport: 4242}.Build(t)
	v, _, p := f.run(t, req)
	if v != Forward || p.Src != pool {
		t.Fatalf("egress echo: %v from %v", v, p.Src)
	}
	pkttest.Verify(t, req)
	id := p.SrcPort
	rep := pkttest.P{Proto: packet.ProtoICMP, Src: inet, Dst: pool, ICMPType: 0, Dport: id}.Build(t)
	if v, _, r := f.run(t, rep); v != Forward || r.Dst != pod || r.DstPort != 4242 {
		t.Fatalf("echo reply: %v -> %v id %d", v, r.Dst, r.DstPort)
	}
	pkttest.Verify(t, rep)
}

// An ICMP "fragmentation needed" from a router toward the VIP, quoting a reply that went to the
// client, reaches the backend quoting the packet as the backend sent it.
func TestICMPErrorTranslation(t *testing.T) {
	f := newFixture(t, true, "round_robin", b1)
	syn := pkttest.P{Proto: packet.ProtoTCP, Src: client, Dst: vip, Sport: 40000, Dport: 80, Flags: "S"}.Build(t)
	_, _, p := f.run(t, syn)
	mport := p.SrcPort
	quoted := pkttest.P{Proto: packet.ProtoTCP, Src: vip, Dst: client, Sport: 80, Dport: 40000, Flags: "A", Payload: "data"}.Build(t)
	// Next-hop MTU 1280 sits where an echo's sequence number would.
	errPkt := pkttest.Serialize(t, pkttest.IPLayer(router, vip, layers.IPProtocolICMPv4), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 4), Seq: 1280}, gopacket.Payload(quoted[:28]))
	v, why, r := f.run(t, errPkt)
	if v != Forward {
		t.Fatalf("ICMP error: %v %v", v, why)
	}
	pkttest.Verify(t, errPkt)
	if r.Src != masq || r.Dst != b1 {
		t.Fatalf("outer %v -> %v, want %v -> %v", r.Src, r.Dst, masq, b1)
	}
	in, rr := r.Inner()
	if rr != packet.OK || in.Src != b1 || in.SrcPort != 8080 || in.Dst != masq || in.DstPort != mport {
		t.Fatalf("inner %v:%d -> %v:%d (%v), want %v:8080 -> %v:%d", in.Src, in.SrcPort, in.Dst, in.DstPort, rr, b1, masq, mport)
	}
	if c := packet.Checksum(in.B[:20], 0); c != 0xffff {
		t.Fatal("inner IPv4 header checksum invalid")
	}
	// An error quoting no known flow is dropped and counted.
	stray := pkttest.Serialize(t, pkttest.IPLayer(router, vip, layers.IPProtocolICMPv4), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 4)},
		gopacket.Payload(pkttest.P{Proto: packet.ProtoTCP, Src: vip, Dst: client, Sport: 80, Dport: 1, Flags: "A"}.Build(t)[:28]))
	if v, why, _ := f.run(t, stray); v != Drop || why != NoFlowICMP {
		t.Fatalf("stray ICMP error: %v %v", v, why)
	}
}

// Hairpin: a backend reaching its own service through the VIP is masqueraded even when the
// service keeps client addresses, or it would answer itself.
func TestHairpin(t *testing.T) {
	f := newFixture(t, false, "round_robin", b1)
	b := pkttest.P{Proto: packet.ProtoTCP, Src: b1, Dst: vip, Sport: 5555, Dport: 80, Flags: "S"}.Build(t)
	v, _, p := f.run(t, b)
	if v != Forward || p.Dst != b1 || p.Src != masq {
		t.Fatalf("hairpin: %v %v -> %v", v, p.Src, p.Dst)
	}
}

// Port exhaustion is counted and never a silent collision: with every port held by a flow that has
// seen replies, new flows are refused.
func TestPortExhaustion(t *testing.T) {
	f := newFixture(t, true, "round_robin", b1)
	f.rules.portLo, f.rules.portHi = 2000, 2003
	ports := map[uint16]bool{}
	exhausted := 0
	for i := 0; i < 12; i++ {
		b := pkttest.P{Proto: packet.ProtoUDP, Src: client, Dst: vip, Sport: uint16(10000 + i), Dport: 53}.Build(t)
		v, why, p := f.run(t, b)
		switch {
		case v == Forward:
			if ports[p.SrcPort] {
				t.Fatalf("port %d handed out twice", p.SrcPort)
			}
			ports[p.SrcPort] = true
			// The backend answers and the flow goes on past the stream delay: it is assured and
			// must not be taken over.
			f.run(t, pkttest.P{Proto: packet.ProtoUDP, Src: b1, Dst: masq, Sport: 53, Dport: p.SrcPort}.Build(t))
			f.now += int64(conntrack.UDPStreamDelay) + 1e7
			f.run(t, pkttest.P{Proto: packet.ProtoUDP, Src: client, Dst: vip, Sport: uint16(10000 + i), Dport: 53}.Build(t))
		case why == PortExhausted:
			exhausted++
		default:
			t.Fatalf("flow %d: %v %v", i, v, why)
		}
	}
	if len(ports) != 4 || exhausted != 8 {
		t.Fatalf("got %d ports and %d exhausted, want 4 and 8", len(ports), exhausted)
	}
}

// Under port pressure a flow that never saw a reply gives way to a new one.
func TestPortPressureEvictsUnreplied(t *testing.T) {
	f := newFixture(t, true, "round_robin", b1)
	f.rules.portLo, f.rules.portHi = 2000, 2003
	for i := 0; i < 12; i++ {
		b := pkttest.P{Proto: packet.ProtoUDP, Src: client, Dst: vip, Sport: uint16(10000 + i), Dport: 53}.Build(t)
		if v, why, _ := f.run(t, b); v != Forward {
			t.Fatalf("flow %d: %v %v, want an unreplied flow evicted", i, v, why)
		}
		if n := f.tr.CT.Len(); n > 4 {
			t.Fatalf("%d flows hold 4 ports", n)
		}
	}
}

// A service flow keeps the client's source port when it is free (netfilter's MASQUERADE default);
// egress flows always get a random one.
func TestSourcePortChoice(t *testing.T) {
	f := newFixture(t, true, "round_robin", b1)
	_, _, p := f.run(t, pkttest.P{Proto: packet.ProtoTCP, Src: client, Dst: vip, Sport: 40000, Dport: 80, Flags: "S"}.Build(t))
	if p.SrcPort != 40000 {
		t.Errorf("service flow: source port %d, want the client's 40000 kept", p.SrcPort)
	}
	// Another client with the same port gets a different one.
	other := netip.MustParseAddr("198.18.1.3")
	_, _, p = f.run(t, pkttest.P{Proto: packet.ProtoTCP, Src: other, Dst: vip, Sport: 40000, Dport: 80, Flags: "S"}.Build(t))
	if p.SrcPort == 40000 {
		t.Error("second client got the same masquerade port toward the same backend")
	}
	same := 0
	for i := 0; i < 20; i++ {
		_, _, p := f.run(t, pkttest.P{Proto: packet.ProtoUDP, Src: pod, Dst: inet, Sport: uint16(5000 + i), Dport: 7000}.Build(t))
		if p.SrcPort == uint16(5000+i) {
			same++
		}
	}
	if same > 2 {
		t.Errorf("egress kept the source port %d times of 20: want random ports", same)
	}
}

// Two packets of one new UDP flow handled at once end as one entry with one backend (the
// Kubernetes DNS conntrack race).
func TestInsertRaceOneBackend(t *testing.T) {
	for round := 0; round < 50; round++ {
		f := newFixture(t, true, "random", b1, b2)
		const n = 16
		pkts := make([][]byte, n)
		for i := range pkts {
			pkts[i] = pkttest.P{Proto: packet.ProtoUDP, Src: client, Dst: vip, Sport: 7777, Dport: 53}.Build(t)
		}
		var wg sync.WaitGroup
		res := make([]netip.AddrPort, n)
		start := make(chan struct{})
		for i := range pkts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				var p packet.Packet
				p.Parse(pkts[i])
				if v, why := f.tr.Translate(&p, f.rules, f.now); v != Forward {
					t.Errorf("verdict %v %v", v, why)
				}
				res[i] = netip.AddrPortFrom(p.Dst, p.SrcPort)
			}()
		}
		close(start)
		wg.Wait()
		for i := range res {
			if res[i] != res[0] {
				t.Fatalf("round %d: packet %d went to %v, packet 0 to %v", round, i, res[i], res[0])
			}
		}
		if l := f.tr.CT.Len(); l != 1 {
			t.Fatalf("round %d: %d entries, want 1", round, l)
		}
	}
}

func TestLoadCountsFlows(t *testing.T) {
	f := newFixture(t, true, "least_conn", b1, b2)
	for i := 0; i < 10; i++ {
		b := pkttest.P{Proto: packet.ProtoTCP, Src: client, Dst: vip, Sport: uint16(20000 + i), Dport: 80, Flags: "S"}.Build(t)
		f.run(t, b)
	}
	total := int64(0)
	for _, b := range f.rules.services[0].Set4.Backends() {
		n := b.Active.Load()
		if n != 5 {
			t.Errorf("backend %v has %d active flows, want 5 (least_conn)", b.Addr, n)
		}
		total += n
	}
	f.tr.CT.DeleteMatching(conntrack.Filter{})
	for _, b := range f.rules.services[0].Set4.Backends() {
		if n := b.Active.Load(); n != 0 {
			t.Errorf("after delete backend %v has %d active flows", b.Addr, n)
		}
	}
}

func newTable(max int) *conntrack.Table { return conntrack.New(conntrack.Config{MaxEntries: max}) }

// FuzzTranslate feeds arbitrary packets through the translator with live flows in the table: it
// must never panic, and a forwarded packet whose input checksums were valid still verifies.
func FuzzTranslate(f *testing.F) {
	seeds := []pkttest.P{
		{Proto: packet.ProtoTCP, Src: client, Dst: vip, Sport: 40000, Dport: 80, Flags: "S"},
		{Proto: packet.ProtoTCP, Src: b1, Dst: masq, Sport: 8080, Dport: 2000, Flags: "SA"},
		{Proto: packet.ProtoUDP, Src: pod, Dst: inet, Sport: 3333, Dport: 7000, Payload: "x"},
		{Proto: packet.ProtoICMP, Src: client, Dst: vip, ICMPType: 8, Sport: 5},
		{Proto: packet.ProtoTCP, Src: client6, Dst: vip6, Sport: 1, Dport: 80, Flags: "S"},
		{Proto: packet.ProtoTCP, Src: client, Dst: vip, Sport: 40001, Dport: 80, Flags: "A", Payload: "mid"},
		{Proto: packet.ProtoTCP, Src: b1, Dst: client, Sport: 8080, Dport: 40001, Flags: "A", Payload: "mid"},
	}
	for _, s := range seeds {
		f.Add(s.Build(f))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fx := newFixture(t, true, "round_robin", b1, b6)
		// A live flow for replies and ICMP errors to match.
		fx.run(t, pkttest.P{Proto: packet.ProtoTCP, Src: client, Dst: vip, Sport: 40000, Dport: 80, Flags: "S"}.Build(t))
		var p packet.Packet
		in := append([]byte(nil), b...)
		if p.Parse(in) != packet.OK {
			return
		}
		valid := pkttest.ChecksumsValid(in[:len(p.B)])
		v, _ := fx.tr.Translate(&p, fx.rules, fx.now)
		if v != Drop && valid && !pkttest.ChecksumsValid(p.B) {
			t.Fatalf("valid packet %x translated to invalid %x", b, p.B)
		}
		// Again through a gateway that picks up mid-stream flows (client IP kept, maglev).
		loose := newFixture(t, false, "maglev", b1, b2, b6).loose()
		in = append(in[:0], b...)
		if p.Parse(in) != packet.OK {
			t.Fatalf("%x parsed once, not twice", b)
		}
		if v, _ := loose.tr.Translate(&p, loose.rules, loose.now); v != Drop && valid && !pkttest.ChecksumsValid(p.B) {
			t.Fatalf("valid packet %x translated to invalid %x (tcp_loose)", b, p.B)
		}
	})
}

// A SYN reusing the ports of a connection in TIME_WAIT starts a new flow that follows the current
// rules: here the old flow's backend has been drained in the meantime.
func TestReopenPicksCurrentBackend(t *testing.T) {
	f := newFixture(t, true, "round_robin", b1)
	c := func(flags string) *packet.Packet {
		_, _, p := f.run(t, pkttest.P{Proto: packet.ProtoTCP, Src: client, Dst: vip, Sport: 40000, Dport: 80, Flags: flags}.Build(t))
		return p
	}
	s := func(flags string, mport uint16) {
		f.run(t, pkttest.P{Proto: packet.ProtoTCP, Src: b1, Dst: masq, Sport: 8080, Dport: mport, Flags: flags}.Build(t))
	}
	mport := c("S").SrcPort
	s("SA", mport)
	c("A")
	s("FA", mport)
	c("FA")
	s("A", mport)
	k := conntrack.MakeTuple(packet.ProtoTCP, client, vip, 40000, 80)
	if e, _ := f.tr.CT.Lookup(&k, f.now); e == nil || e.State() != conntrack.StateTimeWait {
		t.Fatalf("flow not in TIME_WAIT: %+v", e)
	}
	// b1 drains, b2 joins.
	set, err := lb.Build(lb.Spec{Scheduler: "round_robin", Backends: []lb.Backend{{Addr: b1, Weight: 1, State: lb.Draining}, {Addr: b2, Weight: 1}}}, f.rules.services[0].Set4)
	if err != nil {
		t.Fatal(err)
	}
	f.rules.services[0].Set4 = set
	if p := c("S"); p.Dst != b2 {
		t.Fatalf("reopened connection went to %v, want the live backend %v", p.Dst, b2)
	}
}

// With the refuse policy a service without eligible backends answers at once: TCP with a reset,
// UDP with an ICMP port unreachable; without it the packet is dropped.
func TestRefuseWhenEmpty(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		f := newFixture(t, true, "round_robin", b1)
		set, _ := lb.Build(lb.Spec{Scheduler: "round_robin", Backends: []lb.Backend{{Addr: b1, Weight: 1, State: lb.Unhealthy}}}, nil)
		f.rules.services[0].Set4 = set
		f.rules.services[0].RefuseWhenEmpty = refuse
		for _, in := range []pkttest.P{
			{Proto: packet.ProtoTCP, Src: client, Dst: vip, Sport: 40000, Dport: 80, Flags: "S"},
			{Proto: packet.ProtoUDP, Src: client, Dst: vip, Sport: 40000, Dport: 53, Payload: "q"},
		} {
			b := make([]byte, 0, 1500)
			b = append(b, in.Build(t)...)
			var p packet.Packet
			p.Parse(b)
			v, why := f.tr.Translate(&p, f.rules, f.now)
			if why != NoBackend {
				t.Fatalf("refuse=%v proto %d: reason %v", refuse, in.Proto, why)
			}
			if !refuse {
				if v != Drop {
					t.Fatalf("no refuse policy: verdict %v, want drop", v)
				}
				continue
			}
			if v != Local || p.Dst != client || p.Src != vip {
				t.Fatalf("refusal %v: %v -> %v", v, p.Src, p.Dst)
			}
			pkttest.Verify(t, p.B)
			if in.Proto == packet.ProtoTCP && p.TCPFlags&packet.TCPRst == 0 {
				t.Fatal("TCP refusal is not a reset")
			}
			if in.Proto == packet.ProtoUDP && (!p.IsICMPError || p.ICMPType != 3 || p.ICMPCode != 3) {
				t.Fatalf("UDP refusal type %d code %d", p.ICMPType, p.ICMPCode)
			}
		}
	}
}

// TestBlindResetAndHijack: two spoofed packets with the client's port (an RST with a guessed
// sequence number, then a SYN) neither close the connection nor move it to another backend;
// the RST is dropped and counted, the SYN forwarded to the same backend (which answers it with a
// challenge ACK). An in-window RST still closes the flow, and only then does a SYN start a new
// flow on the next backend.
func TestBlindResetAndHijack(t *testing.T) {
	f := newFixture(t, true, "round_robin", b1, b2)
	const cISN, sISN = 1_000_000, 7_000_000
	tcp := func(flags string, seq, ack uint32) []byte {
		return pkttest.P{Proto: packet.ProtoTCP, Src: client, Dst: vip, Sport: 40000, Dport: 80, Flags: flags, Seq: seq, Ack: ack}.Build(t)
	}
	_, _, p := f.run(t, tcp("S", cISN, 0))
	backend, mport := p.Dst, p.SrcPort
	if v, why, _ := f.run(t, pkttest.P{Proto: packet.ProtoTCP, Src: backend, Dst: masq, Sport: 8080, Dport: mport, Flags: "SA", Seq: sISN, Ack: cISN + 1}.Build(t)); v != Forward {
		t.Fatalf("syn-ack: %v %v", v, why)
	}
	if v, why, _ := f.run(t, tcp("A", cISN+1, sISN+1)); v != Forward {
		t.Fatalf("ack: %v %v", v, why)
	}
	// The attacker guesses the port but not the sequence number.
	if v, why, _ := f.run(t, tcp("R", cISN+1+50_000_000, 0)); v != Drop || why != InvalidWindow {
		t.Fatalf("blind rst: %v %v, want drop invalid_window", v, why)
	}
	if st := f.tr.CT.Stats(); st.InvalidWindow != 1 {
		t.Fatalf("invalid_window %d, want 1", st.InvalidWindow)
	}
	v, why, p := f.run(t, tcp("S", cISN+12345, 0))
	if v != Forward || p.Dst != backend || p.SrcPort != mport {
		t.Fatalf("spoofed syn: %v %v to %v:%d, want forwarded to the flow's backend %v:%d", v, why, p.Dst, p.SrcPort, backend, mport)
	}
	k := conntrack.MakeTuple(packet.ProtoTCP, client, vip, 40000, 80)
	if e, _ := f.tr.CT.Lookup(&k, f.now); e == nil || e.State() != conntrack.StateEstablished {
		t.Fatalf("flow after the attack: %v", e)
	}
	// The client's own reset (exact sequence number) closes it; a new SYN then is a new flow.
	if v, why, _ := f.run(t, tcp("R", cISN+1, 0)); v != Forward {
		t.Fatalf("genuine rst: %v %v", v, why)
	}
	if e, _ := f.tr.CT.Lookup(&k, f.now); e == nil || e.State() != conntrack.StateClose {
		t.Fatalf("flow after the genuine rst: %v", e)
	}
	if _, _, p := f.run(t, tcp("S", cISN+99999, 0)); p.Dst == backend {
		t.Fatalf("new connection after close went to the same backend %v under round robin", backend)
	}
}

// TestPortPressureBoundedWork counts the work one new flow causes when the masquerade port range
// is full: at most portTries insert attempts, at most portEvictions evictions, an eviction only
// of the flow holding the port taken (the retry reuses it), and never an early drop of an
// unrelated flow for an insert that cannot succeed.
func TestPortPressureBoundedWork(t *testing.T) {
	udp := func(src netip.Addr, sport uint16) []byte {
		return pkttest.P{Proto: packet.ProtoUDP, Src: src, Dst: vip, Sport: sport, Dport: 53}.Build(t)
	}
	other := netip.MustParseAddr("198.18.1.3")
	t.Run("unreplied holders", func(t *testing.T) {
		f := newFixture(t, true, "round_robin", b1)
		f.rules.portLo, f.rules.portHi = 2000, 2003
		held := map[uint16]bool{}
		for i := range 4 {
			_, _, p := f.run(t, udp(client, uint16(10000+i)))
			held[p.SrcPort] = true
		}
		before := f.tr.CT.Stats()
		v, why, p := f.run(t, udp(other, 10000))
		st := f.tr.CT.Stats()
		attempts, evicted := st.ReplyTaken-before.ReplyTaken+1, st.Deleted-before.Deleted
		if v != Forward || !held[p.SrcPort] || attempts > portTries || evicted != 1 || st.EarlyDrops != 0 {
			t.Fatalf("%v %v on port %d: %d attempts, %d evicted, %d early drops; want one eviction of a holder", v, why, p.SrcPort, attempts, evicted, st.EarlyDrops)
		}
		// The three other holders are untouched.
		for port := range held {
			k := conntrack.MakeTuple(packet.ProtoUDP, b1, masq, 53, port)
			if e, _ := f.tr.CT.Lookup(&k, f.now); e == nil || (port != p.SrcPort) != (e.Tuple[conntrack.Original].SrcAddr() == client) {
				t.Fatalf("port %d: holder %v", port, e)
			}
		}
	})
	t.Run("assured holders, full table", func(t *testing.T) {
		f := newFixture(t, true, "round_robin", b1)
		f.tr.CT = conntrack.New(conntrack.Config{MaxEntries: 8})
		f.rules.portLo, f.rules.portHi = 2000, 2003
		for i := range 4 { // four service flows, assured: they hold the four masquerade ports
			_, _, p := f.run(t, udp(client, uint16(10000+i)))
			f.run(t, pkttest.P{Proto: packet.ProtoUDP, Src: b1, Dst: masq, Sport: 53, Dport: p.SrcPort}.Build(t))
		}
		f.now += int64(conntrack.UDPStreamDelay) + 1e7
		for i := range 4 {
			f.run(t, udp(client, uint16(10000+i)))
		}
		for i := range 4 { // four unassured egress flows (another address): the table is full
			if v, why, _ := f.run(t, pkttest.P{Proto: packet.ProtoUDP, Src: pod, Dst: inet, Sport: uint16(5000 + i), Dport: 7000}.Build(t)); v != Forward {
				t.Fatalf("egress flow %d: %v %v", i, v, why)
			}
		}
		if n := f.tr.CT.Len(); n != 8 {
			t.Fatalf("table holds %d flows, want a full 8", n)
		}
		before := f.tr.CT.Stats()
		v, why, _ := f.run(t, udp(other, 10000))
		st := f.tr.CT.Stats()
		if v != Drop || why != PortExhausted || st.ReplyTaken-before.ReplyTaken != portTries ||
			st.Deleted != before.Deleted || st.EarlyDrops != before.EarlyDrops || f.tr.CT.Len() != 8 {
			t.Fatalf("%v %v: %d attempts, %d deleted, %d early drops; want port_exhausted after %d attempts, nothing evicted",
				v, why, st.ReplyTaken-before.ReplyTaken, st.Deleted-before.Deleted, st.EarlyDrops-before.EarlyDrops, portTries)
		}
	})
}

// TestICMPRateLimit: echo replies and port unreachable answers share one token bucket of
// ICMPBurst answers refilled at ICMPRatePerSec, like the kernel's icmp_msgs_per_sec; the rest are
// dropped as ICMPRateLimited. TCP resets are not ICMP and are not limited.
func TestICMPRateLimit(t *testing.T) {
	f := newFixture(t, true, "round_robin", b1)
	set, _ := lb.Build(lb.Spec{Scheduler: "round_robin", Backends: []lb.Backend{{Addr: b1, Weight: 1, State: lb.Unhealthy}}}, nil)
	f.rules.services[0].Set4 = set
	f.rules.services[0].RefuseWhenEmpty = true
	ask := func(i int) (Verdict, Reason) {
		in := pkttest.P{Proto: packet.ProtoICMP, Src: client, Dst: vip, ICMPType: 8, Sport: uint16(i)}
		if i%2 == 1 {
			in = pkttest.P{Proto: packet.ProtoUDP, Src: client, Dst: vip, Sport: uint16(10000 + i), Dport: 53, Payload: "q"}
		}
		b := make([]byte, 0, 1500)
		b = append(b, in.Build(t)...)
		var p packet.Packet
		p.Parse(b)
		return f.tr.Translate(&p, f.rules, f.now)
	}
	answered, limited := 0, 0
	for i := range 3 * ICMPBurst {
		switch v, why := ask(i); {
		case v == Local:
			answered++
		case v == Drop && why == ICMPRateLimited:
			limited++
		default:
			t.Fatalf("request %d: %v %v", i, v, why)
		}
	}
	if answered != ICMPBurst || limited != 2*ICMPBurst {
		t.Fatalf("burst: %d answered, %d limited; want %d and %d", answered, limited, ICMPBurst, 2*ICMPBurst)
	}
	// The bucket refills at ICMPRatePerSec: 10 intervals later, 10 more answers.
	f.now += 10 * int64(time.Second) / ICMPRatePerSec
	answered = 0
	for i := range 20 {
		if v, _ := ask(i); v == Local {
			answered++
		}
	}
	if answered != 10 {
		t.Fatalf("after 10 intervals: %d answered, want 10", answered)
	}
	// TCP refusals (resets) are not ICMP: not limited.
	b := make([]byte, 0, 1500)
	b = append(b, pkttest.P{Proto: packet.ProtoTCP, Src: client, Dst: vip, Sport: 40000, Dport: 80, Flags: "S"}.Build(t)...)
	var p packet.Packet
	p.Parse(b)
	if v, why := f.tr.Translate(&p, f.rules, f.now); v != Local || why != NoBackend {
		t.Fatalf("tcp refusal with an empty ICMP bucket: %v %v", v, why)
	}
}
