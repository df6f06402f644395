package nat

import (
	"testing"

	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/internal/pkttest"
	"github.com/edgegate/edgegate/packet"
)

// TestPortSliceNoCollision: two cluster nodes share the masquerade address and the backend;
// each allocates from its own slice of the port range (SliceLo..SliceHi), so the reply tuples
// of their flows never collide, even for the same client ports, and a client port inside the
// node's slice is kept while one outside it is replaced by a port of the slice.
func TestPortSliceNoCollision(t *testing.T) {
	slices := [2][2]uint16{{1024, 33279}, {33280, 65535}}
	nodes := make([]*fixture, 2)
	for i := range nodes {
		nodes[i] = newFixture(t, true, "maglev", b1)
		r := nodes[i].rules
		r.sliceLo, r.sliceHi = slices[i][0], slices[i][1]
	}
	replies := map[conntrack.Tuple]int{}
	for n, f := range nodes {
		for sport := uint16(30000); sport < 36000; sport += 3 {
			syn := pkttest.P{Proto: packet.ProtoTCP, Src: client, Dst: vip, Sport: sport, Dport: 80, Flags: "S"}.Build(t)
			v, why, p := f.run(t, syn)
			if v != Forward {
				t.Fatalf("node %d port %d: %v %v", n, sport, v, why)
			}
			if p.SrcPort < slices[n][0] || p.SrcPort > slices[n][1] {
				t.Fatalf("node %d: port %d outside its slice %v", n, p.SrcPort, slices[n])
			}
			// Kept unless an earlier flow of the node drew it at random.
			inSlice := sport >= slices[n][0] && sport <= slices[n][1]
			_, taken := replies[conntrack.MakeTuple(packet.ProtoTCP, p.Dst, p.Src, p.DstPort, sport)]
			if inSlice && !taken && p.SrcPort != sport {
				t.Fatalf("node %d: client port %d inside the slice replaced by %d", n, sport, p.SrcPort)
			}
			k := conntrack.MakeTuple(packet.ProtoTCP, p.Dst, p.Src, p.DstPort, p.SrcPort)
			if other, dup := replies[k]; dup {
				t.Fatalf("reply tuple %v used by node %d and node %d", k, other, n)
			}
			replies[k] = n
		}
	}
}

// TestSliceSpec: NewRules takes a slice inside the range and ignores one outside it.
func TestSliceSpec(t *testing.T) {
	for _, tt := range []struct {
		lo, hi, wantLo, wantHi uint16
	}{{2000, 3000, 2000, 3000}, {0, 0, 1024, 65535}, {500, 3000, 1024, 65535}, {3000, 2000, 1024, 65535}} {
		r := NewRules(Spec{PortLo: 1024, PortHi: 65535, SliceLo: tt.lo, SliceHi: tt.hi})
		if lo, hi := r.allocRange(); lo != tt.wantLo || hi != tt.wantHi {
			t.Errorf("slice %d-%d: allocating from %d-%d, want %d-%d", tt.lo, tt.hi, lo, hi, tt.wantLo, tt.wantHi)
		}
	}
}
