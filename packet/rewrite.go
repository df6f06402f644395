package packet

import (
	"encoding/binary"
	"net/netip"
)

// SetSrc rewrites the source address and port (ICMP echo request: the identifier; ICMP
// errors and other ICMP: port ignored) and fixes the IPv4 header checksum and the L4
// checksum incrementally (RFC 1624), pseudo-header included. partial=true means the L4
// checksum field holds only the folded, non-inverted pseudo-header sum
// (CHECKSUM_PARTIAL from a TUN with offloads): address changes are folded into that
// sum, port changes are left for the kernel to sum. IPv4 UDP checksum 0 stays 0.
// An address of the other family is ignored (IPv4-mapped IPv6 counts as IPv4).
func (p *Packet) SetSrc(a netip.Addr, port uint16, partial bool) {
	if rewrite(p.B, p.Version, p.Proto, p.L4Off, false, a, port, partial, nil) {
		p.Src = a.Unmap()
		if p.portSide()&sideSrc != 0 {
			p.SrcPort = port
		}
	}
}

// SetDst is SetSrc for the destination address and port (ICMP echo reply: the identifier).
func (p *Packet) SetDst(a netip.Addr, port uint16, partial bool) {
	if rewrite(p.B, p.Version, p.Proto, p.L4Off, true, a, port, partial, nil) {
		p.Dst = a.Unmap()
		if p.portSide()&sideDst != 0 {
			p.DstPort = port
		}
	}
}

// SetInnerSrc rewrites the source of the packet embedded in an ICMP error (address and
// port or echo id), fixing the inner IPv4 header checksum, the inner L4 checksum when
// the quote contains it (inner IPv4 UDP 0 stays 0), and the outer ICMP checksum, all
// incrementally, as a NAT must (RFC 5508 section 4). No-op unless p is an ICMP error
// whose Inner parses.
func (p *Packet) SetInnerSrc(a netip.Addr, port uint16) { p.setInner(false, a, port) }

// SetInnerDst is SetInnerSrc for the embedded destination.
func (p *Packet) SetInnerDst(a netip.Addr, port uint16) { p.setInner(true, a, port) }

func (p *Packet) setInner(dst bool, a netip.Addr, port uint16) {
	in, r := p.Inner()
	if r != OK {
		return
	}
	var outer uint32
	if !rewrite(in.B, in.Version, in.Proto, in.L4Off, dst, a, port, false, &outer) {
		return
	}
	cs := p.B[p.L4Off+2:]
	binary.BigEndian.PutUint16(cs, applyInverted(binary.BigEndian.Uint16(cs), outer))
}

// portSide says which tuple side the port argument of SetSrc/SetDst lands on.
func (p *Packet) portSide() side {
	switch p.Proto {
	case ProtoTCP, ProtoUDP:
		return sideSrc | sideDst
	}
	return echoSide(p.Proto, p.ICMPType)
}

// put16 writes v at b[0:2] and adds the change to *acc when acc is non-nil (the word
// lies inside a region covered by an enclosing checksum, e.g. an ICMP error's quote).
func put16(b []byte, v uint16, acc *uint32) {
	if acc != nil {
		*acc += wordDelta(binary.BigEndian.Uint16(b), v)
	}
	binary.BigEndian.PutUint16(b, v)
}

