package packet

import "encoding/binary"

// Answers the gateway builds in place when a service refuses a new flow (no healthy backend and
// the policy says refuse): a TCP RST for a connection attempt, an ICMP port unreachable for UDP.
// They are rare, so checksums are computed from scratch.

// MakeTCPReset turns a TCP segment into the RST a closed port answers with (RFC 9293 3.10.7.1):
// addresses and ports swapped; for a segment with ACK, seq = its ack and no ACK; otherwise
// seq 0, ack = its seq + its length (SYN and FIN count one), flags RST+ACK. Options and payload
// are dropped. It reports false (nothing changed) for anything but a parsed TCP segment.
func (p *Packet) MakeTCPReset() bool {
	if p.Proto != ProtoTCP || p.L4Off < IPv4MinLen || p.L4Off+TCPMinLen > len(p.B) {
		return false
	}
	b := p.B
	t := b[p.L4Off:]
	seq, ack := binary.BigEndian.Uint32(t[4:]), binary.BigEndian.Uint32(t[8:])
	flags := t[13]
	segLen := uint32(p.PayloadLen)
	if flags&TCPSyn != 0 {
		segLen++
	}
	if flags&TCPFin != 0 {
		segLen++
	}
	sp, dp := binary.BigEndian.Uint16(t[0:]), binary.BigEndian.Uint16(t[2:])
	binary.BigEndian.PutUint16(t[0:], dp)
	binary.BigEndian.PutUint16(t[2:], sp)
	if flags&TCPAck != 0 {
		binary.BigEndian.PutUint32(t[4:], ack)
		binary.BigEndian.PutUint32(t[8:], 0)
		t[13] = TCPRst
	} else {
		binary.BigEndian.PutUint32(t[4:], 0)
		binary.BigEndian.PutUint32(t[8:], seq+segLen)
		t[13] = TCPRst | TCPAck
	}
	t[12] = 5 << 4 // no options
	binary.BigEndian.PutUint16(t[14:], 0)
	binary.BigEndian.PutUint16(t[18:], 0)
	n := p.L4Off + TCPMinLen
	p.B = b[:n]
	p.setIPReply(n, 64)
	t = p.B[p.L4Off:]
	binary.BigEndian.PutUint16(t[16:], 0)
	binary.BigEndian.PutUint16(t[16:], ^Checksum(t, PseudoHeaderSum(ProtoTCP, p.Src, p.Dst, len(t))))
	p.SrcPort, p.DstPort = dp, sp
	p.TCPFlags, p.PayloadLen, p.IsFragment = t[13], 0, false
	p.Seq, p.Ack, p.Window = binary.BigEndian.Uint32(t[4:]), binary.BigEndian.Uint32(t[8:]), 0
	return true
}

// MakePortUnreachable turns a packet into the ICMP destination unreachable / port unreachable
// (ICMPv6: code 4) its destination would send: the original packet is quoted after the new
// headers (up to 576 bytes in all for IPv4, RFC 1812; 1280 for IPv6, RFC 4443), which needs room
// in the buffer behind p.B (cap). It reports false, changing nothing, when there is no room or p
// is itself an ICMP error.
func (p *Packet) MakePortUnreachable() bool {
	if p.IsICMPError || p.L4Off < IPv4MinLen {
		return false
	}
	hl, limit, typ, code, proto := IPv4MinLen, 576, ICMPv4DestUnreach, uint8(3), ProtoICMP
	if p.Version == 6 {
		hl, limit, typ, code, proto = IPv6Len, 1280, ICMPv6DestUnreach, 4, ProtoICMPv6
	}
	quote := min(len(p.B), limit-hl-ICMPLen)
	n := hl + ICMPLen + quote
	if cap(p.B) < n {
		return false
	}
	b := p.B[:n]
	copy(b[hl+ICMPLen:], p.B[:quote]) // memmove: the quote moves back over itself
	src, dst := p.Dst, p.Src
	if p.Version == 4 {
		b[0] = 0x45
		b[1] = 0
		binary.BigEndian.PutUint16(b[4:], 0)
		binary.BigEndian.PutUint16(b[6:], 0)
		b[9] = proto
		a, d := src.As4(), dst.As4()
		copy(b[12:16], a[:])
		copy(b[16:20], d[:])
	} else {
		binary.BigEndian.PutUint32(b[0:], 6<<28)
		b[6] = proto
		a, d := src.As16(), dst.As16()
		copy(b[8:24], a[:])
		copy(b[24:40], d[:])
	}
	m := b[hl:]
	m[0], m[1] = typ, code
	binary.BigEndian.PutUint16(m[2:], 0)
	binary.BigEndian.PutUint32(m[4:], 0)
	p.B = b
	p.Src, p.Dst, p.Proto, p.L4Off = src, dst, proto, hl
	p.setIPReply(n, 64)
	sum := uint32(0)
	if proto == ProtoICMPv6 {
		sum = PseudoHeaderSum(proto, src, dst, len(m))
	}
	binary.BigEndian.PutUint16(m[2:], ^Checksum(m, sum))
	p.ICMPType, p.ICMPCode, p.IsICMPError = typ, code, true
	p.SrcPort, p.DstPort, p.TCPFlags, p.PayloadLen = 0, 0, 0, len(m)-ICMPLen
	p.IsFragment, p.Seq, p.Ack, p.Window = false, 0, 0, 0
	return true
}

// setIPReply finishes the IP header of an answer built in p.B: swapped addresses (p.Src/p.Dst
// already swapped by the caller for MakePortUnreachable; swapped here for MakeTCPReset when they
// still match the buffer), length n, TTL/hop limit ttl and, for IPv4, a fresh header checksum.
func (p *Packet) setIPReply(n int, ttl uint8) {
	b := p.B
	if p.Version == 4 {
		if p.Proto == ProtoTCP {
			var s [4]byte
			copy(s[:], b[12:16])
			copy(b[12:16], b[16:20])
			copy(b[16:20], s[:])
			p.Src, p.Dst = p.Dst, p.Src
			b[0] = 0x45 // options of the original do not apply to the answer
			// Nor does fragmentation: an answer built from a first fragment is whole (MF and
			// the offset cleared, DF kept).
			b[6] &= 0x40
			b[7] = 0
			if p.L4Off != IPv4MinLen {
				copy(b[IPv4MinLen:], b[p.L4Off:n])
				n -= p.L4Off - IPv4MinLen
				p.L4Off = IPv4MinLen
				p.B = b[:n]
				b = p.B
			}
		}
		binary.BigEndian.PutUint16(b[2:], uint16(n))
		b[8] = ttl
		binary.BigEndian.PutUint16(b[10:], 0)
		binary.BigEndian.PutUint16(b[10:], ^Checksum(b[:IPv4MinLen], 0))
		return
	}
	if p.Proto == ProtoTCP {
		var s [16]byte
		copy(s[:], b[8:24])
		copy(b[8:24], b[24:40])
		copy(b[24:40], s[:])
		p.Src, p.Dst = p.Dst, p.Src
		if p.L4Off != IPv6Len { // extension headers of the original do not apply
			copy(b[IPv6Len:], b[p.L4Off:n])
			n -= p.L4Off - IPv6Len
			p.L4Off = IPv6Len
			p.B = b[:n]
			b = p.B
		}
		b[6] = ProtoTCP
	}
	binary.BigEndian.PutUint16(b[4:], uint16(n-IPv6Len))
	b[7] = ttl
}
