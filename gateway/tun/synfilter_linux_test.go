//go:build linux

package tun

import (
	"encoding/binary"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// testSYNFilter loads the prefilter with small rates and windows that never change during a test
// (2^62 ns), so the current bitmap slot is 0 and the previous one 2.
func testSYNFilter(t *testing.T, fresh, retry int32) *SYNFilter {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs as root: loading a BPF program needs it")
		}
		t.Skip("needs root to load a BPF program")
	}
	f, err := loadSYNFilter(synFilterParams{freshPerWindow: fresh, retryPerWindow: retry, windowShift: 62, epochShift: 62, seed: 12345})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.prog.Close(); f.closeMaps() })
	return f
}

// run hands the program pkt as the kernel's test run does (an Ethernet frame whose network
// header the program sees) and reports whether the packet passed whole.
func (f *SYNFilter) run(t *testing.T, pkt []byte) bool {
	t.Helper()
	frame := append([]byte{0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 6, 0x08, 0x00}, pkt...)
	if pkt[0]>>4 == 6 {
		frame[12], frame[13] = 0x86, 0xdd
	}
	ret, err := f.prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatal(err)
	}
	if ret != 0 && int(ret) != len(pkt) {
		t.Fatalf("program returned %d for a %d-byte packet: want 0 or its length", ret, len(pkt))
	}
	return ret != 0
}

func synPacket4(sport uint16, flags byte) []byte {
	b := make([]byte, 40)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], 40)
	b[9] = 6
	copy(b[12:], []byte{198, 18, 128, 7})
	copy(b[16:], []byte{198, 18, 200, 10})
	binary.BigEndian.PutUint16(b[20:], sport)
	binary.BigEndian.PutUint16(b[22:], 80)
	b[32] = 5 << 4
	b[33] = flags
	return b
}

func synPacket6(sport uint16) []byte {
	b := make([]byte, 60)
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], 20)
	b[6] = 6
	b[8], b[9], b[23] = 0x20, 0x01, 7
	b[24], b[25], b[39] = 0x20, 0x01, 10
	binary.BigEndian.PutUint16(b[40:], sport)
	binary.BigEndian.PutUint16(b[42:], 443)
	b[53] = 0x02
	return b
}

// TestSYNFilterProgram runs the prefilter in the kernel (BPF_PROG_TEST_RUN): attempts pass up to
// the rate, then a new attempt is dropped and remembered, its repetition passes up to the retry
// rate, and packets other than connection attempts always pass.
func TestSYNFilterProgram(t *testing.T) {
	f := testSYNFilter(t, 2, 3)
	const ack, syn, synAck = 0x10, 0x02, 0x12
	steps := []struct {
		name string
		pkt  []byte
		pass bool
	}{
		{"first attempt, within the rate", synPacket4(1000, syn), true},
		{"second attempt, within the rate", synPacket4(1001, syn), true},
		{"third attempt: over the rate, not seen", synPacket4(1002, syn), false},
		{"IPv6 attempt: over the rate, not seen", synPacket6(1003), false},
		{"an ACK always passes", synPacket4(1004, ack), true},
		{"a SYN-ACK always passes", synPacket4(1005, synAck), true},
		{"a UDP datagram always passes", func() []byte { b := synPacket4(1006, syn); b[9] = 17; return b }(), true},
		{"the third attempt repeated passes", synPacket4(1002, syn), true},
		{"the IPv6 attempt repeated passes", synPacket6(1003), true},
		{"the third attempt again passes (retry 3 of 3)", synPacket4(1002, syn), true},
		{"a fourth repetition is over the retry rate", synPacket4(1002, syn), false},
		{"a new attempt is still dropped", synPacket4(1007, syn), false},
	}
	for _, s := range steps {
		if got := f.run(t, s.pkt); got != s.pass {
			t.Errorf("%s: passed %v, want %v", s.name, got, s.pass)
		}
	}
	want := SYNFilterStats{Passed: 2, FirstDropped: 3, RetryPassed: 3, RetryDropped: 1}
	if got := f.Stats(); got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
}

// TestSYNFilterEpochs: an attempt remembered in the previous slot still passes when repeated;
// once its slot is cleared (two epochs later) it counts as new again.
func TestSYNFilterEpochs(t *testing.T) {
	f := testSYNFilter(t, 0, 10)
	pkt := synPacket4(2000, 0x02)
	if f.run(t, pkt) {
		t.Fatal("an attempt over a rate of 0 passed")
	}
	// Move the attempt's mark from the current slot (0) to the previous one (2), as an epoch
	// change would.
	marked := 0
	var w [8]byte
	for i := int64(0); i < synMarkWords; i++ {
		f.mem.ReadAt(w[:], i*24)
		if w != [8]byte{} {
			marked++
			f.mem.WriteAt(w[:], i*24+16)
		}
	}
	if marked != 1 {
		t.Fatalf("%d bitmap words set after one dropped attempt, want 1", marked)
	}
	f.clearSlot(0)
	if !f.run(t, pkt) {
		t.Error("an attempt remembered in the previous epoch was dropped when repeated")
	}
	f.clearSlot(2)
	f.clearSlot(0)
	if f.run(t, pkt) {
		t.Error("an attempt whose mark was cleared passed as a repetition")
	}
}
