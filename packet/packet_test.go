package packet

import (
	"encoding/binary"
	"net/netip"
	"reflect"
	"testing"
)

func TestParseValid(t *testing.T) {
	pl := []byte("hello, edgegate!!") // odd length on purpose
	tests := []struct {
		name  string
		in    pk
		trail int // junk bytes appended after the IP packet (must be cut)
		want  Packet
	}{
		{"v4 tcp syn", pk{src: c4, dst: s4, proto: ProtoTCP, sport: 40000, dport: 80, flags: TCPSyn, payload: pl},
			0, Packet{Version: 4, Proto: ProtoTCP, L4Off: 20, Src: c4, Dst: s4, SrcPort: 40000, DstPort: 80, TCPFlags: TCPSyn, PayloadLen: len(pl)}},
		{"v4 tcp options+trailer", pk{src: c4, dst: s4, proto: ProtoTCP, sport: 1, dport: 2, flags: TCPAck | TCPPsh, opts: true, payload: pl},
			7, Packet{Version: 4, Proto: ProtoTCP, L4Off: 28, Src: c4, Dst: s4, SrcPort: 1, DstPort: 2, TCPFlags: TCPAck | TCPPsh, PayloadLen: len(pl)}},
		{"v4 udp", pk{src: c4, dst: s4, proto: ProtoUDP, sport: 5353, dport: 53, payload: pl},
			0, Packet{Version: 4, Proto: ProtoUDP, L4Off: 20, Src: c4, Dst: s4, SrcPort: 5353, DstPort: 53, PayloadLen: len(pl)}},
		{"v4 udp csum 0", pk{src: c4, dst: s4, proto: ProtoUDP, sport: 5353, dport: 53, udpNoCsum: true},
			0, Packet{Version: 4, Proto: ProtoUDP, L4Off: 20, Src: c4, Dst: s4, SrcPort: 5353, DstPort: 53}},
		{"v4 echo request", pk{src: c4, dst: s4, proto: ProtoICMP, icmpType: ICMPv4EchoRequest, id: 77, seq: 1, payload: pl},
			0, Packet{Version: 4, Proto: ProtoICMP, L4Off: 20, Src: c4, Dst: s4, SrcPort: 77, ICMPType: 8, PayloadLen: len(pl)}},
		{"v4 echo reply", pk{src: s4, dst: c4, proto: ProtoICMP, icmpType: ICMPv4EchoReply, id: 77, seq: 1},
			0, Packet{Version: 4, Proto: ProtoICMP, L4Off: 20, Src: s4, Dst: c4, DstPort: 77}},
		{"v4 first fragment", pk{src: c4, dst: s4, proto: ProtoUDP, sport: 9, dport: 10, payload: pl, fragMF: true},
			0, Packet{Version: 4, Proto: ProtoUDP, L4Off: 20, Src: c4, Dst: s4, SrcPort: 9, DstPort: 10, PayloadLen: len(pl), IsFragment: true}},
		{"v6 tcp", pk{src: c6, dst: s6, proto: ProtoTCP, sport: 40000, dport: 443, flags: TCPSyn | TCPAck, payload: pl},
			3, Packet{Version: 6, Proto: ProtoTCP, L4Off: 40, Src: c6, Dst: s6, SrcPort: 40000, DstPort: 443, TCPFlags: TCPSyn | TCPAck, PayloadLen: len(pl)}},
		{"v6 udp", pk{src: c6, dst: s6, proto: ProtoUDP, sport: 1000, dport: 2000, payload: pl},
			0, Packet{Version: 6, Proto: ProtoUDP, L4Off: 40, Src: c6, Dst: s6, SrcPort: 1000, DstPort: 2000, PayloadLen: len(pl)}},
		{"v6 echo request", pk{src: c6, dst: s6, proto: ProtoICMPv6, icmpType: ICMPv6EchoRequest, id: 5, seq: 9, payload: pl},
			0, Packet{Version: 6, Proto: ProtoICMPv6, L4Off: 40, Src: c6, Dst: s6, SrcPort: 5, ICMPType: 128, PayloadLen: len(pl)}},
		{"v6 echo reply", pk{src: s6, dst: c6, proto: ProtoICMPv6, icmpType: ICMPv6EchoReply, id: 5, seq: 9},
			0, Packet{Version: 6, Proto: ProtoICMPv6, L4Off: 40, Src: s6, Dst: c6, DstPort: 5, ICMPType: 129}},
		{"v6 ext chain", pk{src: c6, dst: s6, proto: ProtoTCP, sport: 1, dport: 2, exts: []ext{hbh(), dsto(), rt0(), dsto()}},
			0, Packet{Version: 6, Proto: ProtoTCP, L4Off: 40 + 8 + 16 + 8 + 16, Src: c6, Dst: s6, SrcPort: 1, DstPort: 2}},
		{"v6 first fragment", pk{src: c6, dst: s6, proto: ProtoUDP, sport: 1, dport: 2, exts: []ext{hbh(), frag(0, true)}, payload: pl},
			0, Packet{Version: 6, Proto: ProtoUDP, L4Off: 56, Src: c6, Dst: s6, SrcPort: 1, DstPort: 2, PayloadLen: len(pl), IsFragment: true}},
		{"v6 atomic fragment", pk{src: c6, dst: s6, proto: ProtoUDP, sport: 1, dport: 2, exts: []ext{frag(0, false)}, payload: pl},
			0, Packet{Version: 6, Proto: ProtoUDP, L4Off: 48, Src: c6, Dst: s6, SrcPort: 1, DstPort: 2, PayloadLen: len(pl)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := build(t, tt.in)
			n := len(b)
			b = append(b, make([]byte, tt.trail)...)
			var p Packet
			if r := p.Parse(b); r != OK {
				t.Fatalf("Parse = %v", r)
			}
			if len(p.B) != n || &p.B[0] != &b[0] {
				t.Fatalf("B: len %d (want %d), aliases input: %v", len(p.B), n, &p.B[0] == &b[0])
			}
			got := p
			got.B = nil
			if got.Proto == ProtoTCP { // the builder's fixed numbers (see build)
				tt.want.Seq, tt.want.Ack, tt.want.Window = 0x01020304, 0x05060708, 29200
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
			if pay := p.Payload(); string(pay) != string(tt.in.payload) {
				t.Fatalf("Payload = %q, want %q", pay, tt.in.payload)
			}
		})
	}
}

func TestViews(t *testing.T) {
	b := build(t, pk{src: c4, dst: s4, proto: ProtoTCP, sport: 40000, dport: 80, flags: TCPSyn, opts: true})
	p := mustParse(t, b)
	ip := p.IPv4()
	if ip.Version() != 4 || ip.HeaderLen() != 28 || len(ip.Options()) != 8 || ip.TTL() != 64 || !ip.DontFragment() ||
		ip.MoreFragments() || ip.FragmentOffset() != 0 || ip.ID() != 0x1234 || ip.Protocol() != ProtoTCP ||
		ip.Src() != c4 || ip.Dst() != s4 || int(ip.TotalLen()) != len(b) || !ip.HeaderChecksumOK() {
		t.Fatalf("ipv4 view wrong: % x", ip)
	}
	ip.SetTTL(3)
	if ip.TTL() != 3 {
		t.Fatal("SetTTL")
	}
	verifyChecksums(t, b)
	tcp := p.TCP()
	if tcp.SrcPort() != 40000 || tcp.DstPort() != 80 || tcp.Seq() != 0x01020304 || tcp.Ack() != 0x05060708 ||
		tcp.Window() != 29200 || tcp.DataOffset() != 24 || tcp.Flags() != TCPSyn || len(tcp.Options()) != 4 {
		t.Fatalf("tcp view wrong: % x", tcp)
	}
	if p.IPv6() != nil || p.UDP() != nil || p.ICMP() != nil {
		t.Fatal("views of other headers must be nil")
	}

	b = build(t, pk{src: c6, dst: s6, proto: ProtoUDP, sport: 7, dport: 8, payload: []byte{1, 2, 3}})
	p = mustParse(t, b)
	ip6 := p.IPv6()
	if ip6.Version() != 6 || ip6.FlowLabel() != 0x12345 || ip6.HopLimit() != 64 || Proto(ip6.NextHeader()) != ProtoUDP ||
		ip6.Src() != c6 || ip6.Dst() != s6 || int(ip6.PayloadLen()) != len(b)-40 || ip6.TrafficClass() != 0 {
		t.Fatalf("ipv6 view wrong: % x", ip6)
	}
	u := p.UDP()
	if u.SrcPort() != 7 || u.DstPort() != 8 || u.Length() != 11 || u.Checksum() == 0 {
		t.Fatalf("udp view wrong: % x", u)
	}

	b = buildICMPError(t, r6, m6, ICMPv6PacketTooBig, 0, 1280, build(t, pk{src: m6, dst: b6, proto: ProtoUDP, sport: 1, dport: 2}))
	p = mustParse(t, b)
	ic := p.ICMP()
	if ic.Type() != ICMPv6PacketTooBig || ic.MTU() != 1280 || !p.IsICMPError || len(ic.Payload()) != 48 {
		t.Fatalf("icmp view wrong: % x", ic)
	}
	b = buildICMPError(t, r4, m4, ICMPv4DestUnreach, ICMPv4FragNeededCode, 1400, build(t, pk{src: m4, dst: b4, proto: ProtoUDP, sport: 1, dport: 2}))
	p = mustParse(t, b)
	if ic := p.ICMP(); ic.NextHopMTU() != 1400 || ic.Code() != 4 || ic.Pointer(false) != 0 {
		t.Fatalf("icmp frag-needed view wrong: % x", ic)
	}
}

// corrupt returns a modified copy of a freshly built packet.
func corrupt(tb testing.TB, p pk, f func(b []byte) []byte) []byte {
	return f(build(tb, p))
}

func TestParseRefused(t *testing.T) {
	v4tcp := pk{src: c4, dst: s4, proto: ProtoTCP, sport: 1, dport: 2, payload: []byte("abcd")}
	v6udp := pk{src: c6, dst: s6, proto: ProtoUDP, sport: 1, dport: 2, payload: []byte("abcd")}
	set16 := func(off int, v uint16) func([]byte) []byte {
		return func(b []byte) []byte { binary.BigEndian.PutUint16(b[off:], v); return b }
	}
	tests := []struct {
		name string
		b    []byte
		want Reason
	}{
		{"empty", nil, ErrShort},
		{"v4 short", corrupt(t, v4tcp, func(b []byte) []byte { return b[:19] }), ErrShort},
		{"v6 short", corrupt(t, v6udp, func(b []byte) []byte { return b[:39] }), ErrShort},
		{"version 5", corrupt(t, v4tcp, func(b []byte) []byte { b[0] = 0x55; return b }), ErrBadVersion},
		{"version 0", []byte{0}, ErrBadVersion},
		{"ihl 4", corrupt(t, v4tcp, func(b []byte) []byte { b[0] = 0x44; return b }), ErrBadIHL},
		{"ihl beyond total", corrupt(t, v4tcp, func(b []byte) []byte { b[0] = 0x4f; return b }), ErrBadIHL},
		{"v4 total > buffer", corrupt(t, v4tcp, func(b []byte) []byte { return b[:len(b)-1] }), ErrBadTotalLen},
		{"v4 total < 20", corrupt(t, v4tcp, set16(2, 19)), ErrBadTotalLen},
		{"v6 payload > buffer", corrupt(t, v6udp, func(b []byte) []byte { return b[:len(b)-1] }), ErrBadTotalLen},
		{"v6 payload 0 (jumbo)", corrupt(t, v6udp, set16(4, 0)), ErrBadTotalLen},
		{"v6 hbh not first", build(t, pk{src: c6, dst: s6, proto: ProtoUDP, sport: 1, dport: 2, exts: []ext{dsto(), hbh()}}), ErrBadExtHeader},
		{"v6 ext beyond packet", corrupt(t, pk{src: c6, dst: s6, proto: ProtoUDP, sport: 1, dport: 2, exts: []ext{dsto()}},
			func(b []byte) []byte { b[41] = 200; return b }), ErrBadExtHeader},
		{"v6 ext header cut", corrupt(t, v6udp, func(b []byte) []byte {
			b[6] = 60 // claims dest-opts, 4 bytes left after the header
			binary.BigEndian.PutUint16(b[4:], 4)
			return b[:44]
		}), ErrBadExtHeader},
		{"v6 routing header with segments left", build(t, pk{src: c6, dst: s6, proto: ProtoUDP, sport: 1, dport: 2,
			exts: []ext{{43, []byte{0, 2, 0, 1, 0, 0, 0, 0, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9}}}}), ErrBadExtHeader},
		{"v6 two fragment headers", build(t, pk{src: c6, dst: s6, proto: ProtoUDP, sport: 1, dport: 2, exts: []ext{frag(0, true), frag(0, true)}}), ErrBadExtHeader},
		{"v4 unsupported proto (GRE)", corrupt(t, v4tcp, func(b []byte) []byte { b[9] = 47; return b }), ErrUnsupportedProto},
		{"v4 carrying icmpv6", corrupt(t, v4tcp, func(b []byte) []byte { b[9] = uint8(ProtoICMPv6); return b }), ErrUnsupportedProto},
		{"v6 carrying icmpv4", corrupt(t, v6udp, func(b []byte) []byte { b[6] = uint8(ProtoICMP); return b }), ErrUnsupportedProto},
		{"v6 esp", corrupt(t, v6udp, func(b []byte) []byte { b[6] = 50; return b }), ErrUnsupportedProto},
		{"v6 no next header", build(t, pk{src: c6, dst: s6, proto: 59, exts: []ext{dsto()}}), ErrUnsupportedProto},
		{"v4 tcp cut", corrupt(t, v4tcp, func(b []byte) []byte { b = b[:39]; binary.BigEndian.PutUint16(b[2:], 39); return b }), ErrTruncatedL4},
		{"v4 tcp doff 4", corrupt(t, v4tcp, func(b []byte) []byte { b[32] = 0x40; return b }), ErrTruncatedL4},
		{"v4 tcp doff beyond", corrupt(t, v4tcp, func(b []byte) []byte { b[32] = 0xf0; return b }), ErrTruncatedL4},
		{"v6 udp cut", corrupt(t, v6udp, func(b []byte) []byte { b = b[:47]; binary.BigEndian.PutUint16(b[4:], 7); return b }), ErrTruncatedL4},
		{"v6 udp length > payload", corrupt(t, v6udp, set16(44, 13)), ErrTruncatedL4},
		{"v6 udp length < 8", corrupt(t, v6udp, set16(44, 7)), ErrTruncatedL4},
		{"v4 icmp cut", corrupt(t, pk{src: c4, dst: s4, proto: ProtoICMP, icmpType: 8}, func(b []byte) []byte {
			b = b[:27]
			binary.BigEndian.PutUint16(b[2:], 27)
			return b
		}), ErrTruncatedL4},
		{"v4 first fragment without full tcp header", corrupt(t, v4tcp, func(b []byte) []byte {
			b = b[:32]
			binary.BigEndian.PutUint16(b[2:], 32)
			b[6] |= 0x20
			return b
		}), ErrTruncatedL4},
		{"v4 non-first fragment", corrupt(t, v4tcp, set16(6, 0x2001)), ErrFragment},
		{"v4 last fragment", corrupt(t, v4tcp, set16(6, 0x00b9)), ErrFragment},
		{"v6 non-first fragment", build(t, pk{src: c6, dst: s6, proto: ProtoUDP, sport: 1, dport: 2, exts: []ext{frag(185, true)}}), ErrFragment},
		{"v6 mapped src", build(t, pk{src: netip.MustParseAddr("::ffff:198.51.100.1"), dst: s6, proto: ProtoUDP, sport: 1, dport: 2}), ErrBadAddr},
		{"v6 mapped dst", build(t, pk{src: c6, dst: netip.MustParseAddr("::ffff:203.0.113.1"), proto: ProtoUDP, sport: 1, dport: 2}), ErrBadAddr},
	}
	seen := make(map[Reason]bool)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Packet
			if r := p.Parse(tt.b); r != tt.want {
				t.Fatalf("Parse = %v, want %v", r, tt.want)
			}
		})
		seen[tt.want] = true
	}
	for r := ErrShort; r < NumReasons; r++ {
		if !seen[r] {
			t.Errorf("no refusal case for %v", r)
		}
	}
}

