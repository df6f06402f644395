package packet

import (
	"bytes"
	"net/netip"
	"testing"
)

type errKind struct {
	name      string
	typ, code uint8
	rest      uint32
}

var (
	v4Errors = []errKind{
		{"port unreachable", ICMPv4DestUnreach, 3, 0},
		{"frag needed", ICMPv4DestUnreach, ICMPv4FragNeededCode, 1400},
		{"time exceeded", ICMPv4TimeExceeded, 0, 0},
		{"parameter problem", ICMPv4ParamProblem, 0, 8 << 24},
	}
	v6Errors = []errKind{
		{"dest unreachable", ICMPv6DestUnreach, 4, 0},
		{"packet too big", ICMPv6PacketTooBig, 0, 1280},
		{"time exceeded", ICMPv6TimeExceeded, 0, 0},
		{"parameter problem", ICMPv6ParamProblem, 0, 7},
	}
)

// TestICMPErrorReverseNAT plays the NAT's part for an ICMP error about a translated flow
// (RFC 5508): the error from router R to the masquerade address M quotes M:mp > B:bp; the
// result must be the error R > C quoting C:cp > S:sp, byte for byte as gopacket builds it.
func TestICMPErrorReverseNAT(t *testing.T) {
	pl := []byte("0123456789abcdefXYZ")
	type fam struct {
		c, s, m, b, r netip.Addr
		icmp          Proto
		echoReq       uint8
		kinds         []errKind
	}
	fams := []fam{
		{c4, s4, m4, b4, r4, ProtoICMP, ICMPv4EchoRequest, v4Errors},
		{c6, s6, m6, b6, r6, ProtoICMPv6, ICMPv6EchoRequest, v6Errors},
	}
	for _, f := range fams {
		inners := []struct {
			name   string
			orig   pk // as seen behind the NAT: M > B
			want   pk // as the client sent it: C > S
			mp, cp uint16
			noFull bool
		}{
			{"tcp", pk{src: f.m, dst: f.b, proto: ProtoTCP, sport: 61000, dport: 8080, flags: TCPSyn, payload: pl},
				pk{src: f.c, dst: f.s, proto: ProtoTCP, sport: 40000, dport: 80, flags: TCPSyn, payload: pl}, 61000, 40000, false},
			{"udp", pk{src: f.m, dst: f.b, proto: ProtoUDP, sport: 61000, dport: 5300, payload: pl},
				pk{src: f.c, dst: f.s, proto: ProtoUDP, sport: 40000, dport: 5301, payload: pl}, 61000, 40000, false},
			{"echo", pk{src: f.m, dst: f.b, proto: f.icmp, icmpType: f.echoReq, id: 3000, seq: 5, payload: pl},
				pk{src: f.c, dst: f.s, proto: f.icmp, icmpType: f.echoReq, id: 17, seq: 5, payload: pl}, 3000, 17, false},
		}
		if f.c.Is4() {
			inners = append(inners, struct {
				name   string
				orig   pk
				want   pk
				mp, cp uint16
				noFull bool
			}{"udp csum 0", pk{src: f.m, dst: f.b, proto: ProtoUDP, sport: 61000, dport: 5300, payload: pl, udpNoCsum: true},
				pk{src: f.c, dst: f.s, proto: ProtoUDP, sport: 40000, dport: 5301, payload: pl, udpNoCsum: true}, 61000, 40000, false})
		}
		for _, k := range f.kinds {
			for _, in := range inners {
				orig, want := build(t, in.orig), build(t, in.want)
				l4 := mustParse(t, orig).L4Off
				// Quote lengths: minimal (IP header + 8), cut inside the TCP header
				// after its checksum, and the whole packet (what Linux sends).
				for _, n := range []int{l4 + 8, l4 + 18, len(orig)} {
					t.Run(f.c.String()+"/"+k.name+"/"+in.name+"/quote"+itoa(n), func(t *testing.T) {
						e := buildICMPError(t, f.r, f.m, k.typ, k.code, k.rest, orig[:n])
						wantE := buildICMPError(t, f.r, f.c, k.typ, k.code, k.rest, want[:n])
						p := mustParse(t, e)
						if !p.IsICMPError || p.ICMPType != k.typ || p.ICMPCode != k.code {
							t.Fatalf("outer: %+v", p)
						}
						inner, r := p.Inner()
						if r != OK {
							t.Fatalf("Inner = %v", r)
						}
						if inner.Src != f.m || inner.Dst != f.b || inner.Proto != in.orig.proto ||
							!bytes.Equal(inner.B, e[len(e)-n:]) || &inner.B[0] != &e[len(e)-n] {
							t.Fatalf("inner before: %+v", inner)
						}
						p.SetDst(f.c, 999) // port ignored for errors
						p.SetInner(&inner, netip.AddrPortFrom(f.c, in.cp), netip.AddrPortFrom(f.s, in.want.dport))
						equalBytes(t, e, wantE)
						verifyChecksums(t, e)
						q := e[len(e)-n:]
						if f.c.Is4() && naiveFold(naiveSum(q[:20], 0)) != 0xffff {
							t.Fatal("inner IPv4 header checksum")
						}
						if n == len(orig) {
							verifyChecksums(t, q) // the whole inner packet is quoted
						}
						inner, r = p.Inner()
						if r != OK || inner.Src != f.c || inner.Dst != f.s {
							t.Fatalf("inner after: %v %+v", r, inner)
						}
						if in.orig.proto == ProtoTCP || in.orig.proto == ProtoUDP {
							if inner.SrcPort != in.cp || inner.DstPort != in.want.dport {
								t.Fatalf("inner ports %d > %d", inner.SrcPort, inner.DstPort)
							}
						} else if inner.SrcPort != in.want.id {
							t.Fatalf("inner echo id %d, want %d", inner.SrcPort, in.want.id)
						}
					})
				}
			}
		}
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

// TestICMPErrorOuterOnly: SetSrc/SetDst on an error touch only the outer header (and the
// ICMPv6 checksum's pseudo-header part); the quote stays as it was.
func TestICMPErrorOuterOnly(t *testing.T) {
	for _, tc := range []struct{ r, m, b, c, s netip.Addr }{{r4, m4, b4, c4, s4}, {r6, m6, b6, c6, s6}} {
		for _, partial := range []bool{false, true} {
			typ := ICMPv4TimeExceeded
			if tc.r.Is6() {
				typ = ICMPv6TimeExceeded
			}
			quote := build(t, pk{src: tc.m, dst: tc.b, proto: ProtoUDP, sport: 1, dport: 2, payload: []byte("x")})
			e := buildICMPError(t, tc.b, tc.m, typ, 0, 0, quote)
			if partial {
				toPartial(t, e)
			}
			p := mustParse(t, e)
			p.PartialCsum = partial
			p.SetSrc(tc.s, 7)
			p.SetDst(tc.c, 8)
			if partial {
				finish(t, e)
			}
			equalBytes(t, e, buildICMPError(t, tc.s, tc.c, typ, 0, 0, quote))
			verifyChecksums(t, e)
		}
	}
}

// TestInnerLenient: the quote may be shorter than the inner total length, or padded
// (RFC 4884 pads to 128 bytes): Inner trims to the inner total length.
func TestInnerLenient(t *testing.T) {
	orig := build(t, pk{src: m4, dst: b4, proto: ProtoUDP, sport: 1, dport: 2, payload: []byte("abc")})
	padded := append(append([]byte(nil), orig...), make([]byte, 128-len(orig))...)
	p := mustParse(t, buildICMPError(t, r4, m4, ICMPv4DestUnreach, 3, 0, padded))
	in, r := p.Inner()
	if r != OK || len(in.B) != len(orig) || in.PayloadLen != 3 {
		t.Fatalf("padded quote: %v len %d payload %d", r, len(in.B), in.PayloadLen)
	}
	orig6 := build(t, pk{src: m6, dst: b6, proto: ProtoTCP, sport: 1, dport: 2, payload: make([]byte, 100)})
	p = mustParse(t, buildICMPError(t, r6, m6, ICMPv6DestUnreach, 0, 0, orig6[:48]))
	in, r = p.Inner()
	if r != OK || len(in.B) != 48 || in.SrcPort != 1 || in.DstPort != 2 || in.TCPFlags != 0 {
		t.Fatalf("short v6 quote: %v %+v", r, in)
	}
}

func TestInnerRefused(t *testing.T) {
	tcp4 := build(t, pk{src: m4, dst: b4, proto: ProtoTCP, sport: 1, dport: 2})
	tcp6 := build(t, pk{src: m6, dst: b6, proto: ProtoTCP, sport: 1, dport: 2, exts: []ext{dsto()}})
	nonFirst := append([]byte(nil), tcp4...)
	nonFirst[7] = 1
	tests := []struct {
		name string
		e    []byte
		want Reason
	}{
		{"not an error", build(t, pk{src: c4, dst: s4, proto: ProtoICMP, icmpType: 8}), ErrUnsupportedProto},
		{"empty quote", buildICMPError(t, r4, m4, ICMPv4TimeExceeded, 0, 0, nil), ErrShort},
		{"v4 header cut", buildICMPError(t, r4, m4, ICMPv4TimeExceeded, 0, 0, tcp4[:16]), ErrShort},
		{"v4 l4 < 8 bytes", buildICMPError(t, r4, m4, ICMPv4TimeExceeded, 0, 0, tcp4[:27]), ErrTruncatedL4},
		{"v6 inside v4 error", buildICMPError(t, r4, m4, ICMPv4TimeExceeded, 0, 0, build(t, pk{src: m6, dst: b6, proto: ProtoUDP})), ErrBadVersion},
		{"v4 inside v6 error", buildICMPError(t, r6, m6, ICMPv6TimeExceeded, 0, 0, tcp4), ErrBadVersion},
		{"v4 non-first fragment", buildICMPError(t, r4, m4, ICMPv4TimeExceeded, 0, 0, nonFirst), ErrFragment},
		{"v6 ext header cut", buildICMPError(t, r6, m6, ICMPv6TimeExceeded, 0, 0, tcp6[:50]), ErrBadExtHeader},
		{"v6 l4 cut", buildICMPError(t, r6, m6, ICMPv6TimeExceeded, 0, 0, tcp6[:60]), ErrTruncatedL4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, tt.e)
			in, r := p.Inner()
			if r != tt.want {
				t.Fatalf("Inner = %v, want %v", r, tt.want)
			}
			orig := append([]byte(nil), tt.e...)
			p.SetInner(&in, netip.AddrPortFrom(c4, 1), netip.AddrPortFrom(c6, 1))
			equalBytes(t, tt.e, orig) // refused inner: left alone
		})
	}
}
