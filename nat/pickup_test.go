package nat

import (
	"net/netip"
	"testing"

	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/internal/pkttest"
	"github.com/edgegate/edgegate/lb"
	"github.com/edgegate/edgegate/packet"
)

// loose turns conntrack.tcp_loose on in f's rules (before any packet).
func (f *fixture) loose() *fixture {
	f.rules.tcpLoose = true
	return f
}

// hop is one translated packet as its receiver sees it.
type hop struct {
	src, dst     netip.Addr
	sport, dport uint16
}

// openFlow runs a handshake and a data segment from client:sport to dst:80 through f and
// returns how the data segment reached the backend.
func openFlow(t *testing.T, f *fixture, client, dst netip.Addr, sport uint16) hop {
	t.Helper()
	syn := pkttest.P{Proto: packet.ProtoTCP, Src: client, Dst: dst, Sport: sport, Dport: 80, Flags: "S"}.Build(t)
	v, why, p := f.run(t, syn)
	if v != Forward {
		t.Fatalf("SYN: %v %v", v, why)
	}
	out := hop{p.Src, p.Dst, p.SrcPort, p.DstPort}
	synack := pkttest.P{Proto: packet.ProtoTCP, Src: out.dst, Dst: out.src, Sport: out.dport, Dport: out.sport, Flags: "SA"}.Build(t)
	if v, why, _ := f.run(t, synack); v != Forward {
		t.Fatalf("SYN-ACK: %v %v", v, why)
	}
	return out
}

// TestPickUpAfterRestart: a flow's mid-stream segment reaching a gateway that lost its table
// (a new Translator and freshly built rules, as after a crash) is translated exactly as before
// when the translation can be rebuilt, and dropped with NoPickUp when not.
func TestPickUpAfterRestart(t *testing.T) {
	backends := []netip.Addr{b1, b2, netip.MustParseAddr("198.19.3.2"), netip.MustParseAddr("198.19.4.2"), b6}
	tests := []struct {
		name         string
		masquerade   bool
		sched        string
		affinity     bool
		client, vip  netip.Addr
		sport        uint16
		loose        bool
		want         Reason
		collideAfter bool // another flow takes the masquerade port after the restart
	}{
		{"maglev masquerade", true, lb.SchedMaglev, false, client, vip, 40000, true, OK, false},
		{"maglev client ip", false, lb.SchedMaglev, false, client, vip, 40001, true, OK, false},
		{"maglev v6", true, lb.SchedMaglev, false, client6, vip6, 40002, true, OK, false},
		{"source_hash affinity", true, lb.SchedSourceHash, true, client, vip, 40003, true, OK, false},
		{"client ip, low port", false, lb.SchedMaglev, false, client, vip, 999, true, OK, false},
		{"masquerade, port outside range", true, lb.SchedMaglev, false, client, vip, 999, true, NoPickUp, false},
		{"masquerade port taken", true, lb.SchedMaglev, false, client, vip, 40004, true, NoPickUp, true},
		{"round robin", true, lb.SchedRoundRobin, false, client, vip, 40005, true, NoPickUp, false},
		{"least conn", true, lb.SchedLeastConn, false, client, vip, 40006, true, NoPickUp, false},
		{"maglev affinity", true, lb.SchedMaglev, true, client, vip, 40007, true, NoPickUp, false},
		{"tcp_loose off", true, lb.SchedMaglev, false, client, vip, 40008, false, Invalid, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mk := func() *fixture {
				f := newFixture(t, tc.masquerade, tc.sched, backends...)
				if tc.affinity {
					withAffinity(t, f, tc.sched, backends)
				}
				if tc.loose {
					f.loose()
				}
				return f
			}
			before := mk()
			if tc.want == NoPickUp && tc.masquerade && tc.sport < 1024 {
				before.rules.portLo = 1024 // the lost flow drew a random port
			}
			first := openFlow(t, before, tc.client, tc.vip, tc.sport)

			after := mk() // the restarted gateway: empty table, rules built anew
			if tc.collideAfter {
				// Another client's established flow to the same backend now holds the
				// masquerade address and port (an unreplied one would be evicted).
				other := tc.client
				for taken := false; !taken; {
					other = other.Next()
					taken = openFlow(t, after, other, tc.vip, first.sport) == first
				}
				after.run(t, pkttest.P{Proto: packet.ProtoTCP, Src: other, Dst: tc.vip, Sport: first.sport, Dport: 80, Flags: "A"}.Build(t))
			}
			data := pkttest.P{Proto: packet.ProtoTCP, Src: tc.client, Dst: tc.vip, Sport: tc.sport, Dport: 80, Flags: "A", Payload: "more"}.Build(t)
			orig := append([]byte(nil), data...)
			v, why, p := after.run(t, data)
			if tc.want != OK {
				if v != Drop || why != tc.want {
					t.Fatalf("mid-stream segment: %v %v, want drop %v", v, why, tc.want)
				}
				if string(data) != string(orig) {
					t.Fatal("a dropped packet was rewritten")
				}
				return
			}
			if v != Forward {
				t.Fatalf("mid-stream segment: %v %v", v, why)
			}
			pkttest.Verify(t, data)
			if got := (hop{p.Src, p.Dst, p.SrcPort, p.DstPort}); got != first {
				t.Fatalf("picked up as %+v, the flow was %+v", got, first)
			}
			// The backend's answer goes back to the client from the service address.
			ack := pkttest.P{Proto: packet.ProtoTCP, Src: first.dst, Dst: first.src, Sport: first.dport, Dport: first.sport, Flags: "A", Payload: "ok"}.Build(t)
			v, why, r := after.run(t, ack)
			if v != Forward || r.Src != tc.vip || r.SrcPort != 80 || r.Dst != tc.client || r.DstPort != tc.sport {
				t.Fatalf("reply: %v %v, %v:%d -> %v:%d", v, why, r.Src, r.SrcPort, r.Dst, r.DstPort)
			}
			pkttest.Verify(t, ack)
			if _, _, _ = after.run(t, pkttest.P{Proto: packet.ProtoTCP, Src: tc.client, Dst: tc.vip, Sport: tc.sport, Dport: 80, Flags: "A"}.Build(t)); true {
				k := conntrack.MakeTuple(packet.ProtoTCP, tc.client, tc.vip, tc.sport, 80)
				if e, _ := after.tr.CT.Lookup(&k, after.now); e == nil || !e.Assured() || e.State() != conntrack.StateEstablished {
					t.Fatalf("picked-up flow not assured and established after both sides spoke: %+v", e)
				}
			}
		})
	}
}

