package lb

import (
	"net/netip"
	"testing"
	"time"
)

// BenchmarkPick measures one Pick per scheduler over 16 backends of mixed weights, with fresh
// clients and flow hashes (the data path's new-flow case); /affinity adds the client table.
func BenchmarkPick(b *testing.B) {
	weights := []int{1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4}
	svc := netip.MustParseAddr("192.0.2.10")
	for _, aff := range []time.Duration{0, time.Hour} {
		for _, name := range Schedulers {
			bname := name
			if aff > 0 {
				bname += "/affinity"
			}
			b.Run(bname, func(b *testing.B) {
				s := mustBuild(b, Spec{Scheduler: name, Backends: backends(weights...), Affinity: aff}, nil)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					i++
					c := clientAddr(i & 0xfff)
					if _, ok := s.Pick(c, FlowHash(6, c, svc, uint16(i), 443), int64(i)); !ok {
						b.Fatal("Pick: no backend")
					}
				}
			})
		}
	}
}

// BenchmarkPickParallel shows contention on shared state (round robin counters, affinity
// slots) with all CPUs picking from one Set.
func BenchmarkPickParallel(b *testing.B) {
	svc := netip.MustParseAddr("192.0.2.10")
	for _, name := range []string{SchedRoundRobin, SchedWeightedRoundRobin, SchedLeastConn, SchedMaglev} {
		b.Run(name, func(b *testing.B) {
			s := mustBuild(b, Spec{Scheduler: name, Backends: backends(1, 2, 3, 4, 1, 2, 3, 4)}, nil)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					c := clientAddr(i & 0xfff)
					s.Pick(c, FlowHash(6, c, svc, uint16(i), 443), int64(i))
				}
			})
		})
	}
}

// BenchmarkMaglevBuild builds a default-size (65537) Maglev table for 1000 backends, with
// equal weights (the paper's round loop) and with weights 1..4 (the turn heap).
func BenchmarkMaglevBuild(b *testing.B) {
	for _, tc := range []struct {
		name    string
		weights func(i int) int
	}{
		{"equal", func(int) int { return 1 }},
		{"weighted", func(i int) int { return 1 + i%4 }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			bs := make([]Backend, 1000)
			for i := range bs {
				bs[i] = Backend{Addr: addr(i), Weight: tc.weights(i)}
			}
			spec := Spec{Scheduler: SchedMaglev, Backends: bs, MaglevSize: DefaultMaglevSize}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Build(spec, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFlowHash(b *testing.B) {
	src := netip.MustParseAddr("2001:db8::1")
	dst := netip.MustParseAddr("2001:db8::2")
	b.ReportAllocs()
	var sink uint64
	i := 0
	for b.Loop() {
		i++
		sink += FlowHash(6, src, dst, uint16(i), 443)
	}
	_ = sink
}
