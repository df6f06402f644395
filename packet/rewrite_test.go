package packet

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// l4csOff returns the offset of the L4 checksum field of a parsed packet.
func l4csOff(p *Packet) int {
	switch p.Proto {
	case ProtoTCP:
		return p.L4Off + 16
	case ProtoUDP:
		return p.L4Off + 6
	}
	return p.L4Off + 2
}

// toPartial turns a complete packet into what a TUN delivers with CHECKSUM_PARTIAL: the L4
// checksum field holds the folded, non-inverted pseudo-header sum (ICMPv4 has none: 0).
func toPartial(tb testing.TB, b []byte) {
	p := mustParse(tb, b)
	var s uint16
	if p.Proto != ProtoICMP {
		s = naiveFold(naivePseudo(p.Proto, p.Src, p.Dst, len(p.B)-p.L4Off))
	}
	binary.BigEndian.PutUint16(b[l4csOff(p):], s)
}

// finish completes a CHECKSUM_PARTIAL packet as the kernel does: sum from csum_start
// (the L4 header) to the end with the field as it is, invert, store.
func finish(tb testing.TB, b []byte) {
	p := mustParse(tb, b)
	cs := ^naiveFold(naiveSum(b[p.L4Off:], 0))
	if cs == 0 && p.Proto == ProtoUDP {
		cs = 0xffff
	}
	binary.BigEndian.PutUint16(b[l4csOff(p):], cs)
}

func TestRewrite(t *testing.T) {
	pl := []byte("some payload, odd")
	tests := []struct {
		name         string
		in           pk
		src, dst     netip.Addr
		sport, dport uint16
		want         pk
		noPartial    bool
	}{
		{"v4 tcp", pk{src: c4, dst: s4, proto: ProtoTCP, sport: 40000, dport: 80, flags: TCPSyn, payload: pl},
			m4, b4, 61000, 8080, pk{src: m4, dst: b4, proto: ProtoTCP, sport: 61000, dport: 8080, flags: TCPSyn, payload: pl}, false},
		{"v4 tcp options", pk{src: c4, dst: s4, proto: ProtoTCP, sport: 40000, dport: 80, flags: TCPAck, opts: true, payload: pl},
			m4, b4, 40000, 80, pk{src: m4, dst: b4, proto: ProtoTCP, sport: 40000, dport: 80, flags: TCPAck, opts: true, payload: pl}, false},
		{"v4 udp", pk{src: c4, dst: s4, proto: ProtoUDP, sport: 5353, dport: 53, payload: pl},
			m4, b4, 1024, 5300, pk{src: m4, dst: b4, proto: ProtoUDP, sport: 1024, dport: 5300, payload: pl}, false},
		{"v4 udp csum 0 stays 0", pk{src: c4, dst: s4, proto: ProtoUDP, sport: 5353, dport: 53, payload: pl, udpNoCsum: true},
			m4, b4, 1024, 5300, pk{src: m4, dst: b4, proto: ProtoUDP, sport: 1024, dport: 5300, payload: pl, udpNoCsum: true}, true},
		{"v4 echo request", pk{src: c4, dst: s4, proto: ProtoICMP, icmpType: 8, id: 100, seq: 7, payload: pl},
			m4, b4, 4242, 999, pk{src: m4, dst: b4, proto: ProtoICMP, icmpType: 8, id: 4242, seq: 7, payload: pl}, false},
		{"v4 echo reply", pk{src: b4, dst: m4, proto: ProtoICMP, icmpType: 0, id: 4242, seq: 7, payload: pl},
			s4, c4, 999, 100, pk{src: s4, dst: c4, proto: ProtoICMP, icmpType: 0, id: 100, seq: 7, payload: pl}, false},
		{"v4 first fragment", pk{src: c4, dst: s4, proto: ProtoUDP, sport: 5353, dport: 53, payload: pl, fragMF: true},
			m4, b4, 1024, 5300, pk{src: m4, dst: b4, proto: ProtoUDP, sport: 1024, dport: 5300, payload: pl, fragMF: true}, true},
		{"v6 tcp", pk{src: c6, dst: s6, proto: ProtoTCP, sport: 40000, dport: 443, flags: TCPSyn, opts: true, payload: pl},
			m6, b6, 61000, 8443, pk{src: m6, dst: b6, proto: ProtoTCP, sport: 61000, dport: 8443, flags: TCPSyn, opts: true, payload: pl}, false},
		{"v6 udp", pk{src: c6, dst: s6, proto: ProtoUDP, sport: 5353, dport: 53, payload: pl},
			m6, b6, 1024, 5300, pk{src: m6, dst: b6, proto: ProtoUDP, sport: 1024, dport: 5300, payload: pl}, false},
		{"v6 udp ext headers", pk{src: c6, dst: s6, proto: ProtoUDP, sport: 5353, dport: 53, payload: pl, exts: []ext{hbh(), rt0(), dsto()}},
			m6, b6, 1024, 5300, pk{src: m6, dst: b6, proto: ProtoUDP, sport: 1024, dport: 5300, payload: pl, exts: []ext{hbh(), rt0(), dsto()}}, false},
		{"v6 tcp first fragment", pk{src: c6, dst: s6, proto: ProtoTCP, sport: 1, dport: 2, payload: pl, exts: []ext{frag(0, true)}},
			m6, b6, 3, 4, pk{src: m6, dst: b6, proto: ProtoTCP, sport: 3, dport: 4, payload: pl, exts: []ext{frag(0, true)}}, true},
		{"v6 echo request", pk{src: c6, dst: s6, proto: ProtoICMPv6, icmpType: 128, id: 100, seq: 7, payload: pl},
			m6, b6, 4242, 999, pk{src: m6, dst: b6, proto: ProtoICMPv6, icmpType: 128, id: 4242, seq: 7, payload: pl}, false},
		{"v6 echo reply", pk{src: b6, dst: m6, proto: ProtoICMPv6, icmpType: 129, id: 4242, seq: 7, payload: pl},
			s6, c6, 999, 100, pk{src: s6, dst: c6, proto: ProtoICMPv6, icmpType: 129, id: 100, seq: 7, payload: pl}, false},
	}
	for _, tt := range tests {
		for _, partial := range []bool{false, true} {
			if partial && tt.noPartial {
				continue
			}
			name := tt.name
			if partial {
				name += " partial"
			}
			t.Run(name, func(t *testing.T) {
				b := build(t, tt.in)
				want := build(t, tt.want)
				if partial {
					toPartial(t, b)
				}
				p := mustParse(t, b)
				p.PartialCsum = partial
				p.SetSrc(tt.src, tt.sport)
				p.SetDst(tt.dst, tt.dport)
				if partial {
					var ps uint16
					if p.Proto != ProtoICMP {
						ps = naiveFold(naivePseudo(p.Proto, tt.src, tt.dst, len(b)-p.L4Off))
					}
					if got := binary.BigEndian.Uint16(b[l4csOff(p):]); got != ps {
						t.Fatalf("partial field = %#04x, want new pseudo-header sum %#04x", got, ps)
					}
					finish(t, b)
				}
				equalBytes(t, b, want)
				if !tt.in.fragMF && !hasFrag(tt.in.exts) {
					verifyChecksums(t, b)
				}
				// The view's fields follow the rewrite.
				q := mustParse(t, b)
				if p.Src != q.Src || p.Dst != q.Dst || p.SrcPort != q.SrcPort || p.DstPort != q.DstPort {
					t.Fatalf("fields after rewrite %v:%d > %v:%d, reparsed %v:%d > %v:%d",
						p.Src, p.SrcPort, p.Dst, p.DstPort, q.Src, q.SrcPort, q.Dst, q.DstPort)
				}
			})
		}
	}
}