func TestReasonString(t *testing.T) {
	names := map[string]bool{}
	for r := OK; r < NumReasons; r++ {
		s := r.String()
		if s == "" || s == "unknown" || names[s] {
			t.Fatalf("Reason(%d).String() = %q: empty, unknown or duplicate", r, s)
		}
		names[s] = true
	}
	if ErrTruncatedL4.String() != "truncated_l4" || NumReasons.String() != "unknown" {
		t.Fatal("labels changed")
	}
}

func TestTCPWindowScale(t *testing.T) {
	hdr := func(opts ...byte) TCP {
		h := make([]byte, TCPMinLen+len(opts))
		h[12] = byte(len(h)/4) << 4
		copy(h[TCPMinLen:], opts)
		return TCP(h)
	}
	for _, tc := range []struct {
		name  string
		h     TCP
		shift uint8
		ok    bool
	}{
		{"none", hdr(), 0, false},
		{"mss, nop, wscale 7", hdr(2, 4, 5, 0xb4, 1, 3, 3, 7), 7, true},
		{"capped at 14", hdr(3, 3, 15, 0), 14, true},
		{"end of list first", hdr(0, 3, 3, 7), 0, false},
		{"zero length option", hdr(8, 0, 3, 3, 7, 0, 0, 0), 0, false},
		{"option past the header", hdr(1, 1, 3, 9), 0, false},
		{"bad wscale length", hdr(3, 4, 7, 0), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if shift, ok := tc.h.WindowScale(); shift != tc.shift || ok != tc.ok {
				t.Fatalf("WindowScale = %d, %v; want %d, %v", shift, ok, tc.shift, tc.ok)
			}
		})
	}
	var p Packet
	b := build(t, pk{src: c4, dst: s4, proto: ProtoTCP, sport: 1, dport: 2, flags: TCPSyn | TCPAck})
	if p.Parse(b) != OK || p.Seq != 0x01020304 || p.Ack != 0x05060708 || p.Window != 29200 {
		t.Fatalf("seq %#x ack %#x window %d", p.Seq, p.Ack, p.Window)
	}
}
