package packet

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Documentation-range addresses used throughout the tests.
var (
	c4 = netip.MustParseAddr("198.51.100.10") // client
	s4 = netip.MustParseAddr("203.0.113.5")   // service VIP
	b4 = netip.MustParseAddr("198.18.0.20")   // backend
	m4 = netip.MustParseAddr("198.18.0.1")    // masquerade address
	r4 = netip.MustParseAddr("192.0.2.1")     // router emitting ICMP errors

	c6 = netip.MustParseAddr("2001:db8:1::10")
	s6 = netip.MustParseAddr("2001:db8:2::5")
	b6 = netip.MustParseAddr("2001:db8:3::20")
	m6 = netip.MustParseAddr("2001:db8:3::1")
	r6 = netip.MustParseAddr("2001:db8:ff::1")
)

// ext is one raw IPv6 extension header; body[0] (next header) is patched by build.
type ext struct {
	typ  uint8
	body []byte
}

// pk describes a packet for build; zero fields get sensible defaults.
type pk struct {
	src, dst     netip.Addr
	proto        Proto // ProtoTCP, ProtoUDP, ProtoICMP or ProtoICMPv6
	sport, dport uint16
	icmpType     uint8 // echo request/reply type for ICMP protos
	id, seq      uint16
	flags        TCPFlags // TCP flags
	payload      []byte
	opts         bool  // add IPv4 options (router alert + NOP padding) / TCP MSS option
	exts         []ext // IPv6 extension headers in order
	udpNoCsum    bool  // IPv4 UDP with checksum 0
	fragMF       bool  // IPv4 MF flag (first fragment)
}

func hbh() ext  { return ext{0, []byte{0, 0, 1, 4, 0, 0, 0, 0}} } // PadN
func dsto() ext { return ext{60, []byte{0, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}} }
func rt0() ext  { return ext{43, []byte{0, 0, 0, 0, 0, 0, 0, 0}} } // type 0, segments left 0: no-op
func frag(off uint16, more bool) ext {
	b := []byte{0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef}
	v := off << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(b[2:], v)
	return ext{44, b}
}

var serOpts = gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}

// build serializes p with gopacket, checksums computed by gopacket.
func build(tb testing.TB, p pk) []byte {
	tb.Helper()
	var ls []gopacket.SerializableLayer
	var net gopacket.NetworkLayer
	if p.src.Is4() {
		ip := &layers.IPv4{Version: 4, TTL: 64, Id: 0x1234, Protocol: layers.IPProtocol(p.proto),
			SrcIP: p.src.AsSlice(), DstIP: p.dst.AsSlice(), Flags: layers.IPv4DontFragment}
		if p.fragMF {
			ip.Flags = layers.IPv4MoreFragments
		}
		if p.opts {
			ip.Options = []layers.IPv4Option{{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}},
				{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 1}}
		}
		ls, net = append(ls, ip), ip
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocol(p.proto),
			SrcIP: p.src.AsSlice(), DstIP: p.dst.AsSlice(), FlowLabel: 0x12345}
		ls, net = append(ls, ip), ip
		if len(p.exts) > 0 {
			ip.NextHeader = layers.IPProtocol(p.exts[0].typ)
			for i, e := range p.exts {
				body := bytes.Clone(e.body)
				body[0] = uint8(p.proto)
				if i+1 < len(p.exts) {
					body[0] = p.exts[i+1].typ
				}
				ls = append(ls, gopacket.Payload(body))
			}
		}
	}
	switch p.proto {
	case ProtoTCP:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(p.sport), DstPort: layers.TCPPort(p.dport),
			Seq: 0x01020304, Ack: 0x05060708, Window: 29200,
			FIN: p.flags&TCPFin != 0, SYN: p.flags&TCPSyn != 0, RST: p.flags&TCPRst != 0,
			PSH: p.flags&TCPPsh != 0, ACK: p.flags&TCPAck != 0}
		if p.opts {
			tcp.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{5, 0xb4}}}
		}
		must(tb, tcp.SetNetworkLayerForChecksum(net))
		ls = append(ls, tcp)
	case ProtoUDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(p.sport), DstPort: layers.UDPPort(p.dport)}
		must(tb, udp.SetNetworkLayerForChecksum(net))
		ls = append(ls, udp)
	case ProtoICMP:
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(p.icmpType, 0), Id: p.id, Seq: p.seq})
	case ProtoICMPv6:
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(p.icmpType, 0)}
		must(tb, ic.SetNetworkLayerForChecksum(net))
		ls = append(ls, ic, &layers.ICMPv6Echo{Identifier: p.id, SeqNumber: p.seq})
	}
	ls = append(ls, gopacket.Payload(p.payload))
	b := serialize(tb, ls...)
	if p.proto == ProtoUDP {
		l4 := len(b) - len(p.payload) - UDPLen
		switch {
		case p.udpNoCsum:
			binary.BigEndian.PutUint16(b[l4+6:], 0)
		case binary.BigEndian.Uint16(b[l4+6:]) == 0:
			binary.BigEndian.PutUint16(b[l4+6:], 0xffff) // gopacket leaves a computed 0 as 0
		}
	}
	return b
}

