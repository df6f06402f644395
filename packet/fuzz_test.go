package packet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// seedPackets are well-formed packets of every shape the parser knows, the starting
// points for both fuzzers.
func seedPackets(tb testing.TB) [][]byte {
	pl := []byte("payload")
	var out [][]byte
	for _, f := range []struct {
		c, s, m, b, r netip.Addr
		icmp          Proto
		req, rep      uint8
		kinds         []errKind
	}{
		{c4, s4, m4, b4, r4, ProtoICMP, ICMPv4EchoRequest, ICMPv4EchoReply, v4Errors},
		{c6, s6, m6, b6, r6, ProtoICMPv6, ICMPv6EchoRequest, ICMPv6EchoReply, v6Errors},
	} {
		tcp := build(tb, pk{src: f.m, dst: f.b, proto: ProtoTCP, sport: 61000, dport: 8080, flags: TCPSyn, opts: true, payload: pl})
		udp := build(tb, pk{src: f.m, dst: f.b, proto: ProtoUDP, sport: 61000, dport: 5300, payload: pl})
		echo := build(tb, pk{src: f.c, dst: f.s, proto: f.icmp, icmpType: f.req, id: 9, seq: 1, payload: pl})
		reply := build(tb, pk{src: f.s, dst: f.c, proto: f.icmp, icmpType: f.req&^8 | 1&^1 + f.req/128, id: 9, seq: 1})
		out = append(out, tcp, udp, echo, reply)
		for i, k := range f.kinds {
			q := [][]byte{tcp, udp, echo}[i%3]
			out = append(out, buildICMPError(tb, f.r, f.m, k.typ, k.code, k.rest, q[:len(q)-4*(i%2)]))
		}
		if f.c.Is4() {
			out = append(out,
				build(tb, pk{src: c4, dst: s4, proto: ProtoTCP, sport: 1, dport: 2, opts: true}),
				build(tb, pk{src: c4, dst: s4, proto: ProtoUDP, sport: 1, dport: 2, udpNoCsum: true, payload: pl}),
				build(tb, pk{src: c4, dst: s4, proto: ProtoUDP, sport: 1, dport: 2, fragMF: true, payload: pl}))
		} else {
			out = append(out,
				build(tb, pk{src: c6, dst: s6, proto: ProtoTCP, sport: 1, dport: 2, exts: []ext{hbh(), rt0(), dsto()}}),
				build(tb, pk{src: c6, dst: s6, proto: ProtoUDP, sport: 1, dport: 2, exts: []ext{frag(0, true)}, payload: pl}),
				build(tb, pk{src: c6, dst: s6, proto: ProtoUDP, sport: 1, dport: 2, exts: []ext{frag(8, false)}, payload: pl}))
		}
	}
	return out
}

func FuzzParse(f *testing.F) {
	for _, b := range seedPackets(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, want := Checksum(data, uint32(len(data))<<12), naiveFold(naiveSum(data, uint32(len(data))<<12)); got != want {
			t.Fatalf("Checksum = %#04x, naive %#04x", got, want)
		}
		var p Packet
		r := p.Parse(data)
		if r >= NumReasons {
			t.Fatalf("reason %d out of range", r)
		}
		if r != OK {
			return
		}
		checkInvariants(t, &p, data, false)
		if p.Proto == ProtoTCP {
			if shift, ok := p.TCP().WindowScale(); shift > MaxWindowScale || (!ok && shift != 0) {
				t.Fatalf("window scale %d, %v", shift, ok)
			}
		}
		var again Packet
		if again.Parse(p.B) != OK || again.L4Off != p.L4Off || len(again.B) != len(p.B) {
			t.Fatal("Parse of its own B differs")
		}
		// gopacket must agree on addresses and ports where it decodes the same layers.
		first := layers.LayerTypeIPv4
		if p.Version == 6 {
			first = layers.LayerTypeIPv6
		}
		g := gopacket.NewPacket(p.B, first, gopacket.NoCopy)
		if nl := g.NetworkLayer(); nl != nil {
			src, _ := netip.AddrFromSlice(nl.NetworkFlow().Src().Raw())
			dst, _ := netip.AddrFromSlice(nl.NetworkFlow().Dst().Raw())
			if src != p.Src || dst != p.Dst {
				t.Fatalf("addresses %v > %v, gopacket %v > %v", p.Src, p.Dst, src, dst)
			}
		}
		if tl := g.TransportLayer(); tl != nil && (p.Proto == ProtoTCP || p.Proto == ProtoUDP) {
			fl := tl.TransportFlow()
			if binary.BigEndian.Uint16(fl.Src().Raw()) != p.SrcPort || binary.BigEndian.Uint16(fl.Dst().Raw()) != p.DstPort {
				t.Fatalf("ports %d > %d, gopacket %v", p.SrcPort, p.DstPort, fl)
			}
		}
		if p.IsICMPError {
			in, r := p.Inner()
			if r >= NumReasons {
				t.Fatalf("inner reason %d", r)
			}
			if r == OK {
				checkInvariants(t, &in, p.B[p.L4Off+ICMPLen:], true)
				if in.Version != p.Version {
					t.Fatal("inner version differs")
				}
			}
		}
	})
}

