package packet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Proto is an IP protocol number (IANA "Assigned Internet Protocol Numbers"): the IPv4 protocol
// field or the IPv6 next header that names the L4 header.
type Proto uint8

// Protocol numbers the data path handles.
const (
	ProtoICMP   Proto = 1
	ProtoTCP    Proto = 6
	ProtoUDP    Proto = 17
	ProtoICMPv6 Proto = 58
)

// String is the lower-case name used in logs, the API and metric labels ("tcp", "udp", "icmp",
// "icmpv6"), or "proto<N>" for others.
func (p Proto) String() string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMP:
		return "icmp"
	case ProtoICMPv6:
		return "icmpv6"
	}
	return fmt.Sprintf("proto%d", uint8(p))
}

// TCPFlags is the flag byte of a TCP header (RFC 9293, RFC 3168 for ECE and CWR).
type TCPFlags uint8

// TCP flag bits.
const (
	TCPFin TCPFlags = 0x01
	TCPSyn TCPFlags = 0x02
	TCPRst TCPFlags = 0x04
	TCPPsh TCPFlags = 0x08
	TCPAck TCPFlags = 0x10
	TCPUrg TCPFlags = 0x20
	TCPEce TCPFlags = 0x40
	TCPCwr TCPFlags = 0x80
)

// TCPConnFlags are the flags that decide a segment's part in opening and closing a connection;
// PSH, URG, ECE and CWR ride along without changing it.
const TCPConnFlags = TCPFin | TCPSyn | TCPRst | TCPAck

// Attempt reports a connection attempt: SYN without ACK, RST or FIN.
func (f TCPFlags) Attempt() bool { return f&TCPConnFlags == TCPSyn }

// ICMP message types the gateway distinguishes (RFC 792, RFC 4443).
const (
	ICMPv4EchoReply      uint8 = 0
	ICMPv4DestUnreach    uint8 = 3
	ICMPv4EchoRequest    uint8 = 8
	ICMPv4TimeExceeded   uint8 = 11
	ICMPv4ParamProblem   uint8 = 12
	ICMPv4FragNeededCode uint8 = 4 // code of DestUnreach: fragmentation needed and DF set
	ICMPv4PortUnreach    uint8 = 3 // code of DestUnreach: port unreachable

	ICMPv6DestUnreach  uint8 = 1
	ICMPv6PacketTooBig uint8 = 2
	ICMPv6TimeExceeded uint8 = 3
	ICMPv6ParamProblem uint8 = 4
	ICMPv6EchoRequest  uint8 = 128
	ICMPv6EchoReply    uint8 = 129
	ICMPv6PortUnreach  uint8 = 4 // code of DestUnreach: port unreachable
)

// Fixed header sizes.
const (
	IPv4MinLen = 20
	IPv6Len    = 40
	TCPMinLen  = 20
	UDPLen     = 8
	ICMPLen    = 8 // type, code, checksum and the 4-byte rest-of-header
)

// Field offsets, from the start of each header (RFC 791, RFC 8200, RFC 9293, RFC 768, RFC 792).
const (
	ipv4VerIHLOff   = 0
	ipv4TOSOff      = 1
	ipv4TotalLenOff = 2
	ipv4IDOff       = 4
	ipv4FragOff     = 6 // flags (3 bits) and fragment offset (13 bits)
	ipv4TTLOff      = 8
	ipv4ProtoOff    = 9
	ipv4CsumOff     = 10
	ipv4SrcOff      = 12
	ipv4DstOff      = 16

	ipv6PayloadLenOff = 4
	ipv6NextHeaderOff = 6
	ipv6HopLimitOff   = 7
	ipv6SrcOff        = 8
	ipv6DstOff        = 24

	tcpSrcPortOff = 0
	tcpDstPortOff = 2
	tcpSeqOff     = 4
	tcpAckOff     = 8
	tcpDataOffOff = 12
	tcpFlagsOff   = 13
	tcpWindowOff  = 14
	tcpCsumOff    = 16
	tcpUrgentOff  = 18

	udpSrcPortOff = 0
	udpDstPortOff = 2
	udpLengthOff  = 4
	udpCsumOff    = 6

	icmpTypeOff  = 0
	icmpCodeOff  = 1
	icmpCsumOff  = 2
	icmpIdentOff = 4
	icmpSeqOff   = 6
)

