// Package tun is the packet device edgegate reads from and writes to: a Linux TUN, opened with
// songgao/water for plain operation or directly with IFF_VNET_HDR when offloads are on, and an
// in-memory device for tests and benchmarks. The interface is batch-oriented so the worker loop pays
// one scheduler round trip per batch, not per packet.
package tun

import "errors"

// Offset is the headroom callers leave before each packet in their buffers. The device keeps the
// packet's offload state there (a virtio-net header) from Read to Write, so one buffer layout
// serves devices with and without offloads; callers leave it alone (see Parse and MarkBuilt).
const Offset = vnetHdrLen

// MaxPacket is the largest packet a read can return: a GSO super-packet is bounded by the 64 KiB IP
// length limit.
const MaxPacket = 65535

// BufSize is the size each batch buffer needs.
const BufSize = Offset + MaxPacket

// Device moves batches of IP packets. Packet i occupies bufs[i][Offset:Offset+sizes[i]] after Read,
// and bufs[i][:Offset] its offload state (none on a device without offloads).
type Device interface {
	// Read blocks until at least one packet is available, then returns as many as are ready
	// (at most len(bufs)) without blocking again.
	Read(bufs [][]byte, sizes []int) (int, error)
	// Write sends every packet bufs[i][Offset:] with the offload state Read left in its headroom
	// (cleared by MarkBuilt). A device with USO first merges runs of same-flow UDP datagrams into
	// super-packets, in place in the buffer of each run's first datagram (which must have room:
	// BufSize). It returns how many packets the kernel accepted (a refused super-packet counts
	// each datagram it held) and the first error; a refused packet does not stop the batch.
	Write(bufs [][]byte) (int, error)
	// VnetHdr reports whether packets carry a virtio-net header (offloads on).
	VnetHdr() bool
	// Name is the interface name.
	Name() string
	Close() error
}

// USODevice is implemented by devices that may accept UDP super-packets (UDP segmentation offload:
// the kernel segments them into datagrams again), which their Write then builds.
type USODevice interface {
	USO() bool
	// Coalesced is the number of datagrams written inside super-packets so far (one writer).
	Coalesced() uint64
}

// ErrClosed is returned by Read and Write after Close.
var ErrClosed = errors.New("tun: device closed")