// checkInvariants asserts what a successful Parse (or Inner) promises.
func checkInvariants(t *testing.T, p *Packet, data []byte, inner bool) {
	t.Helper()
	if len(p.B) == 0 || len(p.B) > len(data) || &p.B[0] != &data[0] {
		t.Fatalf("B is not a prefix of the input (len %d of %d)", len(p.B), len(data))
	}
	minHdr := map[uint8]int{4: IPv4MinLen, 6: IPv6Len}[p.Version]
	if minHdr == 0 || p.L4Off < minHdr || p.L4Off > len(p.B) {
		t.Fatalf("version %d L4Off %d len %d", p.Version, p.L4Off, len(p.B))
	}
	l4min := map[Proto]int{ProtoTCP: TCPMinLen, ProtoUDP: UDPLen, ProtoICMP: ICMPLen, ProtoICMPv6: ICMPLen}[p.Proto]
	if inner {
		l4min = 8
	}
	if l4min == 0 || p.L4Off+l4min > len(p.B) {
		t.Fatalf("proto %d: L4 header does not fit (L4Off %d len %d)", p.Proto, p.L4Off, len(p.B))
	}
	if p.Version == 4 && (p.Proto == ProtoICMPv6 || IPv4(p.B).Src() != p.Src || IPv4(p.B).Dst() != p.Dst) {
		t.Fatal("ipv4 fields")
	}
	if p.Version == 4 && !inner && int(IPv4(p.B).TotalLen()) != len(p.B) {
		t.Fatal("ipv4 B not cut to total length")
	}
	if p.Version == 6 && (p.Proto == ProtoICMP || p.Src.Is4In6() || p.Dst.Is4In6() || IPv6(p.B).Src() != p.Src) {
		t.Fatal("ipv6 fields")
	}
	if p.Version == 6 && !inner && int(IPv6(p.B).PayloadLen())+IPv6Len != len(p.B) {
		t.Fatal("ipv6 B not cut to payload length")
	}
	if p.PayloadLen < 0 || p.L4Off+p.PayloadLen > len(p.B) || len(p.Payload()) != p.PayloadLen {
		t.Fatalf("payload len %d", p.PayloadLen)
	}
	if p.IsICMPError && p.Proto != ProtoICMP && p.Proto != ProtoICMPv6 {
		t.Fatal("ICMP error flag on non-ICMP")
	}
}

// validChecksums verifies a packet's checksums from scratch with the naive sums; offsets
// come from the parse. It reports (IPv4 header ok, L4 ok); L4 of fragments counts as ok.
func validChecksums(p *Packet) (bool, bool) {
	hdr := p.Version != 4 || naiveFold(naiveSum(p.B[:p.B[0]&0x0f*4], 0)) == 0xffff
	if p.IsFragment {
		return hdr, true
	}
	seg := p.B[p.L4Off:]
	var s uint32
	switch p.Proto {
	case ProtoUDP:
		seg = seg[:binary.BigEndian.Uint16(seg[4:])]
		if binary.BigEndian.Uint16(seg[6:]) == 0 {
			return hdr, p.Version == 4
		}
		fallthrough
	case ProtoTCP, ProtoICMPv6:
		s = naivePseudo(p.Proto, p.Src, p.Dst, len(seg))
	}
	return hdr, naiveFold(naiveSum(seg, s)) == 0xffff
}