// Checksum field offsets in the L4 headers, as a CHECKSUM_PARTIAL request names them (virtio-net
// csum_offset: from the start of the L4 header).
const (
	TCPChecksumOffset = tcpCsumOff
	UDPChecksumOffset = udpCsumOff
)

// IPv4 fragment field bits.
const (
	ipv4FlagDF      = 0x4000
	ipv4FlagMF      = 0x2000
	ipv4FragOffMask = 0x1fff
)

// IPv4 is a view of an IPv4 header (at least IPv4MinLen bytes; options included when
// sliced to IHL). Accessors do not check length beyond what Parse validated.
type IPv4 []byte

// Version returns the IP version nibble.
func (h IPv4) Version() uint8 { return h[ipv4VerIHLOff] >> 4 }

// HeaderLen returns IHL in bytes.
func (h IPv4) HeaderLen() int { return int(h[ipv4VerIHLOff]&0x0f) * 4 }

// TOS returns the DSCP/ECN byte.
func (h IPv4) TOS() uint8 { return h[ipv4TOSOff] }

// TotalLen returns the total length field (header plus payload).
func (h IPv4) TotalLen() uint16 { return binary.BigEndian.Uint16(h[ipv4TotalLenOff:]) }

// ID returns the identification field used for reassembly.
func (h IPv4) ID() uint16 { return binary.BigEndian.Uint16(h[ipv4IDOff:]) }

// DontFragment reports the DF flag (path MTU discovery).
func (h IPv4) DontFragment() bool { return h.frag()&ipv4FlagDF != 0 }

// MoreFragments reports the MF flag: more fragments follow this one.
func (h IPv4) MoreFragments() bool { return h.frag()&ipv4FlagMF != 0 }

// FragmentOffset returns the fragment offset in bytes; non-zero means no L4 header.
func (h IPv4) FragmentOffset() int { return int(h.frag()&ipv4FragOffMask) * 8 }

// Flags returns the three flag bits (reserved, DF, MF) as the top bits of a byte.
func (h IPv4) Flags() uint8 { return h[ipv4FragOff] & 0xe0 }

func (h IPv4) frag() uint16 { return binary.BigEndian.Uint16(h[ipv4FragOff:]) }

// TTL returns the time to live.
func (h IPv4) TTL() uint8 { return h[ipv4TTLOff] }

// Protocol returns the L4 protocol number.
func (h IPv4) Protocol() Proto { return Proto(h[ipv4ProtoOff]) }

// Checksum returns the header checksum field.
func (h IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(h[ipv4CsumOff:]) }

// Src returns the source address.
func (h IPv4) Src() netip.Addr { return netip.AddrFrom4([4]byte(h[ipv4SrcOff:])) }

// Dst returns the destination address.
func (h IPv4) Dst() netip.Addr { return netip.AddrFrom4([4]byte(h[ipv4DstOff:])) }

// Addrs returns the source and destination addresses as they lie in the header (8 bytes).
func (h IPv4) Addrs() []byte { return h[ipv4SrcOff : ipv4DstOff+4] }

// Options returns the options bytes between the fixed header and IHL.
func (h IPv4) Options() []byte { return h[IPv4MinLen:h.HeaderLen()] }

// HeaderChecksumOK verifies the header checksum (the kernel already did on most paths).
func (h IPv4) HeaderChecksumOK() bool { return Checksum(h[:h.HeaderLen()], 0) == 0xffff }

func (h IPv4) setChecksum(c uint16) { binary.BigEndian.PutUint16(h[ipv4CsumOff:], c) }

// SetTTL sets the TTL and fixes the header checksum incrementally.
func (h IPv4) SetTTL(ttl uint8) {
	old := binary.BigEndian.Uint16(h[ipv4TTLOff:])
	h[ipv4TTLOff] = ttl
	h.setChecksum(ChecksumUpdate16(h.Checksum(), old, binary.BigEndian.Uint16(h[ipv4TTLOff:])))
}

// SetTotalLen sets the total length field (the header checksum is left to the caller).
func (h IPv4) SetTotalLen(n uint16) { binary.BigEndian.PutUint16(h[ipv4TotalLenOff:], n) }

// SetHeaderChecksum computes the header checksum from scratch (headers built or resized here).
func (h IPv4) SetHeaderChecksum() {
	h.setChecksum(0)
	h.setChecksum(^Checksum(h[:h.HeaderLen()], 0))
}

