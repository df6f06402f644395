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
	Proto    Proto  // L4 protocol after IPv6 extension headers
	L4Off    int    // offset of the L4 header in B
	Src, Dst netip.Addr
	// TCP/UDP ports. ICMP echo request: SrcPort=id, DstPort=0; echo reply: SrcPort=0,
	// DstPort=id (so a reversed request tuple matches its reply).
	SrcPort, DstPort uint16
	TCPFlags         TCPFlags
	// TCP sequence and acknowledgement numbers and the unscaled window (for conntrack's
	// window tracking); zero for other protocols and for quoted segments cut before them.
	Seq, Ack           uint32
	Window             uint16
	ICMPType, ICMPCode uint8
	IsICMPError        bool // dest unreachable / packet too big / time exceeded / parameter problem
	PayloadLen         int  // L4 payload bytes (TCP after options); for Inner: quoted bytes only
	// PartialCsum says the L4 checksum field holds only the folded pseudo-header sum
	// (CHECKSUM_PARTIAL: the kernel finishes it after the TUN). The device's read sets it (Parse
	// clears it); SetSrc and SetDst then fold address changes into that sum and leave port
	// changes to the kernel, and the SYN proxy leaves its sequence adjustments unsummed.
	PartialCsum bool
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
	h := IPv4(b)
	ihl := h.HeaderLen()
	if ihl < IPv4MinLen {
		return ErrBadIHL
	}
	tot := int(h.TotalLen())
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
	p.Src, p.Dst, p.Proto = h.Src(), h.Dst(), h.Protocol()
	if h.FragmentOffset() != 0 {
		return ErrFragment
	}
	p.IsFragment = h.MoreFragments()
	switch p.Proto {
	case ProtoTCP, ProtoUDP, ProtoICMP:
	default:
		return ErrUnsupportedProto
	}
	return p.parseL4(ihl, lenient)
}

// IPv6 extension header numbers walked by parse6, and the fields it reads in them (RFC 8200 4).
const (
	ipv6HopByHop = 0
	ipv6Routing  = 43
	ipv6Fragment = 44
	ipv6DestOpts = 60

	extNextOff        = 0 // next header, in every extension header
	extLenOff         = 1 // length in 8-byte units, not counting the first 8 (not in Fragment)
	extSegLeftOff     = 3 // Routing: segments left
	extFragOff        = 2 // Fragment: offset (13 bits), 2 reserved bits and M
	extFragLen        = 8
	extFragOffMask    = 0xfff8
	extFragMoreFollow = 1
)

func (p *Packet) parse6(b []byte, lenient bool) Reason {
	p.Version = 6
	if len(b) < IPv6Len {
		return ErrShort
	}
	h := IPv6(b)
	plen := int(h.PayloadLen())
	if plen == 0 || (!lenient && IPv6Len+plen > len(b)) {
		return ErrBadTotalLen // 0 would be a jumbogram, which a TUN never delivers
	}
	if IPv6Len+plen < len(b) {
		b = b[:IPv6Len+plen]
	}
	p.B = b
	p.Src, p.Dst = h.Src(), h.Dst()
	if p.Src.Is4In6() || p.Dst.Is4In6() {
		return ErrBadAddr
	}
	return p.walkExt(h.NextHeader(), lenient)
}

