package synproxy

import (
	"encoding/binary"
	"testing"
)

// TestSip24Vectors checks the reference test vectors of the SipHash paper (appendix) for the
// whole-word messages: key 00..0f, message 00..(n-1), n = 0, 8, 16 (vectors 0, 8 and 16 of
// the reference implementation's vectors.h).
func TestSip24Vectors(t *testing.T) {
	var kb [16]byte
	for i := range kb {
		kb[i] = byte(i)
	}
	k := sipKey{binary.LittleEndian.Uint64(kb[:8]), binary.LittleEndian.Uint64(kb[8:])}
	want := map[int]uint64{
		0:  0x726fdb47dd0e0e31,
		8:  0x93f5f5799a932462,
		16: 0x3f2acc7f57c29bdb,
	}
	for _, n := range []int{0, 8, 16} {
		msg := make([]byte, n)
		for i := range msg {
			msg[i] = byte(i)
		}
		m := make([]uint64, n/8)
		for i := range m {
			m[i] = binary.LittleEndian.Uint64(msg[8*i:])
		}
		if got := sip24(k, m); got != want[n] {
			t.Errorf("SipHash-2-4 of %d bytes = %#x, want %#x", n, got, want[n])
		}
	}
}
