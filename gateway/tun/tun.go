// Package tun is the packet device edgegate reads from and writes to: a Linux TUN, opened with
// songgao/water for plain operation or directly with IFF_VNET_HDR when offloads are on, and an
// in-memory device for tests and benchmarks. The interface is batch-oriented so the worker loop pays
// one scheduler round trip per batch, not per packet.
package tun

import "errors"

// VnetHdrLen is the size of struct virtio_net_hdr that precedes every packet on a device opened with
// IFF_VNET_HDR (we set TUNSETVNETHDRSZ to exactly this).
const VnetHdrLen = 10

// Offset is the headroom callers leave before each packet in their buffers: room for the virtio-net
// header, so one buffer layout serves devices with and without offloads.
const Offset = VnetHdrLen

// MaxPacket is the largest packet a read can return: a GSO super-packet is bounded by the 64 KiB IP
// length limit.
const MaxPacket = 65535

// BufSize is the size each batch buffer needs.
const BufSize = Offset + MaxPacket

// Device moves batches of IP packets. Packet i occupies bufs[i][Offset:Offset+sizes[i]] after Read;
// when VnetHdr reports true, bufs[i][Offset-VnetHdrLen:Offset] holds its virtio-net header on Read
// and must hold one on Write.
type Device interface {
	// Read blocks until at least one packet is available, then returns as many as are ready
	// (at most len(bufs)) without blocking again.
	Read(bufs [][]byte, sizes []int) (int, error)
	// Write sends every packet bufs[i][Offset:]; it returns how many the kernel accepted and the
	// first error. A refused packet does not stop the rest of the batch.
	Write(bufs [][]byte) (int, error)
	// VnetHdr reports whether packets carry a virtio-net header (offloads on).
	VnetHdr() bool
	// Name is the interface name.
	Name() string
	Close() error
}

// USODevice is implemented by devices that may accept UDP super-packets: a write whose virtio-net
// header says GSOUDPL4 is segmented by the kernel into datagrams of GSOSize payload bytes.
type USODevice interface {
	USO() bool
}

// ErrClosed is returned by Read and Write after Close.
var ErrClosed = errors.New("tun: device closed")
