package lb

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
)

// TestHashSeedSharedChoice is the cluster contract of maglev and source_hash: two processes
// (two Sets) with the same hash_seed and the same backends, listed in any order, choose the
// same backend for every flow, and Recompute agrees with Pick; another seed chooses otherwise.
func TestHashSeedSharedChoice(t *testing.T) {
	for _, sched := range []string{SchedMaglev, SchedSourceHash} {
		t.Run(sched, func(t *testing.T) {
			bs := backends(1, 1, 2, 1, 3, 1, 1)
			rev := slices.Clone(bs)
			slices.Reverse(rev)
			const seed = 0x5eed_cafe_f00d_1234
			a := mustBuild(t, Spec{Scheduler: sched, Backends: bs, MaglevSize: 4099, HashSeed: seed}, nil)
			b := mustBuild(t, Spec{Scheduler: sched, Backends: rev, MaglevSize: 4099, HashSeed: seed}, nil)
			other := mustBuild(t, Spec{Scheduler: sched, Backends: bs, MaglevSize: 4099, HashSeed: seed + 1}, nil)
			unseeded := mustBuild(t, Spec{Scheduler: sched, Backends: bs, MaglevSize: 4099}, nil)
			differ, differ0 := 0, 0
			const flows = 20000
			for i := range flows {
				client := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
				h := FlowHash(6, client, netip.MustParseAddr("198.18.200.1"), uint16(1024+i), 80)
				pa, _ := a.Pick(client, h, 0)
				pb, _ := b.Pick(client, h, 0)
				if pa.Addr != pb.Addr {
					t.Fatalf("flow %d: %v on one node, %v on the other", i, pa.Addr, pb.Addr)
				}
				if rc, ok := b.Recompute(client, h); !ok || rc.Addr != pa.Addr {
					t.Fatalf("flow %d: Recompute %v, Pick %v", i, rc, pa.Addr)
				}
				if po, _ := other.Pick(client, h, 0); po.Addr != pa.Addr {
					differ++
				}
				if pu, _ := unseeded.Pick(client, h, 0); pu.Addr != pa.Addr {
					differ0++
				}
			}
			// With 7 backends two independent tables agree on about a fifth of the flows.
			for name, n := range map[string]int{"seed+1": differ, "no seed": differ0} {
				if n < flows/2 {
					t.Errorf("%s: only %d of %d flows chose another backend: the seed does not key the choice", name, n, flows)
				}
			}
		})
	}
}

// TestHashSeedZeroIsDefault keeps HashSeed 0 identical to the unseeded tables (upgrades of a
// single node keep their flows' backends).
func TestHashSeedZeroIsDefault(t *testing.T) {
	bs := backends(1, 1, 1, 1)
	s := mustBuild(t, Spec{Scheduler: SchedMaglev, Backends: bs, MaglevSize: 251}, nil)
	order := []int32{0, 1, 2, 3}
	if got := buildMaglev(s.backends, order, 251, 0); !slices.Equal(got, s.table) {
		t.Fatal("seed 0 changed the table")
	}
	if fmt.Sprint(buildMaglev(s.backends, order, 251, 1)) == fmt.Sprint(s.table) {
		t.Fatal("seed 1 left the table as it was")
	}
}
