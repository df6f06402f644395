package synproxy

import "math/bits"

// sipKey is a 128-bit SipHash key.
type sipKey [2]uint64

// sip24 is SipHash-2-4 (Aumasson and Bernstein, 2012) of the message made of the little-endian
// words m (len(m)*8 bytes). The kernel keys its SYN cookies with SipHash too; the Go standard
// library has no keyed short-input PRF (hash/maphash is not one: its seed is not a secret key
// and it makes no such claim), so the 2-4 rounds are written out here over whole words.
func sip24(k sipKey, m []uint64) uint64 {
	v0 := k[0] ^ 0x736f6d6570736575
	v1 := k[1] ^ 0x646f72616e646f6d
	v2 := k[0] ^ 0x6c7967656e657261
	v3 := k[1] ^ 0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13)
		v1 ^= v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16)
		v3 ^= v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21)
		v3 ^= v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17)
		v1 ^= v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	for _, w := range m {
		v3 ^= w
		round()
		round()
		v0 ^= w
	}
	last := uint64(len(m)*8) << 56 // no tail bytes: only the length byte
	v3 ^= last
	round()
	round()
	v0 ^= last
	v2 ^= 0xff
	round()
	round()
	round()
	round()
	return v0 ^ v1 ^ v2 ^ v3
}
