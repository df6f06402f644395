package lb

import (
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// chiSquare returns the chi-square statistic of counts against a uniform expectation.
func chiSquare(counts []int, total int) float64 {
	exp := float64(total) / float64(len(counts))
	x := 0.0
	for _, c := range counts {
		d := float64(c) - exp
		x += d * d / exp
	}
	return x
}

// TestFlowHashDistribution hashes flows that differ only a little (sequential source ports,
// sequential client addresses) and checks that high bits (used by reduce) and low bits (used
// by callers' modulo) are both uniform: chi-square over 256 buckets (255 degrees of freedom,
// mean 255, sd 22.6) must stay below 255 + 5 sd.
func TestFlowHashDistribution(t *testing.T) {
	dst := netip.MustParseAddr("192.0.2.1")
	dst6 := netip.MustParseAddr("2001:db8::1")
	cases := map[string]func(i int) uint64{
		"sport": func(i int) uint64 {
			return FlowHash(6, netip.MustParseAddr("198.51.100.7"), dst, uint16(i), 80)
		},
		"client v4": func(i int) uint64 { return FlowHash(17, clientAddr(i), dst, 5000, 53) },
		"client v6": func(i int) uint64 {
			a := dst6.As16()
			a[14], a[15] = byte(i>>8), byte(i)
			return FlowHash(6, netip.AddrFrom16(a), dst6, 40000, 443)
		},
		"dport": func(i int) uint64 { return FlowHash(6, clientAddr(1), dst, 40000, uint16(i)) },
	}
	const n = 1 << 16
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			hi, lo := make([]int, 256), make([]int, 256)
			seen := make(map[uint64]bool, n)
			for i := range n {
				v := h(i)
				seen[v] = true
				hi[reduce(v, 256)]++
				lo[v&255]++
			}
			if len(seen) != n {
				t.Errorf("%d collisions among %d flows", n-len(seen), n)
			}
			for what, c := range map[string][]int{"high bits": hi, "low bits": lo} {
				if x := chiSquare(c, n); x > 255+5*22.6 {
					t.Errorf("%s: chi-square %.1f over 256 buckets", what, x)
				}
			}
		})
	}
}

// TestFlowHashAvalanche flips each input bit and checks that on average about half of the
// output bits change, and that every field takes part in the hash.
func TestFlowHashAvalanche(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	type in struct {
		proto        uint8
		src, dst     [16]byte
		sport, dport uint16
	}
	hash := func(x in) uint64 {
		return FlowHash(x.proto, netip.AddrFrom16(x.src), netip.AddrFrom16(x.dst), x.sport, x.dport)
	}
	totalBits := 8 + 128 + 128 + 16 + 16
	flip := func(x in, bit int) in {
		switch {
		case bit < 8:
			x.proto ^= 1 << bit
		case bit < 136:
			x.src[(bit-8)/8] ^= 1 << ((bit - 8) % 8)
		case bit < 264:
			x.dst[(bit-136)/8] ^= 1 << ((bit - 136) % 8)
		case bit < 280:
			x.sport ^= 1 << (bit - 264)
		default:
			x.dport ^= 1 << (bit - 280)
		}
		return x
	}
	for bit := range totalBits {
		changed := 0
		const trials = 200
		for range trials {
			var x in
			x.proto = uint8(rng.Uint32())
			for i := range x.src {
				x.src[i], x.dst[i] = byte(rng.Uint32()), byte(rng.Uint32())
			}
			x.sport, x.dport = uint16(rng.Uint32()), uint16(rng.Uint32())
			changed += bits.OnesCount64(hash(x) ^ hash(flip(x, bit)))
		}
		if avg := float64(changed) / trials; avg < 28 || avg > 36 {
			t.Errorf("input bit %d changes %.1f output bits on average, want about 32", bit, avg)
		}
	}
}

func TestFlowHashAddressForms(t *testing.T) {
	v4 := netip.MustParseAddr("198.51.100.7")
	mapped := netip.AddrFrom16(v4.As16())
	zoned := netip.MustParseAddr("fe80::1%eth0")
	d := netip.MustParseAddr("192.0.2.1")
	if FlowHash(6, v4, d, 1, 2) != FlowHash(6, mapped, d, 1, 2) {
		t.Error("IPv4 and IPv4-mapped IPv6 hash differently")
	}
	if FlowHash(6, zoned, d, 1, 2) != FlowHash(6, zoned.WithZone(""), d, 1, 2) {
		t.Error("the zone changes the hash")
	}
	// Direction matters: a flow and its reverse are different flows for the scheduler.
	if FlowHash(6, v4, d, 1, 2) == FlowHash(6, d, v4, 2, 1) {
		t.Error("FlowHash is symmetric")
	}
}

// TestFlowHashStable pins one value: gateway replicas (and versions during a rolling upgrade)
// must agree on flow hashes and Maglev tables, so changing the function is a visible decision.
func TestFlowHashStable(t *testing.T) {
	got := FlowHash(6, netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("192.0.2.1"), 40000, 443)
	if want := pinnedFlowHash; got != want {
		t.Errorf("FlowHash changed: %#x, pinned %#x", got, want)
	}
}

func TestReduce(t *testing.T) {
	for _, n := range []int{1, 2, 3, 65537} {
		for _, h := range []uint64{0, 1, 1 << 63, ^uint64(0)} {
			if r := reduce(h, n); r < 0 || r >= n {
				t.Errorf("reduce(%#x, %d) = %d", h, n, r)
			}
		}
	}
	if reduce(^uint64(0), 65537) != 65536 || reduce(0, 65537) != 0 {
		t.Error("reduce does not span the range")
	}
}

// pinnedFlowHash is FlowHash(6, 198.51.100.7, 192.0.2.1, 40000, 443) as first released.
const pinnedFlowHash uint64 = 0xa9453da0410b74fd
