package packet

import (
	"encoding/binary"
	"net/netip"
)

// Protocol numbers the data path handles (IANA "Assigned Internet Protocol Numbers").
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
)

// TCP flag bits as found in Packet.TCPFlags and TCP.Flags.
const (
	TCPFin uint8 = 0x01
	TCPSyn uint8 = 0x02
	TCPRst uint8 = 0x04
	TCPPsh uint8 = 0x08
	TCPAck uint8 = 0x10
	TCPUrg uint8 = 0x20
	TCPEce uint8 = 0x40
	TCPCwr uint8 = 0x80
)

// ICMP message types the gateway distinguishes (RFC 792, RFC 4443).
const (
	ICMPv4EchoReply      uint8 = 0
	ICMPv4DestUnreach    uint8 = 3
	ICMPv4EchoRequest    uint8 = 8
	ICMPv4TimeExceeded   uint8 = 11
	ICMPv4ParamProblem   uint8 = 12
	ICMPv4FragNeededCode uint8 = 4 // code of DestUnreach: fragmentation needed and DF set

	ICMPv6DestUnreach  uint8 = 1
	ICMPv6PacketTooBig uint8 = 2
	ICMPv6TimeExceeded uint8 = 3
	ICMPv6ParamProblem uint8 = 4
	ICMPv6EchoRequest  uint8 = 128
	ICMPv6EchoReply    uint8 = 129
)

// Fixed header sizes.
const (
	IPv4MinLen = 20
	IPv6Len    = 40
	TCPMinLen  = 20
	UDPLen     = 8
	ICMPLen    = 8 // type, code, checksum and the 4-byte rest-of-header
)

// IPv4 is a view of an IPv4 header (at least IPv4MinLen bytes; options included when
// sliced to IHL). Accessors do not check length beyond what Parse validated.
type IPv4 []byte

// Version returns the IP version nibble.
func (h IPv4) Version() uint8 { return h[0] >> 4 }

// HeaderLen returns IHL in bytes.
func (h IPv4) HeaderLen() int { return int(h[0]&0x0f) * 4 }

// TOS returns the DSCP/ECN byte.
func (h IPv4) TOS() uint8 { return h[1] }

// TotalLen returns the total length field (header plus payload).
func (h IPv4) TotalLen() uint16 { return binary.BigEndian.Uint16(h[2:]) }

// ID returns the identification field used for reassembly.
func (h IPv4) ID() uint16 { return binary.BigEndian.Uint16(h[4:]) }

// DontFragment reports the DF flag (path MTU discovery).
func (h IPv4) DontFragment() bool { return h[6]&0x40 != 0 }

// MoreFragments reports the MF flag: more fragments follow this one.
func (h IPv4) MoreFragments() bool { return h[6]&0x20 != 0 }

// FragmentOffset returns the fragment offset in bytes; non-zero means no L4 header.
func (h IPv4) FragmentOffset() int { return int(binary.BigEndian.Uint16(h[6:])&0x1fff) * 8 }

// TTL returns the time to live.
func (h IPv4) TTL() uint8 { return h[8] }

// Protocol returns the L4 protocol number.
func (h IPv4) Protocol() uint8 { return h[9] }

// Checksum returns the header checksum field.
func (h IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(h[10:]) }

// Src returns the source address.
func (h IPv4) Src() netip.Addr { return netip.AddrFrom4([4]byte(h[12:16])) }

// Dst returns the destination address.
func (h IPv4) Dst() netip.Addr { return netip.AddrFrom4([4]byte(h[16:20])) }

// Options returns the options bytes between the fixed header and IHL.
func (h IPv4) Options() []byte { return h[IPv4MinLen:h.HeaderLen()] }

// HeaderChecksumOK verifies the header checksum (the kernel already did on most paths).
func (h IPv4) HeaderChecksumOK() bool { return Checksum(h[:h.HeaderLen()], 0) == 0xffff }

