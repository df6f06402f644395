package packet

import (
	"net/netip"
	"testing"
)

func BenchmarkParse(b *testing.B) {
	pkt := build(b, pk{src: c4, dst: s4, proto: ProtoTCP, sport: 40000, dport: 80, flags: TCPAck, opts: true, payload: make([]byte, 1400)})
	var p Packet
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if p.Parse(pkt) != OK {
			b.Fatal("parse failed")
		}
	}
}

func BenchmarkParseV6Ext(b *testing.B) {
	pkt := build(b, pk{src: c6, dst: s6, proto: ProtoUDP, sport: 40000, dport: 53, exts: []ext{hbh(), dsto()}, payload: make([]byte, 512)})
	var p Packet
	b.ReportAllocs()
	for b.Loop() {
		if p.Parse(pkt) != OK {
			b.Fatal("parse failed")
		}
	}
}

func BenchmarkRewrite(b *testing.B) {
	for _, tc := range []struct {
		name string
		in   pk
	}{
		{name: "v4_tcp", in: pk{src: c4, dst: s4, proto: ProtoTCP, sport: 40000, dport: 80, payload: make([]byte, 1400)}},
		{name: "v6_udp", in: pk{src: c6, dst: s6, proto: ProtoUDP, sport: 40000, dport: 53, payload: make([]byte, 512)}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			pkt := build(b, tc.in)
			p := mustParse(b, pkt)
			src, dst := m4, b4
			if tc.in.src.Is6() {
				src, dst = m6, b6
			}
			b.ReportAllocs()
			i := uint16(0)
			for b.Loop() {
				i++
				p.SetSrc(src, 1024+i)
				p.SetDst(dst, 8080)
			}
		})
	}
}

func BenchmarkInnerRewrite(b *testing.B) {
	quote := build(b, pk{src: m4, dst: b4, proto: ProtoTCP, sport: 61000, dport: 8080})[:28]
	pkt := buildICMPError(b, r4, m4, ICMPv4DestUnreach, 3, 0, quote)
	p := mustParse(b, pkt)
	b.ReportAllocs()
	for b.Loop() {
		p.SetDst(c4, 0)
		in, _ := p.Inner()
		p.SetInner(&in, netip.AddrPortFrom(c4, 40000), netip.AddrPortFrom(s4, 80))
	}
}

func BenchmarkChecksum1500(b *testing.B) {
	buf := make([]byte, 1500)
	for i := range buf {
		buf[i] = byte(i)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		Checksum(buf, 0)
	}
}
