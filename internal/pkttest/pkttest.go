// Package pkttest builds packets with gopacket and verifies them from scratch, for the tests of
// the packet path (nat, gateway).
package pkttest

import (
	"net"
	"net/netip"
	"testing"

	"github.com/edgegate/edgegate/packet"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// P describes a test packet; Build serialises it with gopacket and correct checksums.
type P struct {
	Proto     packet.Proto
	Src, Dst  netip.Addr
	Sport     uint16 // ICMP echo request: identifier
	Dport     uint16 // ICMP echo reply: identifier
	Flags     string // TCP: letters of S, A, R, F
	Seq, Ack  uint32 // TCP: sequence and acknowledgement numbers; 0 takes 1000 and 1
	ICMPType  uint8
	Payload   string
	UDPNoCsum bool // IPv4 UDP without checksum
}

// IPLayer is an IPv4 or IPv6 header for src -> dst.
func IPLayer(src, dst netip.Addr, proto layers.IPProtocol) gopacket.SerializableLayer {
	if src.Is4() {
		return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice()), Flags: layers.IPv4DontFragment}
	}
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
}

// Serialize serialises layers with lengths and checksums fixed.
func Serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// Build serialises the packet.
func (s P) Build(t testing.TB) []byte {
	t.Helper()
	var l4 gopacket.SerializableLayer
	var proto layers.IPProtocol
	ipl := IPLayer(s.Src, s.Dst, 0)
	nl := ipl.(gopacket.NetworkLayer)
	switch s.Proto {
	case 6:
		proto = layers.IPProtocolTCP
		tcp := &layers.TCP{SrcPort: layers.TCPPort(s.Sport), DstPort: layers.TCPPort(s.Dport), Seq: 1000, Window: 65535, DataOffset: 5}
		for _, c := range s.Flags {
			switch c {
			case 'S':
				tcp.SYN = true
			case 'A':
				tcp.ACK = true
				tcp.Ack = 1
			case 'R':
				tcp.RST = true
			case 'F':
				tcp.FIN = true
			}
		}
		if s.Seq != 0 {
			tcp.Seq = s.Seq
		}
		if s.Ack != 0 && tcp.ACK {
			tcp.Ack = s.Ack
		}
		tcp.SetNetworkLayerForChecksum(nl)
		l4 = tcp
	case 17:
		proto = layers.IPProtocolUDP
		udp := &layers.UDP{SrcPort: layers.UDPPort(s.Sport), DstPort: layers.UDPPort(s.Dport)}
		udp.SetNetworkLayerForChecksum(nl)
		l4 = udp
	case 1:
		proto = layers.IPProtocolICMPv4
		id := s.Sport
		if s.ICMPType == 0 {
			id = s.Dport
		}
		l4 = &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(s.ICMPType, 0), Id: id, Seq: 1}
	}
	switch ip := ipl.(type) {
	case *layers.IPv4:
		ip.Protocol = proto
	case *layers.IPv6:
		ip.NextHeader = proto
	}
	b := Serialize(t, ipl, l4, gopacket.Payload(s.Payload))
	if s.UDPNoCsum && s.Src.Is4() {
		b[20+6], b[20+7] = 0, 0
	}
	return b
}

// Verify decodes b with gopacket and recomputes every checksum from scratch.
func Verify(t testing.TB, b []byte) gopacket.Packet {
	t.Helper()
	first := layers.LayerTypeIPv4
	if b[0]>>4 == 6 {
		first = layers.LayerTypeIPv6
	}
	pkt := gopacket.NewPacket(b, first, gopacket.Default)
	if el := pkt.ErrorLayer(); el != nil {
		t.Fatalf("decode: %v", el.Error())
	}
	cp := append([]byte(nil), b...)
	var p packet.Packet
	if r := p.Parse(cp); r != packet.OK {
		t.Fatalf("parse translated packet: %v", r)
	}
	if p.Version == 4 {
		if c := packet.Checksum(b[:p.L4Off], 0); c != 0xffff {
			t.Fatalf("IPv4 header checksum invalid (sum %#04x)", c)
		}
	}
	l4 := b[p.L4Off:]
	switch p.Proto {
	case 6, 17, 58:
		if p.Proto == 17 && p.Version == 4 && l4[6] == 0 && l4[7] == 0 {
			break // no checksum
		}
		sum := packet.PseudoHeaderSum(p.Proto, p.Src, p.Dst, len(l4))
		if c := packet.Checksum(l4, sum); c != 0xffff {
			t.Fatalf("L4 checksum invalid (proto %d, sum %#04x)", p.Proto, c)
		}
	case 1:
		if c := packet.Checksum(l4, 0); c != 0xffff {
			t.Fatalf("ICMP checksum invalid (sum %#04x)", c)
		}
	}
	return pkt
}

// ChecksumsValid reports whether the IPv4 header and L4 checksums of b verify.
func ChecksumsValid(b []byte) bool {
	var p packet.Packet
	if p.Parse(append([]byte(nil), b...)) != packet.OK || p.IsFragment {
		return false
	}
	if p.Version == 4 && packet.Checksum(b[:p.L4Off], 0) != 0xffff {
		return false
	}
	l4 := b[p.L4Off:]
	switch p.Proto {
	case 17:
		if p.Version == 4 && l4[6] == 0 && l4[7] == 0 {
			return true
		}
		fallthrough
	case 6, 58:
		return packet.Checksum(l4, packet.PseudoHeaderSum(p.Proto, p.Src, p.Dst, len(l4))) == 0xffff
	case 1:
		return packet.Checksum(l4, 0) == 0xffff
	}
	return true
}
