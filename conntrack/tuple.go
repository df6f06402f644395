// Package conntrack tracks flows (TCP, UDP, ICMP echo) for the data path: a bounded hash table
// whose packet-path lookup takes no lock and allocates nothing, netfilter-compatible TCP states
// and timeouts, early drop of unassured flows when full, and expiry without scanning on the
// packet path (Lookup treats expired entries as absent; Sweep removes them in the background).
//
// TCP sequence windows are tracked per direction as netfilter's tcp_in_window does (see
// SeqWindow): an RST outside the window is dropped, other out-of-window segments are counted
// and forwarded without a state change (netfilter would mark them INVALID).
//
// Deliberate differences from netfilter's nf_conntrack: no loose pick-up of mid-stream
// connections (an ACK without an entry is INVALID); a SYN from the reply side on a TIME_WAIT
// entry is INVALID instead of re-opening the flow with the roles switched (the NAT mapping
// could not follow the switch).
package conntrack

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"

	"github.com/edgegate/edgegate/packet"
)

// Tuple is the compact, comparable key of one direction of a flow: 16-byte addresses (IPv4 as
// ::ffff:a.b.c.d) so IPv4 and IPv6 share one key type without netip's zone pointer, ports (for
// ICMP echo the identifier on the side that carries it, see packet.Packet) and the protocol.
type Tuple struct {
	Src, Dst         [16]byte
	SrcPort, DstPort uint16
	Proto            packet.Proto
}

// MakeTuple builds a tuple from netip values (IPv4 addresses are stored v4-mapped).
func MakeTuple(proto packet.Proto, src, dst netip.Addr, sport, dport uint16) Tuple {
	return Tuple{Src: src.As16(), Dst: dst.As16(), SrcPort: sport, DstPort: dport, Proto: proto}
}

// TupleOf is the tuple of a parsed packet, as it arrives (before any translation).
func TupleOf(p *packet.Packet) Tuple {
	return Tuple{Src: p.Src.As16(), Dst: p.Dst.As16(), SrcPort: p.SrcPort, DstPort: p.DstPort, Proto: p.Proto}
}

// Reverse is the tuple of the opposite direction (addresses and ports swapped), i.e. the reply
// expected without translation.
func (t Tuple) Reverse() Tuple {
	return Tuple{Src: t.Dst, Dst: t.Src, SrcPort: t.DstPort, DstPort: t.SrcPort, Proto: t.Proto}
}

// SrcAddr is the source address, unmapped for IPv4.
func (t Tuple) SrcAddr() netip.Addr { return netip.AddrFrom16(t.Src).Unmap() }

// DstAddr is the destination address, unmapped for IPv4.
func (t Tuple) DstAddr() netip.Addr { return netip.AddrFrom16(t.Dst).Unmap() }

// String formats the tuple for logs and the API, e.g. "tcp 192.0.2.1:1234->198.51.100.7:80".
func (t Tuple) String() string {
	return fmt.Sprintf("%s %s->%s", t.Proto,
		netip.AddrPortFrom(t.SrcAddr(), t.SrcPort), netip.AddrPortFrom(t.DstAddr(), t.DstPort))
}

// Hash is a fast keyed hash of the tuple (no allocation, a few multiplications), for callers
// that need a flow hash, e.g. for load-balancer selection. Equal tuples and seeds give equal
// hashes; the direction matters (t and t.Reverse() hash differently).
func (t *Tuple) Hash(seed uint64) uint64 {
	return t.hash(&hashKey{seed, seed ^ k1, seed ^ k2, seed ^ k3, seed ^ k4, seed ^ k5})
}

// Arbitrary odd constants (from wyhash) that spread a single seed over the six key words.
const (
	k1 = 0xa0761d6478bd642f
	k2 = 0xe7037ed1a0b428db
	k3 = 0x8ebc6af09c88c6e3
	k4 = 0x589965cc75374cc3
	k5 = 0x1d8e4e27c47d124f
)

// hashKey is the per-table random key of the tuple hash, so flows cannot be crafted to
// collide in one bucket.
type hashKey [6]uint64

// mum is the 64x64->128 multiply folded to 64 bits (wyhash's mixing step).
func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func (t *Tuple) hash(k *hashKey) uint64 {
	le := binary.LittleEndian
	a := mum(le.Uint64(t.Src[0:8])^k[0], le.Uint64(t.Src[8:16])^k[1])
	b := mum(le.Uint64(t.Dst[0:8])^k[2], le.Uint64(t.Dst[8:16])^k[3])
	pp := uint64(t.SrcPort) | uint64(t.DstPort)<<16 | uint64(t.Proto)<<32
	return mum(a^pp^k[4], b^k[5])
}

// equal is t == *k without the generic memequal call the compiler emits for the 37-byte
// struct: five word compares folded into one branch.
func (t *Tuple) equal(k *Tuple) bool {
	le := binary.LittleEndian
	// Parenthesised: in Go ^ and | have the same precedence.
	x := (le.Uint64(t.Src[0:8]) ^ le.Uint64(k.Src[0:8])) |
		(le.Uint64(t.Src[8:16]) ^ le.Uint64(k.Src[8:16])) |
		(le.Uint64(t.Dst[0:8]) ^ le.Uint64(k.Dst[0:8])) |
		(le.Uint64(t.Dst[8:16]) ^ le.Uint64(k.Dst[8:16])) |
		uint64(t.SrcPort^k.SrcPort) | uint64(t.DstPort^k.DstPort) | uint64(t.Proto^k.Proto)
	return x == 0
}

// Dir is the direction of a packet relative to its flow.
type Dir uint8

// Directions: Original is client -> service as first seen, Reply the way back.
const (
	Original Dir = 0
	Reply    Dir = 1
)

// String is "original" or "reply".
func (d Dir) String() string {
	if d == Original {
		return "original"
	}
	return "reply"
}