// SetTTL sets the TTL and fixes the header checksum incrementally.
func (h IPv4) SetTTL(ttl uint8) {
	old := binary.BigEndian.Uint16(h[8:])
	nw := uint16(ttl)<<8 | uint16(h[9])
	h[8] = ttl
	binary.BigEndian.PutUint16(h[10:], ChecksumUpdate16(h.Checksum(), old, nw))
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
func (h IPv6) PayloadLen() uint16 { return binary.BigEndian.Uint16(h[4:]) }

// NextHeader returns the first next-header value (an extension header or L4).
func (h IPv6) NextHeader() uint8 { return h[6] }

// HopLimit returns the hop limit.
func (h IPv6) HopLimit() uint8 { return h[7] }

// Src returns the source address.
func (h IPv6) Src() netip.Addr { return netip.AddrFrom16([16]byte(h[8:24])) }

// Dst returns the destination address.
func (h IPv6) Dst() netip.Addr { return netip.AddrFrom16([16]byte(h[24:40])) }

// TCP is a view of a TCP header (at least TCPMinLen bytes).
type TCP []byte

// SrcPort returns the source port.
func (h TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(h[0:]) }

// DstPort returns the destination port.
func (h TCP) DstPort() uint16 { return binary.BigEndian.Uint16(h[2:]) }

// Seq returns the sequence number.
func (h TCP) Seq() uint32 { return binary.BigEndian.Uint32(h[4:]) }

// Ack returns the acknowledgement number.
func (h TCP) Ack() uint32 { return binary.BigEndian.Uint32(h[8:]) }

// DataOffset returns the header length in bytes, options included.
func (h TCP) DataOffset() int { return int(h[12]>>4) * 4 }

// Flags returns the flag byte (TCPFin ... TCPCwr).
func (h TCP) Flags() uint8 { return h[13] }

// Window returns the unscaled receive window.
func (h TCP) Window() uint16 { return binary.BigEndian.Uint16(h[14:]) }

// Checksum returns the checksum field.
func (h TCP) Checksum() uint16 { return binary.BigEndian.Uint16(h[16:]) }

// UrgentPtr returns the urgent pointer.
func (h TCP) UrgentPtr() uint16 { return binary.BigEndian.Uint16(h[18:]) }

// Options returns the option bytes (MSS clamping, window scale, ...).
func (h TCP) Options() []byte { return h[TCPMinLen:h.DataOffset()] }

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
func (h UDP) SrcPort() uint16 { return binary.BigEndian.Uint16(h[0:]) }

// DstPort returns the destination port.
func (h UDP) DstPort() uint16 { return binary.BigEndian.Uint16(h[2:]) }

// Length returns the UDP length field (header plus payload).
func (h UDP) Length() uint16 { return binary.BigEndian.Uint16(h[4:]) }

// Checksum returns the checksum field; 0 over IPv4 means "not computed".
func (h UDP) Checksum() uint16 { return binary.BigEndian.Uint16(h[6:]) }

// ICMP is a view of an ICMPv4 or ICMPv6 header; both share the first 8 bytes' layout.
type ICMP []byte

// Type returns the message type.
func (h ICMP) Type() uint8 { return h[0] }

// Code returns the message code.
func (h ICMP) Code() uint8 { return h[1] }

// Checksum returns the checksum field.
func (h ICMP) Checksum() uint16 { return binary.BigEndian.Uint16(h[2:]) }

// Ident returns the echo identifier (echo request/reply only).
func (h ICMP) Ident() uint16 { return binary.BigEndian.Uint16(h[4:]) }

// Seq returns the echo sequence number (echo request/reply only).
func (h ICMP) Seq() uint16 { return binary.BigEndian.Uint16(h[6:]) }

// NextHopMTU returns the MTU of an ICMPv4 "fragmentation needed" (RFC 1191).
func (h ICMP) NextHopMTU() uint16 { return binary.BigEndian.Uint16(h[6:]) }

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