// withAffinity rebuilds f's sets with client-IP affinity.
func withAffinity(t *testing.T, f *fixture, sched string, backends []netip.Addr) {
	t.Helper()
	var bs []lb.Backend
	for _, a := range backends {
		if a.Is4() {
			bs = append(bs, lb.Backend{Addr: a, Weight: 1})
		}
	}
	set, err := lb.Build(lb.Spec{Scheduler: sched, Backends: bs, Affinity: 3600e9}, nil)
	if err != nil {
		t.Fatal(err)
	}
	svcs := append([]Service(nil), f.rules.services...)
	svcs[0].Set4 = set
	r := NewRules(Spec{Services: svcs, NodeAddrs: []netip.Addr{netip.MustParseAddr("198.18.1.1")}, Masquerade: []netip.Addr{masq, masq6}, PortLo: 1024, PortHi: 65535})
	*f.rules = *r
}

// TestPickUpOtherSegments: only mid-stream ACK segments are picked up; stray segments of flows
// no service explains are counted, not forwarded.
func TestPickUpOtherSegments(t *testing.T) {
	f := newFixture(t, true, lb.SchedMaglev, b1, b2).loose()
	for _, tc := range []struct {
		name string
		p    pkttest.P
		want Reason
	}{
		{"FIN", pkttest.P{Proto: packet.ProtoTCP, Src: client, Dst: vip, Sport: 5000, Dport: 80, Flags: "FA"}, Invalid},
		{"RST", pkttest.P{Proto: packet.ProtoTCP, Src: client, Dst: vip, Sport: 5000, Dport: 80, Flags: "RA"}, Invalid},
		{"SYN-ACK", pkttest.P{Proto: packet.ProtoTCP, Src: client, Dst: vip, Sport: 5000, Dport: 80, Flags: "SA"}, Invalid},
		{"egress ACK", pkttest.P{Proto: packet.ProtoTCP, Src: pod, Dst: inet, Sport: 5000, Dport: 443, Flags: "A"}, NoPickUp},
		{"reply to a masquerade address", pkttest.P{Proto: packet.ProtoTCP, Src: b1, Dst: masq, Sport: 8080, Dport: 40000, Flags: "A"}, NoPickUp},
		{"no such service port", pkttest.P{Proto: packet.ProtoTCP, Src: client, Dst: vip, Sport: 5000, Dport: 81, Flags: "A"}, NoPickUp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, why, _ := f.run(t, tc.p.Build(t))
			if v != Drop || why != tc.want {
				t.Fatalf("%v %v, want drop %v", v, why, tc.want)
			}
		})
	}
	if n := f.tr.CT.Len(); n != 0 {
		t.Fatalf("%d flows created by refused segments", n)
	}
}

