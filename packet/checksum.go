package packet

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// Checksum returns the ones'-complement sum of b added to initial, folded to 16 bits
// and NOT inverted, so it can be chained (pseudo-header, header, payload) and used for
// CHECKSUM_PARTIAL fields. An odd trailing byte is padded with zero as RFC 1071 says.
func Checksum(b []byte, initial uint32) uint16 {
	// Sum 64-bit big-endian words with end-around carry: 2^16 = 1 (mod 2^16-1), so this
	// is congruent to the RFC 1071 sum of 16-bit words and about four times faster.
	acc, carry := uint64(initial), uint64(0)
	var c uint64
	for len(b) >= 32 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b), 0)
		carry += c
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[8:]), 0)
		carry += c
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[16:]), 0)
		carry += c
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[24:]), 0)
		carry += c
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b), 0)
		carry += c
		b = b[8:]
	}
	var tail uint64
	if len(b) >= 4 {
		tail += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		tail += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		tail += uint64(b[0]) << 8
	}
	acc, c = bits.Add64(acc, tail, 0)
	carry += c
	acc, c = bits.Add64(acc, carry, 0)
	acc += c // cannot carry again: acc is small after a wrap
	acc = acc>>32 + acc&0xffffffff
	for acc > 0xffff {
		acc = acc&0xffff + acc>>16
	}
	return uint16(acc)
}

// PseudoHeaderSum returns the unfolded ones'-complement sum of the TCP/UDP/ICMPv6
// pseudo-header (RFC 793, RFC 8200 section 8.1) for an L4 segment of length bytes.
// Pass it as initial to Checksum; src and dst must be of the same family. Code holding the IP
// header uses its view's PseudoHeaderSum.
func PseudoHeaderSum(proto Proto, src, dst netip.Addr, length int) uint32 {
	if src.Is4() {
		a, b := src.As4(), dst.As4()
		return sumWords(a[:]) + sumWords(b[:]) + pseudoTail(proto, length)
	}
	a, b := src.As16(), dst.As16()
	return sumWords(a[:]) + sumWords(b[:]) + pseudoTail(proto, length)
}

// pseudoTail is the part of a pseudo-header sum after the addresses: protocol and length.
func pseudoTail(proto Proto, length int) uint32 {
	l := uint32(length)
	return uint32(proto) + l>>16 + l&0xffff
}

// sumWords is the unfolded sum of the 16-bit words of b (len(b) even and small: addresses).
func sumWords(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	return s
}

// ChecksumUpdate16 returns the inverted checksum csum updated for one 16-bit word
// changing from old to new, per RFC 1624 equation 3: HC' = ~(~HC + ~m + m').
func ChecksumUpdate16(csum, old, new uint16) uint16 {
	return applyInverted(csum, uint32(^old)+uint32(new))
}

// fold reduces a ones'-complement accumulator to 16 bits.
func fold(x uint32) uint16 {
	for x > 0xffff {
		x = x&0xffff + x>>16
	}
	return uint16(x)
}

// wordDelta is the ones'-complement contribution of a word changing from old to new.
func wordDelta(old, new uint16) uint32 { return uint32(^old) + uint32(new) }

// SumDelta is the change that rewriting some 16-bit words made to a ones'-complement sum over
// them (RFC 1624): the setters of the header views return it, and the checksums covering those
// words take it (UpdateChecksum), so several rewrites cost one checksum update.
type SumDelta uint32

// setWord writes v at b[0:2] and returns the change.
func setWord(b []byte, v uint16) SumDelta {
	d := SumDelta(wordDelta(binary.BigEndian.Uint16(b), v))
	binary.BigEndian.PutUint16(b, v)
	return d
}

// setWord32 writes v at b[0:4] and returns the change of its two words.
func setWord32(b []byte, v uint32) SumDelta {
	old := binary.BigEndian.Uint32(b)
	binary.BigEndian.PutUint32(b, v)
	return SumDelta(wordDelta(uint16(old>>16), uint16(v>>16)) + wordDelta(uint16(old), uint16(v)))
}

// setWords writes n (a multiple of 4 bytes: an address) over b and returns the change.
func setWords(b, n []byte) SumDelta {
	var d SumDelta
	for i := 0; i+3 < len(n); i += 4 {
		d += setWord32(b[i:], binary.BigEndian.Uint32(n[i:]))
	}
	return d
}

// applyInverted applies d to a transmitted (inverted) checksum.
func (d SumDelta) applyInverted(csum uint16) uint16 { return applyInverted(csum, uint32(d)) }

// updateField applies d to the checksum field at b[0:2]: a complete (inverted) checksum, or the
// non-inverted pseudo-header sum of a CHECKSUM_PARTIAL packet when partial.
func updateField(b []byte, d SumDelta, partial bool) {
	cs := binary.BigEndian.Uint16(b)
	if partial {
		binary.BigEndian.PutUint16(b, applySum(cs, uint32(d)))
		return
	}
	binary.BigEndian.PutUint16(b, applyInverted(cs, uint32(d)))
}

// applyInverted applies an accumulated word delta to a transmitted (inverted) checksum.
func applyInverted(csum uint16, delta uint32) uint16 {
	return ^fold(uint32(^csum) + delta)
}

// applySum applies an accumulated word delta to a non-inverted sum, as held in the
// checksum field of a CHECKSUM_PARTIAL packet (the pseudo-header sum).
func applySum(sum uint16, delta uint32) uint16 {
	return fold(uint32(sum) + delta)
}
