package packet

import (
	"encoding/binary"
	"net/netip"
)

// Packet is a parsed view over one IP packet (IPv4 or IPv6). It holds the slice,
// offsets and the few fields the data path needs; it never copies the payload.
// The zero value is invalid until Parse.
type Packet struct {
	B        []byte // the whole packet, len(B) == IP total length after Parse (trailing bytes cut)
	Version  uint8  // 4 or 6
	Proto    uint8  // L4 protocol after IPv6 extension headers (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6)
	L4Off    int    // offset of the L4 header in B
	Src, Dst netip.Addr
	// TCP/UDP ports. ICMP echo request: SrcPort=id, DstPort=0; echo reply: SrcPort=0,
	// DstPort=id (so a reversed request tuple matches its reply).
	SrcPort, DstPort uint16
	TCPFlags         uint8 // FIN=0x01 SYN=0x02 RST=0x04 PSH=0x08 ACK=0x10 ...
	// TCP sequence and acknowledgement numbers and the unscaled window (for conntrack's
	// window tracking); zero for other protocols and for quoted segments cut before them.
	Seq, Ack           uint32
	Window             uint16
	ICMPType, ICMPCode uint8
	IsICMPError        bool // dest unreachable / packet too big / time exceeded / parameter problem
	PayloadLen         int  // L4 payload bytes (TCP after options); for Inner: quoted bytes only
	// IsFragment marks a first fragment (MF set, offset 0): the L4 header is here but the
	// payload continues in later fragments, so L4 lengths cannot be checked against B.
	IsFragment bool
}

// Parse validates b as an IP packet and fills p, aliasing b. On refusal it returns why;
// the fields parsed before the failing check (Version, addresses, Proto) stay set so
// the caller can log or count them, the rest are zero.
func (p *Packet) Parse(b []byte) Reason { return p.parse(b, false) }

// Inner parses the packet embedded in an ICMP error (leniently: its total length may
// exceed what is there; only 8 bytes of L4 are required). The returned Packet's B
// aliases p.B. An inner packet of another IP version than p is refused (ErrBadVersion).
func (p *Packet) Inner() (Packet, Reason) {
	var in Packet
	if !p.IsICMPError || p.L4Off+ICMPLen > len(p.B) {
		return in, ErrUnsupportedProto
	}
	r := in.parse(p.B[p.L4Off+ICMPLen:], true)
	if r == OK && in.Version != p.Version {
		r = ErrBadVersion
	}
	return in, r
}

func (p *Packet) parse(b []byte, lenient bool) Reason {
	*p = Packet{}
	if len(b) < 1 {
		return ErrShort
	}
	switch b[0] >> 4 {
	case 4:
		return p.parse4(b, lenient)
	case 6:
		return p.parse6(b, lenient)
	}
	return ErrBadVersion
}