func hasFrag(es []ext) bool {
	for _, e := range es {
		if e.typ == 44 {
			return true
		}
	}
	return false
}

// TestRewriteUDPZeroResult drives the incremental update to a computed checksum of 0,
// which UDP must send as 0xffff (0 would mean "no checksum", forbidden over IPv6).
func TestRewriteUDPZeroResult(t *testing.T) {
	for _, fam := range []struct{ c, s, m, b netip.Addr }{{c4, s4, m4, b4}, {c6, s6, m6, b6}} {
		// Payload word W chosen so that the translated packet's sum is 0xffff: W = ~S0.
		out := pk{src: fam.m, dst: fam.b, proto: ProtoUDP, sport: 1000, dport: 2000, payload: make([]byte, 2)}
		ob := build(t, out)
		c0 := binary.BigEndian.Uint16(ob[len(ob)-8-2+6:])
		if c0 == 0xffff { // gopacket output was already the special case: S0 == 0
			c0 = 0
		}
		binary.BigEndian.PutUint16(out.payload, c0)
		want := build(t, out)
		if cs := binary.BigEndian.Uint16(want[len(want)-10+6:]); cs != 0xffff {
			t.Fatalf("%v: test setup: checksum %#04x, want the 0xffff case", fam.c, cs)
		}
		b := build(t, pk{src: fam.c, dst: fam.s, proto: ProtoUDP, sport: 5, dport: 6, payload: out.payload})
		p := mustParse(t, b)
		p.SetSrc(fam.m, 1000)
		p.SetDst(fam.b, 2000)
		equalBytes(t, b, want)
		verifyChecksums(t, b)
	}
}