// SetSrcWithChecksumUpdate sets the source address, fixes the header checksum incrementally and
// returns the change it makes to the L4 pseudo-header sum.
func (h IPv4) SetSrcWithChecksumUpdate(a [4]byte) SumDelta { return h.setAddr(ipv4SrcOff, a) }

// SetDstWithChecksumUpdate is SetSrcWithChecksumUpdate for the destination address.
func (h IPv4) SetDstWithChecksumUpdate(a [4]byte) SumDelta { return h.setAddr(ipv4DstOff, a) }

func (h IPv4) setAddr(off int, a [4]byte) SumDelta {
	d := setWord32(h[off:], binary.BigEndian.Uint32(a[:]))
	h.setChecksum(d.applyInverted(h.Checksum()))
	return d
}

// PseudoHeaderSum is the sum of the L4 pseudo-header of the IPv4 header h (RFC 9293 3.1) for
// an L4 segment of length bytes.
func (h IPv4) PseudoHeaderSum(proto Proto, length int) uint32 {
	return sumWords(h.Addrs()) + pseudoTail(proto, length)
}

// IPv6 is a view of the fixed 40-byte IPv6 header.
type IPv6 []byte

// Version returns the IP version nibble.
func (h IPv6) Version() uint8 { return h[0] >> 4 }

// TrafficClass returns the DSCP/ECN byte.
func (h IPv6) TrafficClass() uint8 { return h[0]<<4 | h[1]>>4 }

// FlowLabel returns the 20-bit flow label.
func (h IPv6) FlowLabel() uint32 { return binary.BigEndian.Uint32(h[0:]) & 0xfffff }

// PayloadLen returns the payload length (extension headers included).
func (h IPv6) PayloadLen() uint16 { return binary.BigEndian.Uint16(h[ipv6PayloadLenOff:]) }

// NextHeader returns the first next-header value (an extension header or L4).
func (h IPv6) NextHeader() uint8 { return h[ipv6NextHeaderOff] }

// HopLimit returns the hop limit.
func (h IPv6) HopLimit() uint8 { return h[ipv6HopLimitOff] }

// Src returns the source address.
func (h IPv6) Src() netip.Addr { return netip.AddrFrom16([16]byte(h[ipv6SrcOff:])) }

// Dst returns the destination address.
func (h IPv6) Dst() netip.Addr { return netip.AddrFrom16([16]byte(h[ipv6DstOff:])) }

// Addrs returns the source and destination addresses as they lie in the header (32 bytes).
func (h IPv6) Addrs() []byte { return h[ipv6SrcOff : ipv6DstOff+16] }

// SetPayloadLen sets the payload length (extension headers included).
func (h IPv6) SetPayloadLen(n uint16) { binary.BigEndian.PutUint16(h[ipv6PayloadLenOff:], n) }

// SetSrc sets the source address and returns the change it makes to the L4 pseudo-header sum
// (IPv6 has no header checksum).
func (h IPv6) SetSrc(a [16]byte) SumDelta { return setWords(h[ipv6SrcOff:], a[:]) }

// SetDst is SetSrc for the destination address.
func (h IPv6) SetDst(a [16]byte) SumDelta { return setWords(h[ipv6DstOff:], a[:]) }

// PseudoHeaderSum is the sum of the L4 pseudo-header of the IPv6 header h (RFC 8200 8.1) for
// an L4 segment of length bytes, when no routing header changes the final destination.
func (h IPv6) PseudoHeaderSum(proto Proto, length int) uint32 {
	return sumWords(h.Addrs()) + pseudoTail(proto, length)
}

// TCP is a view of a TCP header (at least TCPMinLen bytes).
type TCP []byte

// SrcPort returns the source port.
func (h TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(h[tcpSrcPortOff:]) }

// DstPort returns the destination port.
func (h TCP) DstPort() uint16 { return binary.BigEndian.Uint16(h[tcpDstPortOff:]) }

// Seq returns the sequence number.
func (h TCP) Seq() uint32 { return binary.BigEndian.Uint32(h[tcpSeqOff:]) }

// Ack returns the acknowledgement number.
func (h TCP) Ack() uint32 { return binary.BigEndian.Uint32(h[tcpAckOff:]) }

// DataOffset returns the header length in bytes, options included.
func (h TCP) DataOffset() int { return int(h[tcpDataOffOff]>>4) * 4 }

// Flags returns the flag byte (TCPFin ... TCPCwr).
func (h TCP) Flags() TCPFlags { return TCPFlags(h[tcpFlagsOff]) }

