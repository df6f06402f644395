package lb

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// Fixed hash secrets (wyhash's). The hashes here are deliberately deterministic, not seeded per
// process like hash/maphash: several gateway replicas behind ECMP must compute the same Maglev
// permutations and the same flow hashes so that a flow lands on the same backend whichever replica
// sees it.
const (
	p0 = 0xa0761d6478bd642f
	p1 = 0xe7037ed1a0b428db
	p2 = 0x8ebc6af09c88c6e3
	p3 = 0x589965cc75374cc3
	p4 = 0x1d8e4e27c47d124f
)

// Seeds that separate the uses of addrHash so their outputs are independent.
const (
	seedOffset  = 0x6a09e667f3bcc908 // Maglev permutation offset
	seedSkip    = 0xbb67ae8584caa73b // Maglev permutation skip
	seedClient  = 0x3c6ef372fe94f82b // source_hash and affinity client key
	seedBackend = 0xa54ff53a5f1d36f1 // affinity backend identity
)

// mix is wyhash's "mum": the two halves of the 128-bit product folded by xor. One multiply
// instruction and good avalanche; used as the building block of every hash here.
func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// FlowHash hashes a flow's 5-tuple for Pick's hash argument (Maglev uses it to choose a table
// entry). It is deterministic across processes (see the secrets above), allocates nothing and
// costs three multiplies. IPv4 and IPv4-mapped IPv6 addresses hash alike; zones are ignored.
func FlowHash(proto uint8, src, dst netip.Addr, sport, dport uint16) uint64 {
	s := src.As16()
	d := dst.As16()
	a := mix(binary.LittleEndian.Uint64(s[:8])^p0, binary.LittleEndian.Uint64(s[8:])^p1)
	b := mix(binary.LittleEndian.Uint64(d[:8])^p2, binary.LittleEndian.Uint64(d[8:])^p3)
	c := uint64(proto)<<32 | uint64(sport)<<16 | uint64(dport)
	return mix(a^c^p4, b^p1)
}

// addrHash hashes one address with a seed (see the seed constants).
func addrHash(a netip.Addr, seed uint64) uint64 {
	s := a.As16()
	h := mix(binary.LittleEndian.Uint64(s[:8])^p0^seed, binary.LittleEndian.Uint64(s[8:])^p1)
	return mix(h^p2, seed^p3)
}

// reduce maps a well-mixed 64-bit hash onto [0, n) with a multiply instead of a division
// (Lemire's fast range reduction; it uses the high bits of h).
func reduce(h uint64, n int) int {
	hi, _ := bits.Mul64(h, uint64(n))
	return int(hi)
}