// TestRewriteWrongFamily: an address of the other family must leave the packet alone.
func TestRewriteWrongFamily(t *testing.T) {
	b := build(t, pk{src: c4, dst: s4, proto: ProtoTCP, sport: 1, dport: 2})
	orig := append([]byte(nil), b...)
	p := mustParse(t, b)
	p.SetSrc(m6, 3)
	p.PartialCsum = true
	p.SetDst(netip.Addr{}, 4)
	equalBytes(t, b, orig)
	if p.Src != c4 || p.SrcPort != 1 {
		t.Fatal("fields changed")
	}
	// IPv4-mapped IPv6 is accepted for an IPv4 packet and stored unmapped.
	p.PartialCsum = false
	p.SetSrc(netip.AddrFrom16(m4.As16()), 3)
	if p.Src != m4 || p.SrcPort != 3 {
		t.Fatalf("mapped src: %v:%d", p.Src, p.SrcPort)
	}
	verifyChecksums(t, b)

	b = build(t, pk{src: c6, dst: s6, proto: ProtoUDP, sport: 1, dport: 2})
	orig = append([]byte(nil), b...)
	p = mustParse(t, b)
	p.SetDst(netip.AddrFrom16(m4.As16()), 3) // mapped into a v6 header: refused
	p.SetSrc(m4, 3)
	equalBytes(t, b, orig)
}

func TestMakeEchoReply(t *testing.T) {
	pl := []byte("ping payload")
	for _, tc := range []struct {
		c, s     netip.Addr
		proto    Proto
		req, rep uint8
	}{{c4, s4, ProtoICMP, 8, 0}, {c6, s6, ProtoICMPv6, 128, 129}} {
		b := build(t, pk{src: tc.c, dst: tc.s, proto: tc.proto, icmpType: tc.req, id: 33, seq: 44, payload: pl})
		if tc.proto == ProtoICMP {
			IPv4(b).SetTTL(3)
		} else {
			b[7] = 3
		}
		p := mustParse(t, b)
		p.MakeEchoReply()
		equalBytes(t, b, build(t, pk{src: tc.s, dst: tc.c, proto: tc.proto, icmpType: tc.rep, id: 33, seq: 44, payload: pl}))
		verifyChecksums(t, b)
		if p.Src != tc.s || p.Dst != tc.c || p.SrcPort != 0 || p.DstPort != 33 || p.ICMPType != tc.rep {
			t.Fatalf("fields: %+v", p)
		}
		// A reply is not turned into anything else.
		orig := append([]byte(nil), b...)
		p.MakeEchoReply()
		equalBytes(t, b, orig)
	}
}

func TestZeroAlloc(t *testing.T) {
	b := build(t, pk{src: c4, dst: s4, proto: ProtoTCP, sport: 1, dport: 2, payload: make([]byte, 100)})
	e := buildICMPError(t, r4, m4, ICMPv4TimeExceeded, 0, 0, build(t, pk{src: m4, dst: b4, proto: ProtoUDP, sport: 1, dport: 2})[:28])
	var p Packet
	n := testing.AllocsPerRun(100, func() {
		p.Parse(b)
		p.SetSrc(m4, 3)
		p.PartialCsum = true
		p.SetDst(b4, 4)
		p.Parse(e)
		in, _ := p.Inner()
		p.SetInner(&in, netip.AddrPortFrom(c4, 5), netip.AddrPortFrom(s4, 6))
	})
	if n != 0 {
		t.Fatalf("%v allocations per packet, want 0", n)
	}
}

// TestRewriteUnparsed: rewriting a Packet that did not parse (or a literal) must neither
// panic nor change bytes outside what it can account for.
func TestRewriteUnparsed(t *testing.T) {
	var zero Packet
	zero.SetSrc(c4, 1)
	zero.PartialCsum = true
	zero.SetDst(c6, 1)
	zero.MakeEchoReply()
	zero.SetInner(&Packet{}, netip.AddrPortFrom(c4, 1), netip.AddrPortFrom(s4, 1))
	if _, r := zero.Inner(); r == OK {
		t.Fatal("Inner of zero Packet OK")
	}
	b := build(t, pk{src: c4, dst: s4, proto: ProtoTCP, sport: 1, dport: 2})
	b[9] = 47 // GRE: refused
	orig := append([]byte(nil), b...)
	var p Packet
	if p.Parse(b) != ErrUnsupportedProto {
		t.Fatal("setup")
	}
	p.SetSrc(m4, 1)
	p.SetDst(m4, 1)
	p.MakeEchoReply()
	equalBytes(t, b, orig)
	lit := Packet{B: b[:30], Version: 4, Proto: ProtoTCP, L4Off: 24, IsICMPError: true}
	lit.SetSrc(m4, 1)
	in, _ := lit.Inner()
	lit.SetInner(&in, netip.AddrPortFrom(m4, 1), netip.AddrPortFrom(m4, 1))
	equalBytes(t, b, orig)
}