func (p *Packet) parse4(b []byte, lenient bool) Reason {
	p.Version = 4
	if len(b) < IPv4MinLen {
		return ErrShort
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < IPv4MinLen {
		return ErrBadIHL
	}
	tot := int(binary.BigEndian.Uint16(b[2:]))
	if tot < IPv4MinLen || (!lenient && tot > len(b)) {
		return ErrBadTotalLen
	}
	if tot < len(b) {
		b = b[:tot]
	}
	if ihl > len(b) {
		if lenient && ihl <= tot {
			return ErrShort // the quote cut the header itself
		}
		return ErrBadIHL
	}
	p.B = b
	p.Src = netip.AddrFrom4([4]byte(b[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	p.Proto = b[9]
	frag := binary.BigEndian.Uint16(b[6:])
	if frag&0x1fff != 0 {
		return ErrFragment
	}
	p.IsFragment = frag&0x2000 != 0
	switch p.Proto {
	case ProtoTCP, ProtoUDP, ProtoICMP:
	default:
		return ErrUnsupportedProto
	}
	return p.parseL4(ihl, lenient)
}

// IPv6 extension header numbers walked by parse6.
const (
	ipv6HopByHop = 0
	ipv6Routing  = 43
	ipv6Fragment = 44
	ipv6DestOpts = 60
)

func (p *Packet) parse6(b []byte, lenient bool) Reason {
	p.Version = 6
	if len(b) < IPv6Len {
		return ErrShort
	}
	plen := int(binary.BigEndian.Uint16(b[4:]))
	if plen == 0 || (!lenient && IPv6Len+plen > len(b)) {
		return ErrBadTotalLen // 0 would be a jumbogram, which a TUN never delivers
	}
	if IPv6Len+plen < len(b) {
		b = b[:IPv6Len+plen]
	}
	p.B = b
	p.Src = netip.AddrFrom16([16]byte(b[8:24]))
	p.Dst = netip.AddrFrom16([16]byte(b[24:40]))
	if p.Src.Is4In6() || p.Dst.Is4In6() {
		return ErrBadAddr
	}
	next, off := b[6], IPv6Len
	for {
		switch next {
		case ProtoTCP, ProtoUDP, ProtoICMPv6:
			p.Proto = next
			return p.parseL4(off, lenient)
		case ipv6HopByHop, ipv6Routing, ipv6DestOpts:
			if next == ipv6HopByHop && off != IPv6Len {
				return ErrBadExtHeader // RFC 8200 4.1: hop-by-hop only right after the header
			}
			if off+8 > len(b) {
				return ErrBadExtHeader
			}
			if next == ipv6Routing && b[off+3] != 0 {
				// Segments left: Dst is not the final destination, which is what the
				// L4 pseudo-header (and so any NAT of it) would have to use.
				return ErrBadExtHeader
			}
			l := (int(b[off+1]) + 1) * 8
			if off+l > len(b) {
				return ErrBadExtHeader
			}
			next, off = b[off], off+l
		case ipv6Fragment:
			if off+8 > len(b) || p.IsFragment {
				return ErrBadExtHeader
			}
			fo := binary.BigEndian.Uint16(b[off+2:])
			next = b[off]
			if fo&0xfff8 != 0 {
				p.Proto = next
				return ErrFragment
			}
			p.IsFragment = fo&1 != 0
			off += 8
		default:
			p.Proto = next
			return ErrUnsupportedProto
		}
	}
}

func (p *Packet) parseL4(off int, lenient bool) Reason {
	b := p.B
	p.L4Off = off
	rem := len(b) - off
	l4 := b[off:]
	switch p.Proto {
	case ProtoTCP:
		if rem < 8 || (!lenient && rem < TCPMinLen) {
			return ErrTruncatedL4
		}
		p.SrcPort = binary.BigEndian.Uint16(l4[0:])
		p.DstPort = binary.BigEndian.Uint16(l4[2:])
		if rem >= 14 {
			p.TCPFlags = l4[13]
		}
		if rem >= TCPMinLen {
			p.Seq = binary.BigEndian.Uint32(l4[4:])
			p.Ack = binary.BigEndian.Uint32(l4[8:])
			p.Window = binary.BigEndian.Uint16(l4[14:])
			doff := int(l4[12]>>4) * 4
			switch {
			case doff >= TCPMinLen && doff <= rem:
				p.PayloadLen = rem - doff
			case !lenient:
				return ErrTruncatedL4
			}
		}
	case ProtoUDP:
		if rem < UDPLen {
			return ErrTruncatedL4
		}
		p.SrcPort = binary.BigEndian.Uint16(l4[0:])
		p.DstPort = binary.BigEndian.Uint16(l4[2:])
		p.PayloadLen = rem - UDPLen
		if !lenient && !p.IsFragment {
			ulen := int(binary.BigEndian.Uint16(l4[4:]))
			if ulen < UDPLen || ulen > rem {
				return ErrTruncatedL4
			}
			p.PayloadLen = ulen - UDPLen
		}
	case ProtoICMP, ProtoICMPv6:
		if rem < ICMPLen {
			return ErrTruncatedL4
		}
		p.ICMPType, p.ICMPCode = l4[0], l4[1]
		p.PayloadLen = rem - ICMPLen
		id := binary.BigEndian.Uint16(l4[4:])
		switch echoSide(p.Proto, p.ICMPType) {
		case sideSrc:
			p.SrcPort = id
		case sideDst:
			p.DstPort = id
		}
		p.IsICMPError = isICMPError(p.Proto, p.ICMPType)
	}
	return OK
}

// side says which end of a flow tuple an ICMP echo identifier belongs to.
type side uint8

const (
	sideNone side = iota
	sideSrc
	sideDst
)

func echoSide(proto, typ uint8) side {
	switch {
	case proto == ProtoICMP && typ == ICMPv4EchoRequest, proto == ProtoICMPv6 && typ == ICMPv6EchoRequest:
		return sideSrc
	case proto == ProtoICMP && typ == ICMPv4EchoReply, proto == ProtoICMPv6 && typ == ICMPv6EchoReply:
		return sideDst
	}
	return sideNone
}

func isICMPError(proto, typ uint8) bool {
	if proto == ProtoICMP {
		return typ == ICMPv4DestUnreach || typ == ICMPv4TimeExceeded || typ == ICMPv4ParamProblem
	}
	return proto == ProtoICMPv6 && typ >= ICMPv6DestUnreach && typ <= ICMPv6ParamProblem
}

// IPv4 returns the IPv4 header view (options included), or nil for IPv6.
func (p *Packet) IPv4() IPv4 {
	if p.Version != 4 {
		return nil
	}
	return IPv4(p.B[:int(p.B[0]&0x0f)*4])
}

// IPv6 returns the fixed IPv6 header view, or nil for IPv4.
func (p *Packet) IPv6() IPv6 {
	if p.Version != 6 {
		return nil
	}
	return IPv6(p.B[:IPv6Len])
}

// TCP returns the TCP header view, or nil if p is not TCP. For an Inner packet the view
// may be shorter than TCPMinLen (only the quoted bytes).
func (p *Packet) TCP() TCP {
	if p.Proto != ProtoTCP {
		return nil
	}
	return TCP(p.B[p.L4Off:])
}

// UDP returns the UDP header view, or nil if p is not UDP.
func (p *Packet) UDP() UDP {
	if p.Proto != ProtoUDP {
		return nil
	}
	return UDP(p.B[p.L4Off : p.L4Off+UDPLen])
}

// ICMP returns the ICMP/ICMPv6 message view (header and body), or nil otherwise.
func (p *Packet) ICMP() ICMP {
	if p.Proto != ProtoICMP && p.Proto != ProtoICMPv6 {
		return nil
	}
	return ICMP(p.B[p.L4Off:])
}

// Payload returns the L4 payload (PayloadLen bytes after the L4 header).
func (p *Packet) Payload() []byte {
	start := len(p.B) - p.PayloadLen
	if p.Proto == ProtoUDP {
		start = p.L4Off + UDPLen // UDP length may end before the IP payload does
	}
	return p.B[start : start+p.PayloadLen]
}