// TestPickUpReply: a backend's segment to a client of a client-IP-preserving service, met
// before any packet of the client, is rebuilt when exactly one service port explains it.
func TestPickUpReply(t *testing.T) {
	backends := []netip.Addr{b1, b2, netip.MustParseAddr("198.19.3.2"), netip.MustParseAddr("198.19.4.2")}
	before := newFixture(t, false, lb.SchedMaglev, backends...).loose()
	// The reply could belong to a flow to the service address or to its node port: take a
	// client port for which the two choose different backends, and a third backend that
	// neither would choose.
	set := before.rules.services[0].Set4
	nodeAddr := netip.MustParseAddr("198.18.1.1")
	choice := func(dst netip.Addr, sport, dport uint16) netip.Addr {
		b, _ := set.Recompute(client, lb.FlowHash(uint8(packet.ProtoTCP), client, dst, sport, dport))
		return b.Addr
	}
	sport := uint16(41000)
	for choice(vip, sport, 80) == choice(nodeAddr, sport, 30080) {
		sport++
	}
	var wrong netip.Addr
	for _, b := range backends {
		if b != choice(vip, sport, 80) && b != choice(nodeAddr, sport, 30080) {
			wrong = b
		}
	}
	first := openFlow(t, before, client, vip, sport)
	after := newFixture(t, false, lb.SchedMaglev, backends...).loose()

	// A backend the hash does not choose for this flow is not believed.
	bad := pkttest.P{Proto: packet.ProtoTCP, Src: wrong, Dst: client, Sport: 8080, Dport: sport, Flags: "A", Payload: "x"}.Build(t)
	if v, why, _ := after.run(t, bad); v != Drop || why != NoPickUp {
		t.Fatalf("reply from the wrong backend: %v %v", v, why)
	}

	push := pkttest.P{Proto: packet.ProtoTCP, Src: first.dst, Dst: client, Sport: 8080, Dport: sport, Flags: "A", Payload: "push"}.Build(t)
	v, why, p := after.run(t, push)
	if v != Forward || p.Src != vip || p.SrcPort != 80 || p.Dst != client || p.DstPort != sport {
		t.Fatalf("server push: %v %v, %v:%d -> %v:%d", v, why, p.Src, p.SrcPort, p.Dst, p.DstPort)
	}
	pkttest.Verify(t, push)
	ack := pkttest.P{Proto: packet.ProtoTCP, Src: client, Dst: vip, Sport: sport, Dport: 80, Flags: "A"}.Build(t)
	if v, why, p := after.run(t, ack); v != Forward || p.Dst != first.dst || p.DstPort != 8080 || p.Src != client {
		t.Fatalf("client's ACK: %v %v -> %v:%d", v, why, p.Dst, p.DstPort)
	}
	k := conntrack.MakeTuple(packet.ProtoTCP, client, vip, sport, 80)
	if e, _ := after.tr.CT.Lookup(&k, after.now); e == nil || !e.Assured() {
		t.Fatalf("flow not assured once the client answered: %+v", e)
	}

	// UDP: the backend's datagram to the client is rebuilt the same way.
	dns := pkttest.P{Proto: packet.ProtoUDP, Src: first.dst, Dst: client, Sport: 53, Dport: 5353, Payload: "a"}.Build(t)
	before2 := newFixture(t, false, lb.SchedMaglev, backends...)
	q := pkttest.P{Proto: packet.ProtoUDP, Src: client, Dst: vip, Sport: 5353, Dport: 53, Payload: "q"}.Build(t)
	_, _, qp := before2.run(t, q)
	dns = pkttest.P{Proto: packet.ProtoUDP, Src: qp.Dst, Dst: client, Sport: 53, Dport: 5353, Payload: "a"}.Build(t)
	if v, why, r := after.run(t, dns); v != Forward || r.Src != vip || r.SrcPort != 53 {
		t.Fatalf("UDP reply: %v %v from %v:%d", v, why, r.Src, r.SrcPort)
	}
}

// TestPickUpReplyAmbiguous: two services whose translation both explain a backend's segment:
// nothing is guessed.
func TestPickUpReplyAmbiguous(t *testing.T) {
	f := newFixture(t, false, lb.SchedMaglev, b1).loose()
	svcs := append([]Service(nil), f.rules.services...)
	second := svcs[0]
	second.ID, second.Name, second.Addrs = 8, "web2", []netip.Addr{netip.MustParseAddr("198.18.200.11")}
	svcs = append(svcs, second)
	*f.rules = *NewRules(Spec{Services: svcs, Masquerade: []netip.Addr{masq}, PortLo: 1024, PortHi: 65535, TCPLoose: true})
	b := pkttest.P{Proto: packet.ProtoTCP, Src: b1, Dst: client, Sport: 8080, Dport: 42000, Flags: "A", Payload: "x"}.Build(t)
	if v, why, _ := f.run(t, b); v != Drop || why != NoPickUp {
		t.Fatalf("ambiguous reply: %v %v, want drop %v", v, why, NoPickUp)
	}
}
