package tun

import "github.com/edgegate/edgegate/packet"

// Parse parses the packet Read left in buf (size bytes at Offset) into p, and sets
// p.PartialCsum from the offload state the device read with it: the kernel left only the
// pseudo-header sum in the L4 checksum field, for the kernel to finish after the write.
func Parse(p *packet.Packet, buf []byte, size int) packet.Reason {
	r := p.Parse(buf[Offset : Offset+size])
	p.PartialCsum = hdrOf(buf).partialCsum()
	return r
}

// MarkBuilt records that the packet in buf was built or answered in place (complete checksums,
// not a super-packet): Write sends it without the offload request it was read with.
func MarkBuilt(buf []byte) { clear(hdrOf(buf)) }