// walkExt follows the IPv6 extension headers from the fixed header's next header to the L4 one.
func (p *Packet) walkExt(next uint8, lenient bool) Reason {
	b, off := p.B, IPv6Len
	for {
		switch Proto(next) {
		case ProtoTCP, ProtoUDP, ProtoICMPv6:
			p.Proto = Proto(next)
			return p.parseL4(off, lenient)
		}
		switch next {
		case ipv6HopByHop, ipv6Routing, ipv6DestOpts:
			if next == ipv6HopByHop && off != IPv6Len {
				return ErrBadExtHeader // RFC 8200 4.1: hop-by-hop only right after the header
			}
			if off+8 > len(b) {
				return ErrBadExtHeader
			}
			if next == ipv6Routing && b[off+extSegLeftOff] != 0 {
				// Segments left: Dst is not the final destination, which is what the
				// L4 pseudo-header (and so any NAT of it) would have to use.
				return ErrBadExtHeader
			}
			l := (int(b[off+extLenOff]) + 1) * 8
			if off+l > len(b) {
				return ErrBadExtHeader
			}
			next, off = b[off+extNextOff], off+l
		case ipv6Fragment:
			if off+extFragLen > len(b) || p.IsFragment {
				return ErrBadExtHeader
			}
			fo := binary.BigEndian.Uint16(b[off+extFragOff:])
			next = b[off+extNextOff]
			if fo&extFragOffMask != 0 {
				p.Proto = Proto(next)
				return ErrFragment
			}
			p.IsFragment = fo&extFragMoreFollow != 0
			off += extFragLen
		default:
			p.Proto = Proto(next)
			return ErrUnsupportedProto
		}
	}
}

func (p *Packet) parseL4(off int, lenient bool) Reason {
	p.L4Off = off
	rem := len(p.B) - off
	switch p.Proto {
	case ProtoTCP:
		return p.parseTCP(TCP(p.B[off:]), lenient)
	case ProtoUDP:
		if rem < UDPLen {
			return ErrTruncatedL4
		}
		h := UDP(p.B[off:])
		p.SrcPort, p.DstPort = h.SrcPort(), h.DstPort()
		p.PayloadLen = rem - UDPLen
		if !lenient && !p.IsFragment {
			ulen := int(h.Length())
			if ulen < UDPLen || ulen > rem {
				return ErrTruncatedL4
			}
			p.PayloadLen = ulen - UDPLen
		}
	case ProtoICMP, ProtoICMPv6:
		if rem < ICMPLen {
			return ErrTruncatedL4
		}
		h := ICMP(p.B[off:])
		p.ICMPType, p.ICMPCode = h.Type(), h.Code()
		p.PayloadLen = rem - ICMPLen
		switch echoSide(p.Proto, p.ICMPType) {
		case sideSrc:
			p.SrcPort = h.Ident()
		case sideDst:
			p.DstPort = h.Ident()
		}
		p.IsICMPError = isICMPError(p.Proto, p.ICMPType)
	}
	return OK
}

// parseTCP reads the TCP header h (the rest of the packet). A lenient (quoted) header may stop
// after the ports: what is there is read.
func (p *Packet) parseTCP(h TCP, lenient bool) Reason {
	rem := len(h)
	if rem < 8 || (!lenient && rem < TCPMinLen) {
		return ErrTruncatedL4
	}
	p.SrcPort, p.DstPort = h.SrcPort(), h.DstPort()
	if rem > tcpFlagsOff {
		p.TCPFlags = h.Flags()
	}
	if rem < TCPMinLen {
		return OK
	}
	p.Seq, p.Ack, p.Window = h.Seq(), h.Ack(), h.Window()
	switch doff := h.DataOffset(); {
	case doff >= TCPMinLen && doff <= rem:
		p.PayloadLen = rem - doff
	case !lenient:
		return ErrTruncatedL4
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

func echoSide(proto Proto, typ uint8) side {
	switch {
	case proto == ProtoICMP && typ == ICMPv4EchoRequest, proto == ProtoICMPv6 && typ == ICMPv6EchoRequest:
		return sideSrc
	case proto == ProtoICMP && typ == ICMPv4EchoReply, proto == ProtoICMPv6 && typ == ICMPv6EchoReply:
		return sideDst
	}
	return sideNone
}

// IsEchoRequest reports an ICMP or ICMPv6 echo request (the only ICMP that starts a flow).
func (p *Packet) IsEchoRequest() bool { return echoSide(p.Proto, p.ICMPType) == sideSrc }

// IsEchoReply reports an ICMP or ICMPv6 echo reply.
func (p *Packet) IsEchoReply() bool { return echoSide(p.Proto, p.ICMPType) == sideDst }

func isICMPError(proto Proto, typ uint8) bool {
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
	return IPv4(p.B[:IPv4(p.B).HeaderLen()])
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
