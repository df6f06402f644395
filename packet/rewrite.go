package packet

import "net/netip"

// end names one end of a packet's flow.
type end uint8

const (
	endSrc end = iota
	endDst
)

// SetSrc rewrites the source address and port (ICMP echo request: the identifier; ICMP
// errors and other ICMP: port ignored) and fixes the IPv4 header checksum and the L4
// checksum incrementally (RFC 1624), pseudo-header included. With p.PartialCsum the L4
// checksum field holds only the folded, non-inverted pseudo-header sum (CHECKSUM_PARTIAL
// from a TUN with offloads): address changes are folded into that sum, port changes are
// left for the kernel to sum. IPv4 UDP checksum 0 stays 0. An address of the other
// family is ignored (IPv4-mapped IPv6 counts as IPv4).
func (p *Packet) SetSrc(a netip.Addr, port uint16) {
	if p.rewrite(endSrc, a, port) {
		p.Src = a.Unmap()
		if p.portSide()&sideSrc != 0 {
			p.SrcPort = port
		}
	}
}

// SetDst is SetSrc for the destination address and port (ICMP echo reply: the identifier).
func (p *Packet) SetDst(a netip.Addr, port uint16) {
	if p.rewrite(endDst, a, port) {
		p.Dst = a.Unmap()
		if p.portSide()&sideDst != 0 {
			p.DstPort = port
		}
	}
}

// SetInner rewrites in, the packet quoted by the ICMP error p as p.Inner returned it, to travel
// from src to dst (addresses and ports or echo id), fixing the quoted IPv4 header checksum, the
// quoted L4 checksum when the quote holds it (IPv4 UDP 0 stays 0), and p's ICMP checksum, all
// incrementally, as a NAT must (RFC 5508 section 4). An end whose address is of the other family
// is left alone.
func (p *Packet) SetInner(in *Packet, src, dst netip.AddrPort) {
	if !p.IsICMPError || p.L4Off+ICMPLen >= len(p.B) || in.Version != p.Version ||
		len(in.B) == 0 || &in.B[0] != &p.B[p.L4Off+ICMPLen] {
		return // in is not p's quote (or of another IP version: refused by Inner)
	}
	// The words the rewrite changes lie in the quoted IP header and the first bytes of its L4
	// header, at even offsets from p's ICMP header: the change of their sum is what p's ICMP
	// checksum takes.
	region := in.B[:min(len(in.B), in.L4Off+TCPMinLen)]
	before := Checksum(region, 0)
	changed := in.rewrite(endSrc, src.Addr(), src.Port())
	changed = in.rewrite(endDst, dst.Addr(), dst.Port()) || changed
	if changed {
		ICMP(p.B[p.L4Off:]).UpdateChecksum(SumDelta(wordDelta(before, Checksum(region, 0))))
	}
}

// portSide says which tuple side the port argument of SetSrc/SetDst lands on.
func (p *Packet) portSide() side {
	switch p.Proto {
	case ProtoTCP, ProtoUDP:
		return sideSrc | sideDst
	}
	return echoSide(p.Proto, p.ICMPType)
}

// rewrite changes the address and port of end e of the parsed packet p and the checksums that
// cover them: the address (the IPv4 header checksum fixed) gives the pseudo-header change that
// setL4 folds into the L4 checksum. For a quoted packet p.B may end inside the L4 header: only
// quoted fields are touched. It reports false, touching nothing, for an unparsed packet or an
// address of the other family.
func (p *Packet) rewrite(e end, a netip.Addr, port uint16) bool {
	if p.L4Off < IPv4MinLen || p.L4Off+8 > len(p.B) || p.Version == 6 && p.L4Off < IPv6Len {
		return false // not a parsed packet: touch nothing
	}
	var pseudo SumDelta
	switch a = a.Unmap(); {
	case p.Version == 4 && a.Is4():
		if e == endDst {
			pseudo = IPv4(p.B).SetDstWithChecksumUpdate(a.As4())
		} else {
			pseudo = IPv4(p.B).SetSrcWithChecksumUpdate(a.As4())
		}
	case p.Version == 6 && a.Is6():
		if e == endDst {
			pseudo = IPv6(p.B).SetDst(a.As16())
		} else {
			pseudo = IPv6(p.B).SetSrc(a.As16())
		}
	default:
		return false
	}
	p.setL4(e, port, pseudo)
	return true
}

