//go:build linux

package tun

import (
	"encoding/binary"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// TestSteeringProgram runs the steering program in the kernel (BPF_PROG_TEST_RUN) on packets of
// every kind: connection attempts go to the last queue, everything else to the flow queues.
func TestSteeringProgram(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs as root: loading a BPF program needs it")
		}
		t.Skip("needs root to load a BPF program")
	}
	const queues = 3
	prog, err := loadSteering(queues)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	tcp4 := func(flags byte, ihl int, frag uint16) []byte {
		b := make([]byte, ihl+20)
		b[0] = 0x40 | byte(ihl/4)
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		binary.BigEndian.PutUint16(b[6:], frag)
		b[9] = 6
		b[ihl+12] = 5 << 4
		b[ihl+13] = flags
		return b
	}
	tcp6 := func(next, flags byte) []byte {
		b := make([]byte, 60)
		b[0] = 0x60
		binary.BigEndian.PutUint16(b[4:], 20)
		b[6] = next
		b[53] = flags
		return b
	}
	udp4 := tcp4(0x02, 20, 0)
	udp4[9] = 17
	for _, tc := range []struct {
		name string
		pkt  []byte
		syn  bool
	}{
		{"ipv4 SYN", tcp4(0x02, 20, 0x4000), true},
		{"ipv4 SYN with ECE/CWR and options in the IP header", tcp4(0xc2, 24, 0), true},
		{"ipv4 SYN-ACK", tcp4(0x12, 20, 0), false},
		{"ipv4 ACK", tcp4(0x10, 20, 0), false},
		{"ipv4 SYN+RST", tcp4(0x06, 20, 0), false},
		{"ipv4 later fragment", tcp4(0x02, 20, 0x0010), false},
		{"ipv4 UDP", udp4, false},
		{"ipv6 SYN", tcp6(6, 0x02), true},
		{"ipv6 ACK", tcp6(6, 0x10), false},
		{"ipv6 extension header", tcp6(0, 0x02), false},
		{"ipv4 TCP header cut short", tcp4(0x02, 20, 0)[:30], false},
	} {
		// The test run takes an Ethernet frame and hands the program its network header.
		frame := append([]byte{0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 6, 0x08, 0x00}, tc.pkt...)
		if tc.pkt[0]>>4 == 6 {
			frame[13] = 0xdd
			frame[12] = 0x86
		}
		ret, err := prog.Run(&ebpf.RunOptions{Data: frame})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if (int(ret) == SYNQueue(queues)) != tc.syn || int(ret) >= queues {
			t.Errorf("%s: queue %d (SYN queue %d)", tc.name, ret, SYNQueue(queues))
		}
	}
	// Established flows spread over the flow queues, each flow on one.
	seen := map[uint32]int{}
	for port := range 64 {
		pkt := tcp4(0x10, 20, 0)
		copy(pkt[12:], []byte{198, 18, 1, 2, 198, 18, 200, 10})
		binary.BigEndian.PutUint16(pkt[20:], uint16(40000+port))
		binary.BigEndian.PutUint16(pkt[22:], 80)
		frame := append([]byte{0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 6, 0x08, 0x00}, pkt...)
		var q [2]uint32
		for i := range q {
			if q[i], err = prog.Run(&ebpf.RunOptions{Data: frame}); err != nil {
				t.Fatal(err)
			}
		}
		if q[0] != q[1] || int(q[0]) == SYNQueue(queues) {
			t.Fatalf("flow port %d: queues %v", port, q)
		}
		seen[q[0]]++
	}
	if len(seen) != queues-1 {
		t.Errorf("64 flows landed on queues %v, want all %d flow queues used", seen, queues-1)
	}
}
