package tun

import "encoding/binary"

// Virtio-net header flags and GSO types (include/uapi/linux/virtio_net.h).
const (
	VnetFlagNeedsCsum = 1 // checksum field holds the pseudo-header sum; finish from CsumStart
	VnetFlagDataValid = 2 // checksum already verified

	GSONone  = 0
	GSOTCPv4 = 1
	GSOUDP   = 3
	GSOTCPv6 = 4
	GSOUDPL4 = 5
	GSOECN   = 0x80
)

// VnetHdr is a view over a struct virtio_net_hdr (little-endian on every host we support).
type VnetHdr []byte

// Flags are the VnetFlag* bits.
func (h VnetHdr) Flags() uint8 { return h[0] }

// GSOType is the GSO* type of a super-packet (GSONone for a single packet).
func (h VnetHdr) GSOType() uint8 { return h[1] }

// HdrLen is the length of the headers the kernel copies to each segment.
func (h VnetHdr) HdrLen() uint16 { return binary.LittleEndian.Uint16(h[2:]) }

// GSOSize is the payload size of each segment.
func (h VnetHdr) GSOSize() uint16 { return binary.LittleEndian.Uint16(h[4:]) }

// CsumStart is where the kernel starts summing for a partial checksum.
func (h VnetHdr) CsumStart() uint16 { return binary.LittleEndian.Uint16(h[6:]) }

// CsumOffset is the checksum field's offset from CsumStart.
func (h VnetHdr) CsumOffset() uint16 { return binary.LittleEndian.Uint16(h[8:]) }

// PartialCsum reports whether the L4 checksum field holds only the pseudo-header sum.
func (h VnetHdr) PartialCsum() bool { return h[0]&VnetFlagNeedsCsum != 0 }

// Set writes all fields at once (used when building packets: coalescing, tests).
func (h VnetHdr) Set(flags, gsoType uint8, hdrLen, gsoSize, csumStart, csumOffset uint16) {
	h[0], h[1] = flags, gsoType
	binary.LittleEndian.PutUint16(h[2:], hdrLen)
	binary.LittleEndian.PutUint16(h[4:], gsoSize)
	binary.LittleEndian.PutUint16(h[6:], csumStart)
	binary.LittleEndian.PutUint16(h[8:], csumOffset)
}