// Window returns the unscaled receive window.
func (h TCP) Window() uint16 { return binary.BigEndian.Uint16(h[tcpWindowOff:]) }

// Checksum returns the checksum field.
func (h TCP) Checksum() uint16 { return binary.BigEndian.Uint16(h[tcpCsumOff:]) }

// UrgentPtr returns the urgent pointer.
func (h TCP) UrgentPtr() uint16 { return binary.BigEndian.Uint16(h[tcpUrgentOff:]) }

// Options returns the option bytes (MSS clamping, window scale, ...).
func (h TCP) Options() []byte { return h[TCPMinLen:h.DataOffset()] }

// SetSrcPort sets the source port and returns the change for the checksum (see UpdateChecksum).
func (h TCP) SetSrcPort(port uint16) SumDelta { return setWord(h[tcpSrcPortOff:], port) }

// SetDstPort sets the destination port and returns the change for the checksum.
func (h TCP) SetDstPort(port uint16) SumDelta { return setWord(h[tcpDstPortOff:], port) }

// SetSrcPortWithChecksumUpdate sets the source port and fixes the (complete) checksum.
func (h TCP) SetSrcPortWithChecksumUpdate(port uint16) { h.UpdateChecksum(h.SetSrcPort(port), false) }

// SetDstPortWithChecksumUpdate sets the destination port and fixes the (complete) checksum.
func (h TCP) SetDstPortWithChecksumUpdate(port uint16) { h.UpdateChecksum(h.SetDstPort(port), false) }

// UpdateChecksum applies d, the change of words the checksum covers, to the checksum field.
// partial says the field holds the folded pseudo-header sum of a CHECKSUM_PARTIAL segment (the
// kernel finishes it), which takes only pseudo-header changes, not inverted.
func (h TCP) UpdateChecksum(d SumDelta, partial bool) { updateField(h[tcpCsumOff:], d, partial) }

// SetChecksum sets the checksum field.
func (h TCP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(h[tcpCsumOff:], c) }

// SetSeq sets the sequence number.
func (h TCP) SetSeq(n uint32) { binary.BigEndian.PutUint32(h[tcpSeqOff:], n) }

// SetAck sets the acknowledgement number.
func (h TCP) SetAck(n uint32) { binary.BigEndian.PutUint32(h[tcpAckOff:], n) }

// SetFlags sets the flag byte.
func (h TCP) SetFlags(f TCPFlags) { h[tcpFlagsOff] = uint8(f) }

// SetWindow sets the unscaled window; the checksum is left to the caller.
func (h TCP) SetWindow(w uint16) { binary.BigEndian.PutUint16(h[tcpWindowOff:], w) }

// SetDataOffset sets the header length in bytes (a multiple of 4, options included).
func (h TCP) SetDataOffset(n int) { h[tcpDataOffOff] = uint8(n/4) << 4 }

// SetUrgentPtr sets the urgent pointer.
func (h TCP) SetUrgentPtr(u uint16) { binary.BigEndian.PutUint16(h[tcpUrgentOff:], u) }

// TCP option kinds.
const (
	TCPOptEnd         = 0
	TCPOptNOP         = 1
	TCPOptWindowScale = 3 // RFC 7323, 3 bytes: kind, length, shift
)

// MaxWindowScale is the largest window scale shift RFC 7323 §2.3 allows; a larger one is
// used as 14.
const MaxWindowScale = 14

// WindowScale returns the shift of the window scale option (capped at MaxWindowScale) and
// whether the option is present; h must hold its whole header (DataOffset bytes). A malformed
// option list ends the walk (no option found past it).
func (h TCP) WindowScale() (shift uint8, ok bool) {
	if len(h) < TCPMinLen || h.DataOffset() < TCPMinLen || h.DataOffset() > len(h) {
		return 0, false
	}
	o := h.Options()
	for len(o) > 0 {
		switch o[0] {
		case TCPOptEnd:
			return 0, false
		case TCPOptNOP:
			o = o[1:]
			continue
		}
		if len(o) < 2 || o[1] < 2 || int(o[1]) > len(o) {
			return 0, false
		}
		if o[0] == TCPOptWindowScale && o[1] == 3 {
			return min(o[2], MaxWindowScale), true
		}
		o = o[o[1]:]
	}
	return 0, false
}

// UDP is a view of a UDP header.
type UDP []byte

// SrcPort returns the source port.
func (h UDP) SrcPort() uint16 { return binary.BigEndian.Uint16(h[udpSrcPortOff:]) }

