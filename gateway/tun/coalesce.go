package tun

import (
	"bytes"

	"github.com/edgegate/edgegate/packet"
)

// UDP coalescing (userspace GRO for datagrams), done by Write on a device with USO: consecutive
// datagrams of one flow in a written batch become one UDP super-packet (virtio-net GSO_UDP_L4)
// that the kernel segments again after the TUN. One write and one pass through the kernel's
// forwarding setup then carry up to maxTrain datagrams, which is what bounds small-packet rates
// through a TUN. TCP needs no such step here: with offloads on, the kernel already hands TCP over
// as super-packets.

// maxTrain bounds the datagrams in one super-packet (the kernel's UDP_MAX_SEGMENTS is 128).
const maxTrain = 64

// coalescer merges the datagrams of a written batch. It keeps its slices across batches, so
// coalescing allocates nothing in steady state; one per device (one writer).
type coalescer struct {
	frames [][]byte // what is written: packets and super-packets
	counts []int    // packets in each frame
	merged uint64   // datagrams written inside super-packets so far
}

// udpL4 returns the offset of the UDP header when the packet in buf (with headroom) may join a
// super-packet, 0 otherwise: a single UDP datagram without IPv4 options or IPv6 extension
// headers, not a fragment, not a super-packet itself, whose UDP length is exactly its IP payload.
// The kernel cuts segments by size from the IP payload, so bytes after the UDP length (legal
// padding, or a crafted trailer) would become datagram data at the backend: such datagrams are
// written alone, as they came.
func udpL4(buf []byte) int {
	b := buf[Offset:]
	if hdrOf(buf).gsoType() != gsoNone || len(b) < packet.IPv4MinLen {
		return 0
	}
	l4 := 0
	switch b[0] >> 4 {
	case 4:
		h := packet.IPv4(b)
		if h.HeaderLen() == packet.IPv4MinLen && h.Protocol() == packet.ProtoUDP && !h.MoreFragments() && h.FragmentOffset() == 0 {
			l4 = packet.IPv4MinLen
		}
	case 6:
		if len(b) >= packet.IPv6Len && packet.Proto(packet.IPv6(b).NextHeader()) == packet.ProtoUDP {
			l4 = packet.IPv6Len
		}
	}
	if l4 == 0 || len(b) < l4+packet.UDPLen || int(packet.UDP(b[l4:]).Length()) != len(b)-l4 {
		return 0
	}
	return l4
}

// sameFlowHeaders reports whether datagram q may follow a in one super-packet: every header
// field the kernel copies to each segment must be equal (the lengths and checksums excepted).
func sameFlowHeaders(a, q []byte, l4 int) bool {
	if !bytes.Equal(packet.UDP(a[l4:]).Ports(), packet.UDP(q[l4:]).Ports()) {
		return false
	}
	if l4 == packet.IPv4MinLen {
		ha, hq := packet.IPv4(a), packet.IPv4(q)
		return ha.Version() == hq.Version() && ha.HeaderLen() == hq.HeaderLen() && ha.TOS() == hq.TOS() &&
			ha.Flags() == hq.Flags() && ha.TTL() == hq.TTL() && ha.Protocol() == hq.Protocol() &&
			bytes.Equal(ha.Addrs(), hq.Addrs())
	}
	ha, hq := packet.IPv6(a), packet.IPv6(q)
	return ha.Version() == hq.Version() && ha.TrafficClass() == hq.TrafficClass() && ha.FlowLabel() == hq.FlowLabel() &&
		ha.NextHeader() == hq.NextHeader() && ha.HopLimit() == hq.HopLimit() && bytes.Equal(ha.Addrs(), hq.Addrs())
}

// coalesce returns the frames to write for bufs (packets with Offset headroom): runs of same-flow
// datagrams merged in place into the first buffer of the run. A run ends at a datagram of another
// flow, one longer than the first, or right after a shorter one (only the last segment of a
// super-packet may be short). An empty datagram is written alone: the kernel cuts segments from
// the payload, and an empty one would vanish. The first buffer of a run must have room for the whole run.
func (c *coalescer) coalesce(bufs [][]byte) [][]byte {
	c.frames, c.counts = c.frames[:0], c.counts[:0]
	for i := 0; i < len(bufs); {
		head, k := bufs[i], i+1
		if l4 := udpL4(head); l4 != 0 {
			head, k = c.train(bufs, i, l4)
		}
		c.frames = append(c.frames, head)
		c.counts = append(c.counts, k-i)
		i = k
	}
	return c.frames
}

// train merges the datagrams that may follow bufs[i] (UDP header at l4) into it and returns the
// frame and the index after the last datagram taken.
func (c *coalescer) train(bufs [][]byte, i, l4 int) ([]byte, int) {
	head := bufs[i]
	hp := head[Offset:]
	seg := len(hp) - l4 - packet.UDPLen
	total := len(hp)
	k := i + 1
	for k < len(bufs) && k-i < maxTrain && udpL4(bufs[k]) == l4 {
		q := bufs[k][Offset:]
		qseg := len(q) - l4 - packet.UDPLen
		if qseg > seg || seg == 0 || qseg == 0 || total+qseg > MaxPacket || Offset+total+qseg > cap(head) || !sameFlowHeaders(hp, q, l4) {
			break
		}
		copy(head[Offset+total:cap(head)], q[l4+packet.UDPLen:])
		total += qseg
		k++
		if qseg < seg {
			break
		}
	}
	if k-i > 1 {
		head = head[:Offset+total]
		finishSuper(head, l4, seg)
		c.merged += uint64(k - i)
	}
	return head, k
}

// finishSuper fixes the lengths of a UDP super-packet (buf with headroom), puts the pseudo-header
// sum in its checksum field for the kernel to finish per segment (as for sendmsg with
// UDP_SEGMENT, the kernel adjusts it for each segment's length), and writes its virtio-net header.
func finishSuper(buf []byte, l4, seg int) {
	b := buf[Offset:]
	udpLen := len(b) - l4
	var pseudo uint32
	if l4 == packet.IPv4MinLen {
		h := packet.IPv4(b[:l4])
		h.SetTotalLen(uint16(len(b)))
		h.SetHeaderChecksum()
		pseudo = h.PseudoHeaderSum(packet.ProtoUDP, udpLen)
	} else {
		h := packet.IPv6(b[:l4])
		h.SetPayloadLen(uint16(udpLen))
		pseudo = h.PseudoHeaderSum(packet.ProtoUDP, udpLen)
	}
	u := packet.UDP(b[l4:])
	u.SetLength(uint16(udpLen))
	u.SetChecksum(packet.Checksum(nil, pseudo)) // folded, not inverted: CHECKSUM_PARTIAL
	hdrOf(buf).set(vnetFlagNeedsCsum, gsoUDPL4, uint16(l4+packet.UDPLen), uint16(seg), uint16(l4), packet.UDPChecksumOffset)
}
