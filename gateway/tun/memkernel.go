package tun

import (
	"fmt"

	"github.com/edgegate/edgegate/packet"
)

// The kernel's side of a MemDevice with offloads, for tests: the frames the kernel hands a device
// opened with IFF_VNET_HDR, and what it makes of the frames written to it.

// MemFrame returns pkt as the kernel hands it to a device with offloads (NewMem with vnet): behind
// a virtio-net header and, when partial, as a CHECKSUM_PARTIAL TCP or UDP packet whose checksum
// field holds only the pseudo-header sum, for the kernel to finish after the write.
func MemFrame(pkt []byte, partial bool) []byte {
	f := make([]byte, vnetHdrLen+len(pkt))
	copy(f[vnetHdrLen:], pkt)
	if !partial {
		return f
	}
	var p packet.Packet
	if p.Parse(f[vnetHdrLen:]) != packet.OK {
		panic("tun.MemFrame: packet does not parse")
	}
	off := packet.TCPChecksumOffset
	if p.Proto == packet.ProtoUDP {
		off = packet.UDPChecksumOffset
	}
	l4 := p.B[p.L4Off:]
	sum := packet.Checksum(nil, packet.PseudoHeaderSum(p.Proto, p.Src, p.Dst, len(l4)))
	l4[off], l4[off+1] = byte(sum>>8), byte(sum)
	vnetHdr(f[:vnetHdrLen]).set(vnetFlagNeedsCsum, gsoNone, 0, 0, uint16(p.L4Off), uint16(off))
	return f
}

// MemSegments returns the packets the kernel forwards for frame, a virtio-net header and packet
// as Write wrote them: a UDP super-packet cut into its datagrams, every partial checksum finished.
func MemSegments(frame []byte) ([][]byte, error) {
	if len(frame) < vnetHdrLen {
		return nil, fmt.Errorf("frame of %d bytes: no virtio-net header", len(frame))
	}
	h, b := vnetHdr(frame[:vnetHdrLen]), frame[vnetHdrLen:]
	switch h.gsoType() {
	case gsoNone:
		p := append([]byte(nil), b...)
		if h.partialCsum() {
			finishCsum(p, int(h.csumStart()), int(h.csumOffset()))
		}
		return [][]byte{p}, nil
	case gsoUDPL4:
	default:
		return nil, fmt.Errorf("gso type %d", h.gsoType())
	}
	l4, seg := int(h.csumStart()), int(h.gsoSize())
	if !h.partialCsum() || int(h.hdrLen()) != l4+packet.UDPLen || h.csumOffset() != packet.UDPChecksumOffset || seg == 0 {
		return nil, fmt.Errorf("super-packet header: flags %d hdr_len %d csum %d+%d gso_size %d", h.flags(), h.hdrLen(), l4, h.csumOffset(), seg)
	}
	var out [][]byte
	for off := l4 + packet.UDPLen; off < len(b); off += seg {
		d := append(append([]byte(nil), b[:l4+packet.UDPLen]...), b[off:min(off+seg, len(b))]...)
		udpLen := len(d) - l4
		if l4 == packet.IPv4MinLen {
			ip := packet.IPv4(d[:l4])
			ip.SetTotalLen(uint16(len(d)))
			ip.SetHeaderChecksum()
		} else {
			packet.IPv6(d[:l4]).SetPayloadLen(uint16(udpLen))
		}
		u := packet.UDP(d[l4:])
		u.SetLength(uint16(udpLen))
		var p packet.Packet
		if r := p.Parse(d); r != packet.OK {
			return nil, fmt.Errorf("segment: %v", r)
		}
		u.SetChecksum(packet.Checksum(nil, packet.PseudoHeaderSum(packet.ProtoUDP, p.Src, p.Dst, udpLen)))
		finishCsum(d, l4, packet.UDPChecksumOffset)
		out = append(out, d)
	}
	return out, nil
}

// finishCsum completes a partial checksum as the kernel (or a NIC) does: sum from start with the
// field as it is, invert (UDP: 0 goes out as 0xffff).
func finishCsum(b []byte, start, off int) {
	c := ^packet.Checksum(b[start:], 0)
	if c == 0 && off == packet.UDPChecksumOffset {
		c = 0xffff
	}
	b[start+off], b[start+off+1] = byte(c>>8), byte(c)
}