// DstPort returns the destination port.
func (h UDP) DstPort() uint16 { return binary.BigEndian.Uint16(h[udpDstPortOff:]) }

// Length returns the UDP length field (header plus payload).
func (h UDP) Length() uint16 { return binary.BigEndian.Uint16(h[udpLengthOff:]) }

// Checksum returns the checksum field; 0 over IPv4 means "not computed".
func (h UDP) Checksum() uint16 { return binary.BigEndian.Uint16(h[udpCsumOff:]) }

// Ports returns the source and destination ports as they lie in the header (4 bytes).
func (h UDP) Ports() []byte { return h[udpSrcPortOff : udpDstPortOff+2] }

// SetSrcPort sets the source port and returns the change for the checksum (see UpdateChecksum).
func (h UDP) SetSrcPort(port uint16) SumDelta { return setWord(h[udpSrcPortOff:], port) }

// SetDstPort sets the destination port and returns the change for the checksum.
func (h UDP) SetDstPort(port uint16) SumDelta { return setWord(h[udpDstPortOff:], port) }

// SetLength sets the length field (header plus payload); the checksum is left to the caller.
func (h UDP) SetLength(n uint16) { binary.BigEndian.PutUint16(h[udpLengthOff:], n) }

// SetChecksum sets the checksum field.
func (h UDP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(h[udpCsumOff:], c) }

// UpdateChecksum is TCP.UpdateChecksum for UDP. A complete checksum that comes out 0 is sent as
// 0xffff, 0 meaning "no checksum" on the wire (RFC 768, RFC 8200 8.1). The caller leaves an
// IPv4 checksum of 0 (not in use) alone.
func (h UDP) UpdateChecksum(d SumDelta, partial bool) {
	updateField(h[udpCsumOff:], d, partial)
	if !partial && h.Checksum() == 0 {
		h.SetChecksum(0xffff)
	}
}

// ICMP is a view of an ICMPv4 or ICMPv6 header; both share the first 8 bytes' layout.
type ICMP []byte

// Type returns the message type.
func (h ICMP) Type() uint8 { return h[icmpTypeOff] }

// Code returns the message code.
func (h ICMP) Code() uint8 { return h[icmpCodeOff] }

// Checksum returns the checksum field.
func (h ICMP) Checksum() uint16 { return binary.BigEndian.Uint16(h[icmpCsumOff:]) }

// Ident returns the echo identifier (echo request/reply only).
func (h ICMP) Ident() uint16 { return binary.BigEndian.Uint16(h[icmpIdentOff:]) }

// Seq returns the echo sequence number (echo request/reply only).
func (h ICMP) Seq() uint16 { return binary.BigEndian.Uint16(h[icmpSeqOff:]) }

// SetIdent sets the echo identifier and returns the change for the checksum.
func (h ICMP) SetIdent(id uint16) SumDelta { return setWord(h[icmpIdentOff:], id) }

// SetType sets the type and fixes the checksum incrementally.
func (h ICMP) SetType(t uint8) {
	old := binary.BigEndian.Uint16(h[icmpTypeOff:])
	h[icmpTypeOff] = t
	h.SetChecksum(ChecksumUpdate16(h.Checksum(), old, binary.BigEndian.Uint16(h[icmpTypeOff:])))
}

// SetChecksum sets the checksum field.
func (h ICMP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(h[icmpCsumOff:], c) }

// UpdateChecksum applies d, the change of covered words, to the (complete) checksum.
func (h ICMP) UpdateChecksum(d SumDelta) { updateField(h[icmpCsumOff:], d, false) }

// NextHopMTU returns the MTU of an ICMPv4 "fragmentation needed" (RFC 1191).
func (h ICMP) NextHopMTU() uint16 { return binary.BigEndian.Uint16(h[icmpSeqOff:]) }

// MTU returns the MTU of an ICMPv6 "packet too big".
func (h ICMP) MTU() uint32 { return binary.BigEndian.Uint32(h[4:]) }

// Pointer returns the parameter-problem pointer (ICMPv4: one byte; ICMPv6: four bytes).
func (h ICMP) Pointer(v6 bool) uint32 {
	if v6 {
		return binary.BigEndian.Uint32(h[4:])
	}
	return uint32(h[4])
}

// Payload returns what follows the 8-byte header: echo data or the quoted packet of an error.
func (h ICMP) Payload() []byte { return h[ICMPLen:] }
