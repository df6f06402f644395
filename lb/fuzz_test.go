package lb

import (
	"net/netip"
	"testing"
	"time"
)

// FuzzBuildPick decodes arbitrary bytes into a Spec (two bytes per backend: weight, state)
// and checks Build and Pick's invariants: a valid Spec builds, Pick succeeds exactly when a
// backend is eligible and only ever returns eligible backends, and the precomputed tables
// reference eligible backends only.
func FuzzBuildPick(f *testing.F) {
	f.Add(uint8(0), false, uint16(7), []byte{1, 0, 2, 0, 3, 0, 4, 0}, uint64(1))
	f.Add(uint8(2), false, uint16(0), []byte{5, 0, 1, 0, 1, 0}, uint64(2))
	f.Add(uint8(6), true, uint16(5), []byte{1, 1, 0, 0, 9, 2, 1, 0}, uint64(3))
	f.Fuzz(func(t *testing.T, sched uint8, affinity bool, maglevIdx uint16, desc []byte, seed uint64) {
		if len(desc) > 2*64 {
			desc = desc[:2*64]
		}
		spec := Spec{Scheduler: Schedulers[int(sched)%len(Schedulers)]}
		for i := 0; i+1 < len(desc); i += 2 {
			spec.Backends = append(spec.Backends, Backend{
				Addr:   addr(i / 2),
				Weight: int(desc[i]),
				State:  State(desc[i+1] % uint8(numStates)),
			})
		}
		primes := []int{0, 67, 127, 251, 1021, 4099}
		spec.MaglevSize = primes[int(maglevIdx)%len(primes)]
		if affinity {
			spec.Affinity = time.Second
			spec.AffinityCapacity = 64
		}
		s, err := Build(spec, nil)
		if err != nil {
			t.Fatalf("valid spec %+v: %v", spec, err)
		}
		want := 0
		for _, b := range spec.Backends {
			if b.State == Active && b.Weight > 0 {
				want++
			}
		}
		if s.Eligible() != want || len(s.Backends()) != len(spec.Backends) {
			t.Fatalf("Eligible %d (want %d), %d backends", s.Eligible(), want, len(s.Backends()))
		}
		for _, i := range s.table {
			if !s.elig[i] {
				t.Fatalf("maglev entry points at ineligible backend %d", i)
			}
		}
		for _, i := range s.seq {
			if !s.elig[i] {
				t.Fatalf("wrr entry points at ineligible backend %d", i)
			}
		}
		// Rebuild from itself with one state flipped, as a health change would.
		if len(spec.Backends) > 0 {
			b := &spec.Backends[int(seed%uint64(len(spec.Backends)))]
			b.State = (b.State + 1) % numStates
		}
		s2, err := Build(spec, s)
		if err != nil {
			t.Fatal(err)
		}
		for k := range uint64(64) {
			for _, set := range []*Set{s, s2} {
				c := clientAddr(int(k % 8))
				h := FlowHash(6, c, netip.MustParseAddr("192.0.2.1"), uint16(seed+k), 80)
				b, ok := set.Pick(c, h, int64(k)*int64(100*time.Millisecond))
				if ok != (set.Eligible() > 0) {
					t.Fatalf("Pick ok=%v with %d eligible", ok, set.Eligible())
				}
				if ok && (b.State != Active || b.Weight <= 0 || index(set, b) < 0) {
					t.Fatalf("Pick returned %+v", *b)
				}
				if ok {
					b.Active.Add(int64(k % 3))
				}
			}
		}
	})
}
