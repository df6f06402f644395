package packet

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func TestChecksumRFC1071Example(t *testing.T) {
	// RFC 1071 section 3: the sum of these bytes is 0xddf2.
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := Checksum(b, 0); got != 0xddf2 {
		t.Fatalf("Checksum = %#04x, want 0xddf2", got)
	}
}

func TestChecksumMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 20, 40, 1499, 1500, 65535, 200000} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		for _, init := range []uint32{0, 1, 0xffff, 0x12345, 0xfffff} {
			if got, want := Checksum(b, init), naiveFold(naiveSum(b, init)); got != want {
				t.Fatalf("len %d init %#x: Checksum = %#04x, naive %#04x", n, init, got, want)
			}
		}
	}
	all := make([]byte, 200000)
	for i := range all {
		all[i] = 0xff
	}
	if got := Checksum(all, 0); got != 0xffff {
		t.Fatalf("all-ones sum = %#04x, want 0xffff (no carry lost)", got)
	}
}

func TestPseudoHeaderSum(t *testing.T) {
	tests := []struct {
		src, dst netip.Addr
		proto    Proto
		n        int
	}{
		{c4, s4, ProtoTCP, 40},
		{m4, b4, ProtoUDP, 65535},
		{c6, s6, ProtoICMPv6, 70000}, // IPv6 upper-layer length is 32 bits
		{b6, m6, ProtoTCP, 20},
	}
	for _, tt := range tests {
		got := naiveFold(PseudoHeaderSum(tt.proto, tt.src, tt.dst, tt.n))
		if want := naiveFold(naivePseudo(tt.proto, tt.src, tt.dst, tt.n)); got != want {
			t.Errorf("%v %v %d %d: %#04x want %#04x", tt.src, tt.dst, tt.proto, tt.n, got, want)
		}
	}
}

func TestChecksumUpdate16(t *testing.T) {
	// RFC 1624 section 4: eqn. 3 gives 0x0000 where eqn. 2 would give the wrong 0xffff.
	if got := ChecksumUpdate16(0xdd2f, 0x5555, 0x3285); got != 0x0000 {
		t.Fatalf("RFC 1624 example: %#04x, want 0x0000", got)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, 64)
	for i := 0; i < 10000; i++ {
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		binary.BigEndian.PutUint16(b[10:], 0)
		binary.BigEndian.PutUint16(b[10:], ^Checksum(b, 0))
		w := 2 * rng.IntN(32)
		if w == 10 {
			continue
		}
		old, nw := binary.BigEndian.Uint16(b[w:]), uint16(rng.Uint32())
		if i%7 == 0 {
			nw = old // unchanged word must keep the sum valid too
		}
		binary.BigEndian.PutUint16(b[w:], nw)
		binary.BigEndian.PutUint16(b[10:], ChecksumUpdate16(binary.BigEndian.Uint16(b[10:]), old, nw))
		if naiveFold(naiveSum(b, 0)) != 0xffff {
			t.Fatalf("iteration %d: updated checksum does not verify", i)
		}
	}
}
