package tun

import "encoding/binary"

// The virtio-net header (include/uapi/linux/virtio_net.h) is private to the device: it leads every
// packet read from or written to a TUN opened with IFF_VNET_HDR, and lives in the headroom of the
// caller's buffer (Offset bytes) between Read and Write. Callers see it only through Parse (the
// checksum-partial state becomes packet.Packet.PartialCsum), MarkBuilt and the coalescing Write.

// vnetHdrLen is the size of struct virtio_net_hdr (we set TUNSETVNETHDRSZ to exactly this).
const vnetHdrLen = 10

// Virtio-net header flags and GSO types.
const (
	vnetFlagNeedsCsum = 1 // checksum field holds the pseudo-header sum; finish from CsumStart

	gsoNone  = 0
	gsoUDPL4 = 5
)

// vnetHdr is a view over a struct virtio_net_hdr (little-endian on every host we support).
type vnetHdr []byte

// hdrOf is the virtio-net header in the headroom of buf.
func hdrOf(buf []byte) vnetHdr { return vnetHdr(buf[Offset-vnetHdrLen : Offset]) }

func (h vnetHdr) flags() uint8       { return h[0] }
func (h vnetHdr) gsoType() uint8     { return h[1] }
func (h vnetHdr) hdrLen() uint16     { return binary.LittleEndian.Uint16(h[2:]) }
func (h vnetHdr) gsoSize() uint16    { return binary.LittleEndian.Uint16(h[4:]) }
func (h vnetHdr) csumStart() uint16  { return binary.LittleEndian.Uint16(h[6:]) }
func (h vnetHdr) csumOffset() uint16 { return binary.LittleEndian.Uint16(h[8:]) }

// partialCsum reports whether the L4 checksum field holds only the pseudo-header sum.
func (h vnetHdr) partialCsum() bool { return h.flags()&vnetFlagNeedsCsum != 0 }

// set writes all fields at once.
func (h vnetHdr) set(flags, gsoType uint8, hdrLen, gsoSize, csumStart, csumOffset uint16) {
	h[0], h[1] = flags, gsoType
	binary.LittleEndian.PutUint16(h[2:], hdrLen)
	binary.LittleEndian.PutUint16(h[4:], gsoSize)
	binary.LittleEndian.PutUint16(h[6:], csumStart)
	binary.LittleEndian.PutUint16(h[8:], csumOffset)
}