// fuzzAddr makes an address of the packet's family from fuzz bytes (never IPv4-mapped).
func fuzzAddr(v uint8, raw []byte) netip.Addr {
	var a [16]byte
	copy(a[:], raw)
	if v == 4 {
		return netip.AddrFrom4([4]byte(a[:4]))
	}
	a[0] |= 0x20
	return netip.AddrFrom16(a)
}

func FuzzRewrite(f *testing.F) {
	for i, b := range seedPackets(f) {
		f.Add(b, []byte{198, 18, byte(i), 1, 0x20, 1, 0xd, 0xb8}, []byte{203, 0, 113, byte(i)}, uint16(i), uint16(1000+i), i%3 != 0)
	}
	f.Fuzz(func(t *testing.T, data, a1, a2 []byte, port1, port2 uint16, fix bool) {
		var p Packet
		if p.Parse(data) != OK {
			return
		}
		if fix {
			// Make every checksum valid so the properties below apply to any
			// mutated shape, not only to the seeds.
			fixChecksums(&p)
		}
		src, dst := fuzzAddr(p.Version, a1), fuzzAddr(p.Version, a2)
		hdrOK, l4OK := validChecksums(&p)
		wasZero := p.Proto == ProtoUDP && p.Version == 4 && p.UDP().Checksum() == 0

		if p.IsICMPError {
			fuzzInner(t, &p, src, dst, port1, port2)
		}

		p.SetSrc(src, port1)
		p.SetDst(dst, port2)
		var q Packet
		if r := q.Parse(p.B); r != OK {
			t.Fatalf("rewritten packet refused: %v", r)
		}
		if q.Src != src || q.Dst != dst || q.SrcPort != p.SrcPort || q.DstPort != p.DstPort || q.Proto != p.Proto {
			t.Fatalf("reparsed %v:%d > %v:%d, set %v:%d > %v:%d", q.Src, q.SrcPort, q.Dst, q.DstPort, src, p.SrcPort, dst, p.DstPort)
		}
		if (p.Proto == ProtoTCP || p.Proto == ProtoUDP) && (q.SrcPort != port1 || q.DstPort != port2) {
			t.Fatal("ports not rewritten")
		}
		h, l := validChecksums(&q)
		if hdrOK && !h {
			t.Fatal("IPv4 header checksum broken by rewrite")
		}
		if l4OK && !l {
			t.Fatal("L4 checksum broken by rewrite")
		}
		if wasZero && q.UDP().Checksum() != 0 {
			t.Fatal("IPv4 UDP checksum 0 did not stay 0")
		}

		// CHECKSUM_PARTIAL: starting from a valid packet, put the pseudo-header sum in the
		// field, rewrite back to the original tuple, finish as the kernel would.
		if !l4OK || !l || wasZero || q.IsFragment {
			return
		}
		csOff := l4csOff(&q)
		var ps uint16
		if q.Proto != ProtoICMP {
			n := len(q.B) - q.L4Off
			if q.Proto == ProtoUDP {
				n = int(q.UDP().Length())
			}
			ps = naiveFold(naivePseudo(q.Proto, q.Src, q.Dst, n))
		}
		binary.BigEndian.PutUint16(q.B[csOff:], ps)
		q.PartialCsum = true
		q.SetSrc(dst, port2)
		q.SetDst(src, port1)
		seg := q.B[q.L4Off:]
		if q.Proto == ProtoUDP {
			seg = seg[:q.UDP().Length()]
		}
		cs := ^naiveFold(naiveSum(seg, 0))
		if cs == 0 && q.Proto == ProtoUDP {
			cs = 0xffff
		}
		binary.BigEndian.PutUint16(q.B[csOff:], cs)
		if _, l := validChecksums(&q); !l {
			t.Fatal("partial-mode rewrite did not verify after finishing")
		}
	})
}

