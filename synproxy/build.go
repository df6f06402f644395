package synproxy

import (
	"encoding/binary"

	"github.com/edgegate/edgegate/packet"
)

// AdvertisedWScale is the window scale the cookie SYN-ACK offers a client that offered one,
// before the backend's is known. A backend that scales by another amount has its windows
// rescaled on the way to the client (see Conn.Adjust): from a larger scale they are clamped at
// 65535 << AdvertisedWScale, to a larger one rounded down to its granularity. 10 is what Linux
// picks for a 32 MiB tcp_rmem: windows up to 64 MiB pass unclamped, in 1 KiB steps. (With 7,
// netfilter's usual setting, such backends' windows were cut to 8 MiB and a proxied iperf3 flow
// lost its share of a shared bottleneck to unproxied ones.)
const AdvertisedWScale = 10

// ttl is the TTL / hop limit of segments the proxy builds.
const ttl = 64

// maxSYNOptions is the room writeSYNOptions may take.
const maxSYNOptions = 20

// defaultMSS is the MSS a peer that sends none is assumed to accept (RFC 9293 3.7.1, RFC 8200 8.3).
func defaultMSS(version uint8) uint16 {
	if version == 6 {
		return 1220
	}
	return 536
}

func mssTable(version uint8) *[4]uint16 {
	if version == 6 {
		return &mssTable6
	}
	return &mssTable4
}

// TupleOf is the cookie tuple of a client's segment (client -> service, before translation).
func TupleOf(p *packet.Packet) Tuple {
	return Tuple{Src: p.Src.As16(), Dst: p.Dst.As16(), SrcPort: p.SrcPort, DstPort: p.DstPort}
}

// reshape gives p a minimal IP header (no IPv4 options, no IPv6 extension headers) followed by
// a TCP header of tcpLen bytes whose first 20 bytes are the old header's, and no payload; with
// swap the addresses are exchanged (an answer). The IPv4 checksum is left for finish. It
// reports false, changing nothing, when the buffer behind p.B has no room.
func reshape(p *packet.Packet, tcpLen int, swap bool) bool {
	hl := packet.IPv4MinLen
	if p.Version == 6 {
		hl = packet.IPv6Len
	}
	n := hl + tcpLen
	if cap(p.B) < max(n, p.L4Off+packet.TCPMinLen) || p.L4Off+packet.TCPMinLen > len(p.B) {
		return false
	}
	b := p.B[:cap(p.B)]
	copy(b[hl:hl+packet.TCPMinLen], b[p.L4Off:p.L4Off+packet.TCPMinLen])
	b = b[:n]
	if p.Version == 4 {
		b[0] = 0x45
		b[1] &^= 0x03 // not ECN-capable (RFC 3168 6.1.1: never on SYN, SYN-ACK or pure ACK)
		binary.BigEndian.PutUint16(b[2:], uint16(n))
		binary.BigEndian.PutUint16(b[6:], 0x4000) // DF: TCP does path MTU discovery
		b[8] = ttl
		b[9] = uint8(packet.ProtoTCP)
		if swap {
			var s [4]byte
			copy(s[:], b[12:16])
			copy(b[12:16], b[16:20])
			copy(b[16:20], s[:])
		}
	} else {
		b[1] &^= 0x30 // ECN bits of the traffic class
		binary.BigEndian.PutUint16(b[4:], uint16(tcpLen))
		b[6] = uint8(packet.ProtoTCP)
		b[7] = ttl
		if swap {
			var s [16]byte
			copy(s[:], b[8:24])
			copy(b[8:24], b[24:40])
			copy(b[24:40], s[:])
		}
	}
	p.B, p.L4Off, p.PayloadLen, p.IsFragment = b, hl, 0, false
	if swap {
		p.Src, p.Dst = p.Dst, p.Src
	}
	return true
}

// segment is the TCP header fields writeTCP sets.
type segment struct {
	sport, dport uint16
	seq, ack     uint32
	flags        packet.TCPFlags
	win          uint16
}

// writeTCP fills the TCP header of a reshaped p with s and opts (a multiple of 4 bytes, as
// long as reshape made room for) and completes both checksums.
func writeTCP(p *packet.Packet, s segment, opts []byte) {
	h := p.B[p.L4Off:]
	binary.BigEndian.PutUint16(h[0:], s.sport)
	binary.BigEndian.PutUint16(h[2:], s.dport)
	binary.BigEndian.PutUint32(h[4:], s.seq)
	binary.BigEndian.PutUint32(h[8:], s.ack)
	h[12] = byte((packet.TCPMinLen+len(opts))/4) << 4
	h[13] = uint8(s.flags)
	binary.BigEndian.PutUint16(h[14:], s.win)
	binary.BigEndian.PutUint16(h[16:], 0)
	binary.BigEndian.PutUint16(h[18:], 0)
	copy(h[packet.TCPMinLen:], opts)
	binary.BigEndian.PutUint16(h[16:], ^packet.Checksum(h, packet.PseudoHeaderSum(packet.ProtoTCP, p.Src, p.Dst, len(h))))
	if p.Version == 4 {
		ip := p.B[:packet.IPv4MinLen]
		binary.BigEndian.PutUint16(ip[10:], 0)
		binary.BigEndian.PutUint16(ip[10:], ^packet.Checksum(ip, 0))
	}
	p.SrcPort, p.DstPort, p.TCPFlags = s.sport, s.dport, s.flags
}

// AnswerSYN turns a client's SYN (p: TCP with SYN and none of ACK, RST, FIN; parsed) into the
// cookie SYN-ACK in place: addresses and ports swapped, sequence number the cookie, window 0
// (the client sends nothing until the backend's window is relayed), MSS mss, and, when the
// client sent timestamps, its window scale, SACK-permitted and ECN encoded in our timestamp
// (a client without timestamps gets neither window scaling nor SACK, as from the kernel's
// cookies). It reports false, changing nothing, for malformed options or no room.
func (s *Secret) AnswerSYN(p *packet.Packet, now int64, mss uint16) bool {
	h := p.TCP()
	o, ok := ParseOptions(h)
	if !ok {
		return false
	}
	t := TupleOf(p)
	isn := h.Seq()
	cmss := o.MSS
	if cmss == 0 {
		cmss = defaultMSS(p.Version)
	}
	cookie := s.Make(&t, isn, mssIndex(mssTable(p.Version), cmss), now)
	flags := packet.TCPSyn | packet.TCPAck
	var tsval uint32
	ws, sack := int8(noWScale), false
	if o.TS {
		opts := uint32(tsWScale)
		if o.WScale >= 0 {
			opts, ws = uint32(o.WScale), AdvertisedWScale
		}
		if o.SACKPerm {
			opts, sack = opts|tsSACK, true
		}
		if h.Flags()&(packet.TCPEce|packet.TCPCwr) == packet.TCPEce|packet.TCPCwr {
			opts |= tsECN
			flags |= packet.TCPEce // RFC 3168 6.1.1: an ECN-setup SYN-ACK
		}
		tsval = cookieTS(now, opts)
	}
	var ob [maxSYNOptions]byte
	n := writeSYNOptions(ob[:], mss, sack, o.TS, tsval, o.TSVal, ws)
	seg := segment{sport: p.DstPort, dport: p.SrcPort, seq: cookie, ack: isn + 1, flags: flags}
	if !reshape(p, packet.TCPMinLen+n, true) {
		return false
	}
	writeTCP(p, seg, ob[:n])
	return true
}