// setL4 writes the port (ICMP echo: the identifier, on the end that carries it) of end e and
// updates the L4 checksum by that change and by pseudo, the address change, where the checksum
// covers a pseudo-header.
func (p *Packet) setL4(e end, port uint16, pseudo SumDelta) {
	l4, partial := p.B[p.L4Off:], p.PartialCsum
	switch p.Proto {
	case ProtoTCP:
		h := TCP(l4)
		var pd SumDelta
		if e == endDst {
			pd = h.SetDstPort(port)
		} else {
			pd = h.SetSrcPort(port)
		}
		if len(h) >= tcpCsumOff+2 { // a quoted header may be cut before its checksum
			h.UpdateChecksum(l4Delta(pd, pseudo, partial), partial)
		}
	case ProtoUDP:
		h := UDP(l4)
		unused := !partial && p.Version == 4 && h.Checksum() == 0 // no checksum in use: stays 0 (RFC 768)
		var pd SumDelta
		if e == endDst {
			pd = h.SetDstPort(port)
		} else {
			pd = h.SetSrcPort(port)
		}
		if !unused {
			h.UpdateChecksum(l4Delta(pd, pseudo, partial), partial)
		}
	case ProtoICMP, ProtoICMPv6:
		h := ICMP(l4)
		var pd SumDelta
		if s := echoSide(p.Proto, h.Type()); s == sideSrc && e == endSrc || s == sideDst && e == endDst {
			pd = h.SetIdent(port)
		}
		if p.Proto == ProtoICMP {
			pseudo = 0 // ICMPv4 has no pseudo-header
		}
		updateField(l4[icmpCsumOff:], l4Delta(pd, pseudo, partial), partial)
	}
}

// l4Delta is what an L4 checksum field takes for a port change and a pseudo-header change: a
// CHECKSUM_PARTIAL field holds only the pseudo-header sum.
func l4Delta(port, pseudo SumDelta, partial bool) SumDelta {
	if partial {
		return pseudo
	}
	return port + pseudo
}

// MakeEchoReply turns an ICMP/ICMPv6 echo request into its reply in place: addresses
// swapped, type set to reply, TTL/hop limit reset to 64, checksums fixed incrementally
// (swapping addresses changes neither the IPv4 header sum nor the pseudo-header sum).
// It is a no-op for anything but an echo request. The ICMP checksum must be complete
// (not CHECKSUM_PARTIAL).
func (p *Packet) MakeEchoReply() {
	if !p.IsEchoRequest() || p.L4Off < IPv4MinLen || p.L4Off+ICMPLen > len(p.B) {
		return
	}
	p.swapAddrs()
	reply := ICMPv6EchoReply
	if p.Version == 4 {
		reply = ICMPv4EchoReply
		IPv4(p.B).SetTTL(echoReplyTTL)
	} else {
		p.B[ipv6HopLimitOff] = echoReplyTTL
	}
	ICMP(p.B[p.L4Off:]).SetType(reply)
	p.SrcPort, p.DstPort = 0, p.SrcPort
	p.ICMPType = reply
}

// echoReplyTTL is the TTL (hop limit) of the answers built here: echo replies and refusals.
const echoReplyTTL = 64

// swapAddrs swaps the source and destination addresses in the IP header and in p; neither the
// IPv4 header sum nor a pseudo-header sum changes.
func (p *Packet) swapAddrs() {
	src, dst, n := ipv4SrcOff, ipv4DstOff, 4
	if p.Version == 6 {
		src, dst, n = ipv6SrcOff, ipv6DstOff, 16
	}
	for i := range n {
		p.B[src+i], p.B[dst+i] = p.B[dst+i], p.B[src+i]
	}
	p.Src, p.Dst = p.Dst, p.Src
}