// fixChecksums recomputes from scratch (naive sums) every checksum of p, the quote of an
// ICMP error first: inner IPv4 header, inner L4 if wholly quoted, then the outer ones.
// An IPv4 UDP checksum of 0 is left as "none".
func fixChecksums(p *Packet) {
	if in, r := p.Inner(); r == OK {
		var whole Packet
		if whole.Parse(in.B) == OK {
			fixChecksums(&whole)
		} else if in.Version == 4 {
			fixIPv4Header(in.B)
		}
	}
	if p.Version == 4 {
		fixIPv4Header(p.B)
	}
	if p.IsFragment {
		return
	}
	seg := p.B[p.L4Off:]
	var s uint32
	switch p.Proto {
	case ProtoUDP:
		seg = seg[:binary.BigEndian.Uint16(seg[4:])]
		if p.Version == 4 && binary.BigEndian.Uint16(seg[6:]) == 0 {
			return
		}
		fallthrough
	case ProtoTCP, ProtoICMPv6:
		s = naivePseudo(p.Proto, p.Src, p.Dst, len(seg))
	}
	cs := seg[l4csOff(p)-p.L4Off:]
	binary.BigEndian.PutUint16(cs, 0)
	v := ^naiveFold(naiveSum(seg, s))
	if v == 0 && p.Proto == ProtoUDP {
		v = 0xffff
	}
	binary.BigEndian.PutUint16(cs, v)
}

func fixIPv4Header(b []byte) {
	h := b[:b[0]&0x0f*4]
	binary.BigEndian.PutUint16(h[10:], 0)
	binary.BigEndian.PutUint16(h[10:], ^naiveFold(naiveSum(h, 0)))
}

// fuzzInner rewrites the quote of an ICMP error and checks that every checksum that was
// valid before (outer ICMP, inner IPv4 header, inner L4 if fully quoted) still is.
func fuzzInner(t *testing.T, p *Packet, src, dst netip.Addr, port1, port2 uint16) {
	in, r := p.Inner()
	if r != OK {
		return
	}
	_, outerOK := validChecksums(p)
	innerHdr := in.Version != 4 || IPv4(in.B).HeaderChecksumOK()
	var innerFull, innerL4 bool
	var whole Packet
	if whole.Parse(in.B) == OK && !whole.IsFragment {
		innerFull = true
		_, innerL4 = validChecksums(&whole)
	}
	p.SetInner(&in, netip.AddrPortFrom(dst, port2), netip.AddrPortFrom(src, port1))
	in2, r := p.Inner()
	if r != OK || in2.Src != dst || in2.Dst != src {
		t.Fatalf("inner after rewrite: %v %v > %v", r, in2.Src, in2.Dst)
	}
	if _, ok := validChecksums(p); outerOK && !ok {
		t.Fatal("outer ICMP checksum broken by inner rewrite")
	}
	if innerHdr && in2.Version == 4 && !IPv4(in2.B).HeaderChecksumOK() {
		t.Fatal("inner IPv4 header checksum broken")
	}
	if innerFull && innerL4 {
		var w Packet
		if w.Parse(in2.B) != OK {
			t.Fatal("inner no longer parses as a whole packet")
		}
		if _, ok := validChecksums(&w); !ok {
			t.Fatal("inner L4 checksum broken")
		}
	}
}

// TestWriteFuzzSeeds regenerates testdata/fuzz/*/seed-* from seedPackets when
// PACKET_WRITE_FUZZ_SEEDS=1 (run after changing seedPackets; the files are committed).
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("PACKET_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set PACKET_WRITE_FUZZ_SEEDS=1 to regenerate the committed seed corpus")
	}
	for i, b := range seedPackets(t) {
		write := func(fuzzer, body string) {
			dir := filepath.Join("testdata", "fuzz", fuzzer)
			must(t, os.MkdirAll(dir, 0o755))
			must(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte("go test fuzz v1\n"+body), 0o644))
		}
		write("FuzzParse", fmt.Sprintf("[]byte(%q)\n", b))
		write("FuzzRewrite", fmt.Sprintf("[]byte(%q)\n[]byte(%q)\n[]byte(%q)\nuint16(%d)\nuint16(%d)\nbool(%v)\n",
			b, []byte{198, 18, byte(i), 1, 0x20, 1, 0xd, 0xb8}, []byte{203, 0, 113, byte(i)}, i, 1000+i, i%3 != 0))
	}
}