func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	must(tb, gopacket.SerializeLayers(buf, serOpts, ls...))
	return bytes.Clone(buf.Bytes())
}

// buildICMPError wraps quote (the start of an offending packet) in an ICMP error from
// src to dst. rest is the 4-byte rest-of-header (unused, MTU or pointer).
func buildICMPError(tb testing.TB, src, dst netip.Addr, typ, code uint8, rest uint32, quote []byte) []byte {
	tb.Helper()
	if src.Is4() {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Id: uint16(rest >> 16), Seq: uint16(rest)}
		return serialize(tb, ip, ic, gopacket.Payload(quote))
	}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
	must(tb, ic.SetNetworkLayerForChecksum(ip))
	body := binary.BigEndian.AppendUint32(nil, rest)
	return serialize(tb, ip, ic, gopacket.Payload(append(body, quote...)))
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// naiveSum is a deliberately simple RFC 1071 sum, independent of the package's Checksum.
func naiveSum(b []byte, s uint32) uint32 {
	for i := 0; i < len(b); i++ {
		if i%2 == 0 {
			s += uint32(b[i]) << 8
		} else {
			s += uint32(b[i])
		}
	}
	return s
}

func naiveFold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

func naivePseudo(proto Proto, src, dst netip.Addr, n int) uint32 {
	s := naiveSum(src.AsSlice(), 0)
	s = naiveSum(dst.AsSlice(), s)
	return s + uint32(proto) + uint32(n>>16) + uint32(n&0xffff)
}

// checksumErrs verifies every checksum of the (complete, unfragmented) packet b from
// scratch: the IPv4 header and the L4 checksum with its pseudo-header. Offsets come from
// gopacket's decoding, not from this package.
func checksumErrs(b []byte) []string {
	var errs []string
	first := layers.LayerTypeIPv4
	if b[0]>>4 == 6 {
		first = layers.LayerTypeIPv6
	}
	pkt := gopacket.NewPacket(b, first, gopacket.NoCopy)
	if el := pkt.ErrorLayer(); el != nil {
		return append(errs, "gopacket decode: "+el.Error().Error())
	}
	var src, dst netip.Addr
	if ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		if naiveFold(naiveSum(ip.Contents, 0)) != 0xffff {
			errs = append(errs, "ipv4 header checksum")
		}
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		dst, _ = netip.AddrFromSlice(ip.DstIP)
	} else if ip, ok := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		dst, _ = netip.AddrFromSlice(ip.DstIP)
	}
	for _, lt := range []gopacket.LayerType{layers.LayerTypeTCP, layers.LayerTypeUDP, layers.LayerTypeICMPv4, layers.LayerTypeICMPv6} {
		l := pkt.Layer(lt)
		if l == nil {
			continue
		}
		seg := b[len(b)-len(l.LayerContents())-len(l.LayerPayload()):]
		var s uint32
		switch lt {
		case layers.LayerTypeTCP:
			s = naivePseudo(ProtoTCP, src, dst, len(seg))
		case layers.LayerTypeUDP:
			s = naivePseudo(ProtoUDP, src, dst, len(seg))
			if binary.BigEndian.Uint16(seg[6:]) == 0 {
				if src.Is4() {
					continue
				}
				errs = append(errs, "ipv6 udp checksum 0")
			}
		case layers.LayerTypeICMPv6:
			s = naivePseudo(ProtoICMPv6, src, dst, len(seg))
		}
		if naiveFold(naiveSum(seg, s)) != 0xffff {
			errs = append(errs, lt.String()+" checksum")
		}
	}
	return errs
}

func verifyChecksums(tb testing.TB, b []byte) {
	tb.Helper()
	if errs := checksumErrs(b); len(errs) > 0 {
		tb.Fatalf("checksums: %v\n% x", errs, b)
	}
}

func mustParse(tb testing.TB, b []byte) *Packet {
	tb.Helper()
	p := new(Packet)
	if r := p.Parse(b); r != OK {
		tb.Fatalf("Parse: %v\n% x", r, b)
	}
	return p
}

func equalBytes(tb testing.TB, got, want []byte) {
	tb.Helper()
	if !bytes.Equal(got, want) {
		tb.Fatalf("bytes differ\n got % x\nwant % x", got, want)
	}
}
