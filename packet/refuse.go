package packet

import "encoding/binary"

// Answers the gateway builds in place when a service refuses a new flow (no healthy backend and
// the policy says refuse): a TCP RST for a connection attempt, an ICMP port unreachable for UDP.
// They are rare, so checksums are computed from scratch.

// Quote limits of an ICMP error: the whole error fits the minimum reassembly size of IPv4
// (576 bytes, RFC 1812 4.3.2.3) or the IPv6 minimum MTU (1280 bytes, RFC 4443 2.4).
const (
	icmpv4ErrorMax = 576
	icmpv6ErrorMax = 1280
)

// MakeTCPReset turns a TCP segment into the RST a closed port answers with (RFC 9293 3.10.7.1):
// addresses and ports swapped; for a segment with ACK, seq = its ack and no ACK; otherwise
// seq 0, ack = its seq + its length (SYN and FIN count one), flags RST+ACK. Options and payload
// are dropped. It reports false (nothing changed) for anything but a parsed TCP segment.
func (p *Packet) MakeTCPReset() bool {
	if p.Proto != ProtoTCP || p.L4Off < IPv4MinLen || p.L4Off+TCPMinLen > len(p.B) {
		return false
	}
	t := TCP(p.B[p.L4Off:])
	seq, ack, flags := t.Seq(), t.Ack(), t.Flags()
	segLen := uint32(p.PayloadLen)
	if flags&TCPSyn != 0 {
		segLen++
	}
	if flags&TCPFin != 0 {
		segLen++
	}
	sp, dp := t.SrcPort(), t.DstPort()
	t.SetSrcPort(dp)
	t.SetDstPort(sp)
	if flags&TCPAck != 0 {
		t.SetSeq(ack)
		t.SetAck(0)
		t.SetFlags(TCPRst)
	} else {
		t.SetSeq(0)
		t.SetAck(seq + segLen)
		t.SetFlags(TCPRst | TCPAck)
	}
	t.SetDataOffset(TCPMinLen) // no options
	t.SetWindow(0)
	t.SetUrgentPtr(0)
	n := p.L4Off + TCPMinLen
	p.B = p.B[:n]
	p.setIPReply(n, echoReplyTTL)
	t = TCP(p.B[p.L4Off:])
	t.SetChecksum(0)
	t.SetChecksum(^Checksum(t, p.pseudoHeaderSum(len(t))))
	p.SrcPort, p.DstPort = dp, sp
	p.TCPFlags, p.PayloadLen, p.IsFragment, p.PartialCsum = t.Flags(), 0, false, false
	p.Seq, p.Ack, p.Window = t.Seq(), t.Ack(), 0
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
	hl, limit, typ, code, proto := IPv4MinLen, icmpv4ErrorMax, ICMPv4DestUnreach, ICMPv4PortUnreach, ProtoICMP
	if p.Version == 6 {
		hl, limit, typ, code, proto = IPv6Len, icmpv6ErrorMax, ICMPv6DestUnreach, ICMPv6PortUnreach, ProtoICMPv6
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
		initIPv4(b, proto)
		a, d := src.As4(), dst.As4()
		copy(b[ipv4SrcOff:], a[:])
		copy(b[ipv4DstOff:], d[:])
	} else {
		initIPv6(b, proto)
		a, d := src.As16(), dst.As16()
		copy(b[ipv6SrcOff:], a[:])
		copy(b[ipv6DstOff:], d[:])
	}
	m := ICMP(b[hl:])
	m[icmpTypeOff], m[icmpCodeOff] = typ, code
	clear(m[icmpCsumOff:ICMPLen]) // checksum and the unused rest of the header
	p.B = b
	p.Src, p.Dst, p.Proto, p.L4Off = src, dst, proto, hl
	p.setIPReply(n, echoReplyTTL)
	sum := uint32(0)
	if proto == ProtoICMPv6 {
		sum = p.pseudoHeaderSum(len(m))
	}
	m.SetChecksum(^Checksum(m, sum))
	p.ICMPType, p.ICMPCode, p.IsICMPError = typ, code, true
	p.SrcPort, p.DstPort, p.TCPFlags, p.PayloadLen = 0, 0, 0, len(m)-ICMPLen
	p.IsFragment, p.Seq, p.Ack, p.Window, p.PartialCsum = false, 0, 0, 0, false
	return true
}

// initIPv4 writes the fixed fields of a new IPv4 header without options: version and IHL, TOS,
// identification and fragment field zero, protocol proto (setIPReply sets length, TTL, checksum).
func initIPv4(b []byte, proto Proto) {
	b[ipv4VerIHLOff] = 4<<4 | IPv4MinLen/4
	b[ipv4TOSOff] = 0
	binary.BigEndian.PutUint16(b[ipv4IDOff:], 0)
	binary.BigEndian.PutUint16(b[ipv4FragOff:], 0)
	b[ipv4ProtoOff] = uint8(proto)
}

// initIPv6 writes the first word (version 6, traffic class and flow label zero) and the next
// header of a new IPv6 header.
func initIPv6(b []byte, proto Proto) {
	binary.BigEndian.PutUint32(b[0:], 6<<28)
	b[ipv6NextHeaderOff] = uint8(proto)
}

// pseudoHeaderSum is the pseudo-header sum of p's L4 segment of length bytes, read from p's IP
// header (its addresses must be final: no routing header).
func (p *Packet) pseudoHeaderSum(length int) uint32 {
	if p.Version == 4 {
		return IPv4(p.B).PseudoHeaderSum(p.Proto, length)
	}
	return IPv6(p.B).PseudoHeaderSum(p.Proto, length)
}

// setIPReply finishes the IP header of an answer built in p.B: swapped addresses (p.Src/p.Dst
// already swapped by the caller for MakePortUnreachable; swapped here for MakeTCPReset when they
// still match the buffer), length n, TTL/hop limit ttl and, for IPv4, a fresh header checksum.
func (p *Packet) setIPReply(n int, ttl uint8) {
	if p.Proto == ProtoTCP {
		n = p.reverseTCPHeader(n)
	}
	b := p.B
	if p.Version == 4 {
		h := IPv4(b[:IPv4MinLen])
		h.SetTotalLen(uint16(n))
		b[ipv4TTLOff] = ttl
		h.SetHeaderChecksum()
		return
	}
	IPv6(b).SetPayloadLen(uint16(n - IPv6Len))
	b[ipv6HopLimitOff] = ttl
}

// reverseTCPHeader turns the IP header of a TCP segment into the header of the answer: addresses
// swapped, the original's IPv4 options, fragmentation (MF and offset; DF kept) and IPv6 extension
// headers dropped, the L4 header moved up behind the fixed header. It returns the new length of
// the n bytes in p.B.
func (p *Packet) reverseTCPHeader(n int) int {
	p.swapAddrs()
	b, hl := p.B, IPv6Len
	if p.Version == 4 {
		hl = IPv4MinLen
		b[ipv4VerIHLOff] = 4<<4 | IPv4MinLen/4
		// An answer built from a first fragment is whole.
		binary.BigEndian.PutUint16(b[ipv4FragOff:], IPv4(b).frag()&ipv4FlagDF)
	} else {
		b[ipv6NextHeaderOff] = uint8(ProtoTCP)
	}
	if p.L4Off != hl {
		copy(b[hl:], b[p.L4Off:n])
		n -= p.L4Off - hl
		p.L4Off = hl
		p.B = b[:n]
	}
	return n
}