// rewrite changes one address (and port) of the IP packet b whose L4 header is at l4off.
// In b, all 16-bit fields are at even offsets relative to any enclosing ICMP header
// (IP header lengths are multiples of 4), so *outer can accumulate plain word deltas.
// For quoted packets b may end inside the L4 header: only quoted fields are touched.
func rewrite(b []byte, version, proto uint8, l4off int, dst bool, a netip.Addr, port uint16, partial bool, outer *uint32) bool {
	if l4off < IPv4MinLen || l4off+8 > len(b) || version == 6 && l4off < IPv6Len {
		return false // not a parsed packet: touch nothing
	}
	var d uint32 // pseudo-header / IPv4 header delta of the address words
	switch {
	case version == 4 && a.Unmap().Is4():
		off := 12
		if dst {
			off = 16
		}
		n := a.Unmap().As4()
		for i := 0; i < 4; i += 2 {
			w := binary.BigEndian.Uint16(n[i:])
			d += wordDelta(binary.BigEndian.Uint16(b[off+i:]), w)
			put16(b[off+i:], w, outer)
		}
		put16(b[10:], applyInverted(binary.BigEndian.Uint16(b[10:]), d), outer)
	case version == 6 && a.Is6() && !a.Is4In6():
		off := 8
		if dst {
			off = 24
		}
		n := a.As16()
		for i := 0; i < 16; i += 2 {
			w := binary.BigEndian.Uint16(n[i:])
			d += wordDelta(binary.BigEndian.Uint16(b[off+i:]), w)
			put16(b[off+i:], w, outer)
		}
	default:
		return false
	}

	l4 := b[l4off:]
	var pd uint32 // delta of the port/identifier word, covered by the L4 checksum only
	portOff, csOff, pseudo := -1, 0, true
	switch proto {
	case ProtoTCP:
		csOff = 16
		portOff = 0
	case ProtoUDP:
		csOff = 6
		portOff = 0
	case ProtoICMP, ProtoICMPv6:
		csOff, pseudo = 2, proto == ProtoICMPv6
		if s := echoSide(proto, l4[0]); s == sideSrc && !dst || s == sideDst && dst {
			portOff = 4
		}
	default:
		return true // no L4 checksum known to cover the addresses
	}
	if portOff == 0 && dst {
		portOff = 2
	}
	if portOff >= 0 {
		pd = wordDelta(binary.BigEndian.Uint16(l4[portOff:]), port)
		put16(l4[portOff:], port, outer)
	}
	if len(l4) < csOff+2 {
		return true // quoted TCP header cut before its checksum
	}
	cs := binary.BigEndian.Uint16(l4[csOff:])
	switch {
	case partial:
		if pseudo {
			put16(l4[csOff:], applySum(cs, d), outer)
		}
	case proto == ProtoUDP && version == 4 && cs == 0:
		// no checksum in use: stays 0 (RFC 768)
	default:
		delta := pd
		if pseudo {
			delta += d
		}
		n := applyInverted(cs, delta)
		if n == 0 && proto == ProtoUDP {
			n = 0xffff // 0 means "no checksum" on the wire (RFC 768, RFC 8200 8.1)
		}
		put16(l4[csOff:], n, outer)
	}
	return true
}

// MakeEchoReply turns an ICMP/ICMPv6 echo request into its reply in place: addresses
// swapped, type set to reply, TTL/hop limit reset to 64, checksums fixed incrementally
// (swapping addresses changes neither the IPv4 header sum nor the pseudo-header sum).
// It is a no-op for anything but an echo request. The ICMP checksum must be complete
// (not CHECKSUM_PARTIAL).
func (p *Packet) MakeEchoReply() {
	b := p.B
	if echoSide(p.Proto, p.ICMPType) != sideSrc || p.L4Off < IPv4MinLen || p.L4Off+ICMPLen > len(b) {
		return
	}
	reply := ICMPv4EchoReply
	if p.Version == 4 {
		var s, d [4]byte
		copy(s[:], b[12:16])
		copy(d[:], b[16:20])
		copy(b[12:16], d[:])
		copy(b[16:20], s[:])
		IPv4(b).SetTTL(64)
	} else {
		reply = ICMPv6EchoReply
		var s, d [16]byte
		copy(s[:], b[8:24])
		copy(d[:], b[24:40])
		copy(b[8:24], d[:])
		copy(b[24:40], s[:])
		b[7] = 64
	}
	l4 := b[p.L4Off:]
	old := binary.BigEndian.Uint16(l4)
	l4[0] = reply
	binary.BigEndian.PutUint16(l4[2:], ChecksumUpdate16(binary.BigEndian.Uint16(l4[2:]), old, binary.BigEndian.Uint16(l4)))
	p.Src, p.Dst = p.Dst, p.Src
	p.SrcPort, p.DstPort = 0, p.SrcPort
	p.ICMPType = reply
}
