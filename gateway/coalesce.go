package gateway

import (
	"bytes"
	"encoding/binary"

	"github.com/edgegate/edgegate/gateway/tun"
	"github.com/edgegate/edgegate/packet"
)

// UDP coalescing (userspace GRO for datagrams): consecutive datagrams of one flow in a written
// batch become one UDP super-packet (virtio-net GSO_UDP_L4) that the kernel segments again after
// the TUN. One write and one pass through the kernel's forwarding setup then carry up to
// maxTrain datagrams, which is what bounds small-packet rates through a TUN. TCP needs no such
// step here: with offloads on, the kernel already hands TCP over as super-packets.

// maxTrain bounds the datagrams in one super-packet (the kernel's UDP_MAX_SEGMENTS is 128).
const maxTrain = 64

// udpMeta describes one written packet for coalescing; l4 is 0 for packets that cannot join.
type udpMeta struct {
	l4 int // offset of the UDP header
}

// coalescable reports whether p (translated, with vnet header h) may join a UDP super-packet:
// a single UDP datagram without IPv4 options or IPv6 extension headers, not a fragment, whose
// UDP length is exactly its IP payload. The kernel cuts segments by size from the IP payload,
// so bytes after the UDP length (legal padding, or a crafted trailer) would become datagram
// data at the backend: such datagrams are written alone, as they came.
func coalescable(p *packet.Packet, h tun.VnetHdr) bool {
	if p.Proto != packet.ProtoUDP || p.IsFragment || h.GSOType() != tun.GSONone {
		return false
	}
	if int(p.UDP().Length()) != len(p.B)-p.L4Off {
		return false
	}
	return (p.Version == 4 && p.L4Off == packet.IPv4MinLen) || (p.Version == 6 && p.L4Off == packet.IPv6Len)
}

// sameFlowHeaders reports whether datagram q may follow a in one super-packet: every header
// field the kernel copies to each segment must be equal (the lengths and checksums excepted).
func sameFlowHeaders(a, q []byte, l4 int) bool {
	if l4 == packet.IPv4MinLen {
		// version/IHL, TOS, flags (DF), TTL, protocol, addresses
		return a[0] == q[0] && a[1] == q[1] && a[6]&0xe0 == q[6]&0xe0 && a[8] == q[8] && a[9] == q[9] &&
			bytes.Equal(a[12:20], q[12:20]) && bytes.Equal(a[l4:l4+4], q[l4:l4+4])
	}
	// version, traffic class, flow label, next header, hop limit, addresses
	return bytes.Equal(a[0:4], q[0:4]) && a[6] == q[6] && a[7] == q[7] && bytes.Equal(a[8:40], q[8:40]) &&
		bytes.Equal(a[l4:l4+4], q[l4:l4+4])
}

// coalesceUDP merges runs of same-flow datagrams in out (buffers with tun.Offset headroom and a
// virtio-net header) in place and returns the shortened list. A run ends at a datagram of another
// flow, one longer than the first, or right after a shorter one (only the last segment of a
// super-packet may be short). The first buffer of a run must have room for the whole run.
func coalesceUDP(out [][]byte, meta []udpMeta) [][]byte {
	j := 0
	for i := 0; i < len(out); {
		l4 := meta[i].l4
		head := out[i]
		if l4 == 0 {
			out[j] = head
			j++
			i++
			continue
		}
		hp := head[tun.Offset:]
		seg := len(hp) - l4 - packet.UDPLen
		total := len(hp)
		k := i + 1
		for k < len(out) && k-i < maxTrain && meta[k].l4 == l4 {
			q := out[k][tun.Offset:]
			qseg := len(q) - l4 - packet.UDPLen
			if qseg > seg || seg == 0 || total+qseg > tun.MaxPacket || tun.Offset+total+qseg > cap(head) || !sameFlowHeaders(hp, q, l4) {
				break
			}
			copy(head[tun.Offset+total:cap(head)], q[l4+packet.UDPLen:])
			total += qseg
			k++
			if qseg < seg {
				break
			}
		}
		if k-i > 1 {
			head = head[:tun.Offset+total]
			finishSuper(head, l4, seg)
		}
		out[j] = head
		j++
		i = k
	}
	return out[:j]
}

// finishSuper fixes the lengths of a UDP super-packet (buf with headroom), puts the pseudo-header
// sum in its checksum field for the kernel to finish per segment, and writes its virtio-net header.
func finishSuper(buf []byte, l4, seg int) {
	b := buf[tun.Offset:]
	total := len(b)
	udpLen := total - l4
	var addrs []byte
	if l4 == packet.IPv4MinLen {
		binary.BigEndian.PutUint16(b[2:], uint16(total))
		binary.BigEndian.PutUint16(b[10:], 0)
		binary.BigEndian.PutUint16(b[10:], ^packet.Checksum(b[:packet.IPv4MinLen], 0))
		addrs = b[12:20]
	} else {
		binary.BigEndian.PutUint16(b[4:], uint16(total-packet.IPv6Len))
		addrs = b[8:40]
	}
	binary.BigEndian.PutUint16(b[l4+4:], uint16(udpLen))
	// The kernel adjusts this sum for each segment's length (as for sendmsg with UDP_SEGMENT).
	sum := uint32(packet.Checksum(addrs, 0)) + uint32(packet.ProtoUDP) + uint32(udpLen)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[l4+6:], uint16(sum))
	tun.VnetHdr(buf[tun.Offset-tun.VnetHdrLen:tun.Offset]).Set(tun.VnetFlagNeedsCsum, tun.GSOUDPL4,
		uint16(l4+packet.UDPLen), uint16(seg), uint16(l4), 6)
}

// countSupers counts the UDP super-packets in out (for the coalesced-datagrams counter).
func countSupers(out [][]byte) int {
	n := 0
	for _, b := range out {
		if tun.VnetHdr(b[tun.Offset-tun.VnetHdrLen:tun.Offset]).GSOType() == tun.GSOUDPL4 {
			n++
		}
	}
	return n
}
