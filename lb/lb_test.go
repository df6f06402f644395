package lb

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// addr returns the i-th test backend address (198.18.0.0/15, benchmarking range).
func addr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
}

// clientAddr returns the i-th test client address.
func clientAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)})
}

// backends makes Active backends with the given weights at addr(0), addr(1), ...
func backends(weights ...int) []Backend {
	bs := make([]Backend, len(weights))
	for i, w := range weights {
		bs[i] = Backend{Addr: addr(i), Weight: w}
	}
	return bs
}

func mustBuild(t testing.TB, spec Spec, prev *Set) *Set {
	t.Helper()
	s, err := Build(spec, prev)
	if err != nil {
		t.Fatalf("Build(%+v): %v", spec, err)
	}
	return s
}

// index returns b's position in s (configuration order).
func index(s *Set, b *Backend) int {
	for i := range s.backends {
		if &s.backends[i] == b {
			return i
		}
	}
	return -1
}

func TestBuildErrors(t *testing.T) {
	v4 := netip.MustParseAddr("198.18.0.1")
	mapped := netip.AddrFrom16(v4.As16())
	tests := []struct {
		name string
		spec Spec
		want error
	}{
		{"unknown scheduler", Spec{Scheduler: "fastest", Backends: backends(1)}, ErrUnknownScheduler},
		{"negative weight", Spec{Backends: backends(1, -1)}, ErrBadBackend},
		{"weight too large", Spec{Backends: backends(MaxWeight + 1)}, ErrBadBackend},
		{"no address", Spec{Backends: []Backend{{Weight: 1}}}, ErrBadBackend},
		{"bad state", Spec{Backends: []Backend{{Addr: v4, Weight: 1, State: numStates}}}, ErrBadBackend},
		{"duplicate", Spec{Backends: []Backend{{Addr: v4, Weight: 1}, {Addr: v4, Weight: 2}}}, ErrBadBackend},
		{"duplicate mapped", Spec{Backends: []Backend{{Addr: v4, Weight: 1}, {Addr: mapped, Weight: 2}}}, ErrBadBackend},
		{"maglev size not prime", Spec{Scheduler: SchedMaglev, Backends: backends(1), MaglevSize: 65536}, ErrBadMaglevSize},
		{"maglev size one", Spec{Scheduler: SchedMaglev, Backends: backends(1), MaglevSize: 1}, ErrBadMaglevSize},
		{"maglev size below backends", Spec{Scheduler: SchedMaglev, Backends: backends(1, 1, 1, 1), MaglevSize: 3}, ErrBadMaglevSize},
		{"maglev size too large", Spec{Scheduler: SchedMaglev, Backends: backends(1), MaglevSize: 16777259}, ErrBadMaglevSize},
		{"negative affinity", Spec{Backends: backends(1), Affinity: -time.Second}, ErrBadAffinity},
		{"affinity capacity", Spec{Backends: backends(1), Affinity: time.Second, AffinityCapacity: MaxAffinityCapacity + 1}, ErrBadAffinity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Build(tt.spec, nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Build = %v, %v; want error %v", s, err, tt.want)
			}
		})
	}
	// And the valid neighbours of those cases build.
	for _, spec := range []Spec{
		{Backends: backends(0, MaxWeight)},
		{Scheduler: SchedMaglev, Backends: backends(1, 1, 1), MaglevSize: 3},
		{Scheduler: SchedSourceHash, Backends: backends(1), MaglevSize: 2},
		{Scheduler: SchedRoundRobin, Backends: backends(1), MaglevSize: 16777213}, // largest allowed prime
		{Backends: nil},
	} {
		mustBuild(t, spec, nil)
	}
	for _, name := range Schedulers {
		s := mustBuild(t, Spec{Scheduler: name, Backends: backends(1)}, nil)
		if s.Scheduler() != name {
			t.Errorf("Scheduler() = %q, want %q", s.Scheduler(), name)
		}
	}
	if s := mustBuild(t, Spec{Backends: backends(1)}, nil); s.Scheduler() != DefaultScheduler {
		t.Errorf("default scheduler = %q, want %q", s.Scheduler(), DefaultScheduler)
	}
}

// distributionBackends are weights 1,2,3,4 plus three backends that must never be picked.
func distributionBackends() []Backend {
	bs := backends(1, 2, 3, 4, 5, 3, 0)
	bs[4].State = Draining
	bs[5].State = Unhealthy
	return bs
}

func TestDistribution(t *testing.T) {
	const picks = 100_000
	weighted := []float64{0.1, 0.2, 0.3, 0.4, 0, 0, 0}
	equal := []float64{0.25, 0.25, 0.25, 0.25, 0, 0, 0}
	tests := []struct {
		sched string
		want  []float64
	}{
		{SchedRandom, weighted},
		{SchedRoundRobin, equal}, // plain round robin ignores weights, like IPVS rr
		{SchedWeightedRoundRobin, weighted},
		{SchedTwoChoices, weighted}, // idle backends: the first (weighted) draw wins ties
		{SchedLeastConn, equal},     // idle backends: ties spread by flow hash
		{SchedSourceHash, weighted},
		{SchedMaglev, weighted},
	}
	for _, tt := range tests {
		t.Run(tt.sched, func(t *testing.T) {
			s := mustBuild(t, Spec{Scheduler: tt.sched, Backends: distributionBackends()}, nil)
			rng := rand.New(rand.NewPCG(1, 2))
			counts := make([]int, len(s.backends))
			for i := range picks {
				client := clientAddr(i)
				if tt.sched == SchedSourceHash {
					client = netip.AddrFrom4([4]byte{10, byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))})
				}
				h := FlowHash(6, client, netip.MustParseAddr("192.0.2.1"), uint16(rng.IntN(65536)), 80)
				b, ok := s.Pick(client, h, 0)
				if !ok {
					t.Fatal("Pick: no backend")
				}
				counts[index(s, b)]++
			}
			for i, want := range tt.want {
				got := float64(counts[i]) / picks
				if want == 0 && counts[i] != 0 || math.Abs(got-want) > 0.05*want {
					t.Errorf("backend %d (weight %d, %v): share %.4f, want %.4f ±5%%", i,
						s.backends[i].Weight, s.backends[i].State, got, want)
				}
			}
		})
	}
}

// TestLoadFollowsWeights runs a closed-loop simulation for the load-aware schedulers: each
// pick opens a flow (Active++), and once 2000 flows are open a random one ends per pick. The
// open flows per backend must follow the weights.
func TestLoadFollowsWeights(t *testing.T) {
	for _, sched := range []string{SchedLeastConn, SchedTwoChoices} {
		t.Run(sched, func(t *testing.T) {
			s := mustBuild(t, Spec{Scheduler: sched, Backends: distributionBackends()}, nil)
			rng := rand.New(rand.NewPCG(3, 4))
			var open []int
			for i := range 50_000 {
				b, ok := s.Pick(clientAddr(i), rng.Uint64(), 0)
				if !ok {
					t.Fatal("Pick: no backend")
				}
				b.Active.Add(1)
				open = append(open, index(s, b))
				if len(open) > 2000 {
					k := rng.IntN(len(open))
					s.backends[open[k]].Active.Add(-1)
					open[k] = open[len(open)-1]
					open = open[:len(open)-1]
				}
			}
			for i, want := range []float64{0.1, 0.2, 0.3, 0.4, 0, 0, 0} {
				got := float64(s.backends[i].Active.Load()) / float64(len(open))
				if math.Abs(got-want) > 0.05*want || want == 0 && got != 0 {
					t.Errorf("backend %d: %.4f of open flows, want %.4f ±5%%", i, got, want)
				}
			}
		})
	}
}

func TestRoundRobinOrder(t *testing.T) {
	bs := backends(1, 7, 1, 0, 3)
	bs[1].State = Draining
	s := mustBuild(t, Spec{Scheduler: SchedRoundRobin, Backends: bs}, nil)
	var got []int
	for range 8 {
		b, _ := s.Pick(clientAddr(1), 0, 0)
		got = append(got, index(s, b))
	}
	if want := []int{0, 2, 4, 0, 2, 4, 0, 2}; !slices.Equal(got, want) {
		t.Errorf("round robin order %v, want %v", got, want)
	}
}

func TestSmoothWRRSequence(t *testing.T) {
	tests := []struct {
		weights []int
		want    string
	}{
		{[]int{5, 1, 1}, "aabacaa"}, // nginx's documented example
		{[]int{1, 1, 1}, "abc"},
		{[]int{2, 0, 4}, "cac"}, // gcd 2 reduces the period, weight 0 never appears
		{[]int{3, 2}, "abab" + "a"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.weights), func(t *testing.T) {
			s := mustBuild(t, Spec{Scheduler: SchedWeightedRoundRobin, Backends: backends(tt.weights...)}, nil)
			got := ""
			for range 2 * len(tt.want) { // two periods: the sequence repeats
				b, _ := s.Pick(clientAddr(1), 0, 0)
				got += string(rune('a' + index(s, b)))
			}
			if got != tt.want+tt.want {
				t.Errorf("sequence %q, want %q", got, tt.want+tt.want)
			}
		})
	}
}

// TestWRRSmoothAndLarge checks both sequence generators on random weights: every prefix of the
// sequence stays within 2 picks of the ideal share, and a full period matches the weights.
func TestWRRSmoothAndLarge(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{7, 50, 1500} { // 1500 backends exceed maxWRRWork: stride path
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			bs := make([]Backend, n)
			for i := range bs {
				bs[i] = Backend{Addr: addr(i), Weight: 1 + rng.IntN(100)}
			}
			eligible := make([]int32, n)
			var total int64
			for i := range eligible {
				eligible[i] = int32(i)
				total += int64(bs[i].Weight)
			}
			seq := wrrSequence(bs, eligible)
			if int64(len(seq)) != total && int64(len(seq)) > maxWRRSequence+int64(n) {
				t.Fatalf("sequence length %d, weights sum %d", len(seq), total)
			}
			if int64(len(seq))*int64(n) <= maxWRRWork == (n == 1500) {
				t.Fatalf("n=%d did not exercise the intended generator", n)
			}
			counts := make([]int, n)
			worst := 0.0
			for k, i := range seq {
				counts[i]++
				if k%97 != 0 && k != len(seq)-1 {
					continue
				}
				for j := range counts {
					ideal := float64(k+1) * float64(bs[j].Weight) / float64(total)
					worst = max(worst, math.Abs(float64(counts[j])-ideal))
				}
			}
			if worst > 2 {
				t.Errorf("a prefix deviates %.2f picks from the ideal share", worst)
			}
		})
	}
}

func TestLeastConnPrefersLessLoaded(t *testing.T) {
	tests := []struct {
		weights, active []int
		want            int
	}{
		{[]int{1, 1, 1}, []int{5, 0, 3}, 1},
		{[]int{1, 4}, []int{1, 3}, 1},       // 3/4 < 1/1
		{[]int{1, 4}, []int{1, 5}, 0},       // 1/1 < 5/4
		{[]int{2, 2, 1}, []int{4, 3, 1}, 2}, // 1/1 < 3/2 < 4/2
		{[]int{1, 1}, []int{-3, 1}, 0},      // a negative count (caller bug) counts as 0
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.weights, tt.active), func(t *testing.T) {
			s := mustBuild(t, Spec{Scheduler: SchedLeastConn, Backends: backends(tt.weights...)}, nil)
			for i, a := range tt.active {
				s.backends[i].Active.Store(int64(a))
			}
			for h := range uint64(64) {
				b, _ := s.Pick(clientAddr(1), h*0x9e3779b97f4a7c15, 0)
				if got := index(s, b); got != tt.want {
					t.Fatalf("hash %d: picked %d, want %d", h, got, tt.want)
				}
			}
		})
	}
}

func TestTwoChoicesAvoidsLoaded(t *testing.T) {
	for _, n := range []int{2, 4} {
		s := mustBuild(t, Spec{Scheduler: SchedTwoChoices, Backends: backends(slices.Repeat([]int{1}, n)...)}, nil)
		s.backends[0].Active.Store(100)
		counts := make([]int, n)
		for range 10_000 {
			b, _ := s.Pick(clientAddr(1), 0, 0)
			counts[index(s, b)]++
		}
		if counts[0] != 0 {
			t.Errorf("n=%d: the loaded backend got %d of 10000 picks", n, counts[0])
		}
		for i := 1; i < n; i++ {
			if counts[i] < 10_000/(n-1)*9/10 {
				t.Errorf("n=%d: backend %d got %d picks: %v", n, i, counts[i], counts)
			}
		}
	}
}

func TestSourceHashStable(t *testing.T) {
	spec := Spec{Scheduler: SchedSourceHash, Backends: backends(1, 1, 1, 1, 1, 1, 1, 1, 1, 1)}
	s := mustBuild(t, spec, nil)
	first := make([]int, 2000)
	for c := range first {
		b, _ := s.Pick(clientAddr(c), 0, 0)
		first[c] = index(s, b)
		for h := range uint64(5) { // other flows of the client: same backend
			if b2, _ := s.Pick(clientAddr(c), h*0x9e3779b97f4a7c15, 0); index(s, b2) != first[c] {
				t.Fatalf("client %d moved from %d to %d", c, first[c], index(s, b2))
			}
		}
	}
	// A rebuilt Set with the backends in another order maps every client the same way.
	rev := slices.Clone(spec.Backends)
	slices.Reverse(rev)
	s2 := mustBuild(t, Spec{Scheduler: SchedSourceHash, Backends: rev}, s)
	for c, want := range first {
		if b, _ := s2.Pick(clientAddr(c), 0, 0); b.Addr != addr(want) {
			t.Fatalf("client %d: %v after rebuild, was %v", c, b.Addr, addr(want))
		}
	}
	// Draining one backend moves only (about) its clients.
	spec.Backends[3].State = Draining
	s3 := mustBuild(t, spec, s)
	moved := 0
	for c, was := range first {
		b, _ := s3.Pick(clientAddr(c), 0, 0)
		if index(s3, b) == 3 {
			t.Fatalf("client %d picked the draining backend", c)
		}
		if was != 3 && index(s3, b) != was {
			moved++
		}
	}
	if moved > len(first)/50 {
		t.Errorf("%d of %d clients of other backends moved", moved, len(first))
	}
}

func TestNoEligibleBackend(t *testing.T) {
	bs := backends(1, 0, 2)
	bs[0].State = Draining
	bs[2].State = Unhealthy
	for _, name := range Schedulers {
		for _, spec := range []Spec{
			{Scheduler: name, Backends: bs},
			{Scheduler: name},
			{Scheduler: name, Backends: bs, Affinity: time.Hour},
		} {
			s := mustBuild(t, spec, nil)
			if b, ok := s.Pick(clientAddr(1), 42, 0); ok || b != nil {
				t.Errorf("%s: Pick = %v, %v with no eligible backend", name, b, ok)
			}
			if s.Eligible() != 0 {
				t.Errorf("%s: Eligible() = %d", name, s.Eligible())
			}
		}
	}
}

func TestActiveCarriedOver(t *testing.T) {
	s1 := mustBuild(t, Spec{Scheduler: SchedLeastConn, Backends: backends(1, 1)}, nil)
	s1.backends[0].Active.Store(5)
	s1.backends[1].Active.Store(7)
	own := new(atomic.Int64)
	own.Store(11)
	spec := Spec{Scheduler: SchedMaglev, Backends: []Backend{
		{Addr: addr(2), Weight: 1},              // new
		{Addr: addr(0), Weight: 3},              // kept
		{Addr: addr(1), Weight: 1, Active: own}, // kept, but the caller passes its own counter
	}}
	s2 := mustBuild(t, spec, s1)
	bs := s2.Backends()
	if bs[1].Active != s1.backends[0].Active || bs[1].Active.Load() != 5 {
		t.Errorf("kept backend got counter %p=%d, want %p=5", bs[1].Active, bs[1].Active.Load(), s1.backends[0].Active)
	}
	if bs[0].Active == nil || bs[0].Active.Load() != 0 || bs[0].Active == s1.backends[0].Active || bs[0].Active == s1.backends[1].Active {
		t.Errorf("new backend did not get a fresh counter")
	}
	if bs[2].Active != own {
		t.Errorf("explicit Active was replaced")
	}
	if spec.Backends[0].Active != nil {
		t.Errorf("Build modified the caller's Spec")
	}
	// Counters follow the address, not the position, across a chain of Sets.
	s3 := mustBuild(t, Spec{Backends: backends(1, 1, 1)}, s2)
	for i, b := range s3.Backends() {
		if b.Active != bs[(i+1)%3].Active && i != 1 || i == 1 && b.Active != own {
			t.Errorf("backend %v: counter not carried over", b.Addr)
		}
	}
}

func TestAffinity(t *testing.T) {
	const ttl = 10 * time.Second
	sec := int64(time.Second)
	spec := Spec{Scheduler: SchedRoundRobin, Backends: backends(1, 1), Affinity: ttl}
	s := mustBuild(t, spec, nil)
	x, y := clientAddr(1), clientAddr(2)
	pick := func(s *Set, c netip.Addr, now int64) netip.Addr {
		t.Helper()
		b, ok := s.Pick(c, uint64(now), now)
		if !ok {
			t.Fatal("Pick: no backend")
		}
		return b.Addr
	}
	a0, a1 := addr(0), addr(1)
	steps := []struct {
		client netip.Addr
		at     int64
		want   netip.Addr
	}{
		{x, 0, a0},          // round robin position 0; x expires at 10 s
		{x, 1 * sec, a0},    // sticky (round robin would give a1); refreshed to 11 s
		{y, 2 * sec, a1},    // another client: position 1; y expires at 12 s
		{x, 9 * sec, a0},    // sticky; refreshed to 19 s
		{x, 18 * sec, a0},   // still sticky thanks to the refresh; 28 s
		{y, 13 * sec, a0},   // y expired at 12 s: position 2; 23 s
		{x, 28*sec + 1, a1}, // x expired at 28 s: position 3; 38 s
		{x, 30 * sec, a1},   // sticks to the new one; 40 s
		{y, 22 * sec, a0},   // sticky; 32 s
		{y, 60 * sec, a0},   // expired: position 4; 70 s
		{x, 60 * sec, a1},   // expired: position 5; 70 s
		{x, 61 * sec, a1},   // sticky; 71 s
		{y, 69 * sec, a0},   // sticky; 79 s
	}
	for i, st := range steps {
		if got := pick(s, st.client, st.at); got != st.want {
			t.Fatalf("step %d (client %v at %ds): %v, want %v", i, st.client, st.at/sec, got, st.want)
		}
	}

	// Carry-over: a rebuilt Set (another order, a new backend, another scheduler) keeps x on a1
	// and y on a0, because the table follows backend addresses.
	now := 70 * sec
	spec2 := Spec{Scheduler: SchedMaglev, Backends: []Backend{{Addr: addr(2), Weight: 5}, {Addr: a1, Weight: 1}, {Addr: a0, Weight: 1}}, Affinity: ttl}
	s2 := mustBuild(t, spec2, s)
	if got := pick(s2, x, now); got != a1 {
		t.Errorf("after rebuild x went to %v, want a1", got)
	}
	if got := pick(s2, y, now); got != a0 {
		t.Errorf("after rebuild y went to %v, want a0", got)
	}
	// A capacity change copies the table.
	spec2.AffinityCapacity = 1024
	s3 := mustBuild(t, spec2, s2)
	if s3.aff == s2.aff || pick(s3, x, now) != a1 || pick(s3, y, now) != a0 {
		t.Errorf("affinity lost when the table was resized")
	}
	// Draining x's backend sends x elsewhere, and x then sticks there even when a1 returns.
	spec2.Backends[1].State = Draining
	s4 := mustBuild(t, spec2, s3)
	moved := pick(s4, x, now)
	if moved == a1 {
		t.Fatalf("x picked its draining backend")
	}
	spec2.Backends[1].State = Active
	s5 := mustBuild(t, spec2, s4)
	if got := pick(s5, x, now+sec); got != moved {
		t.Errorf("x went to %v after a1 returned, want to stay on %v", got, moved)
	}
	// Affinity turned off: round robin over a0, a1 alternates for x again.
	s6 := mustBuild(t, Spec{Backends: backends(1, 1)}, s5)
	if pick(s6, x, now) == pick(s6, x, now) {
		t.Errorf("affinity still applied after it was disabled")
	}
}

// TestAffinityBounded fills the table far beyond its capacity: memory stays fixed, and the
// most recent clients are remembered.
func TestAffinityBounded(t *testing.T) {
	spec := Spec{Scheduler: SchedRandom, Backends: backends(1, 1, 1, 1, 1, 1, 1, 1), Affinity: time.Hour, AffinityCapacity: 256}
	s := mustBuild(t, spec, nil)
	if s.aff.capacity() != 256 {
		t.Fatalf("capacity %d, want 256", s.aff.capacity())
	}
	first := map[int]netip.Addr{}
	const clients = 10_000
	for c := range clients {
		b, _ := s.Pick(clientAddr(c), 0, int64(c))
		first[c] = b.Addr
	}
	// Recent clients (an eighth of the capacity) must all still be sticky.
	for c := clients - 32; c < clients; c++ {
		for range 3 {
			if b, _ := s.Pick(clientAddr(c), 0, clients); b.Addr != first[c] {
				t.Fatalf("recent client %d lost its affinity", c)
			}
		}
	}
	live := 0
	for i := range s.aff.slots {
		if s.aff.slots[i].expires.Load() != 0 {
			live++
		}
	}
	if live > 256 {
		t.Errorf("%d live slots in a 256-slot table", live)
	}
}

// TestConcurrentPickAndRebuild runs Picks from several goroutines while a writer rebuilds Sets
// (changing states and weights) and swaps them in; run with -race. Every pick must return a
// backend eligible in the Set it came from.
func TestConcurrentPickAndRebuild(t *testing.T) {
	for _, name := range Schedulers {
		for _, aff := range []time.Duration{0, time.Second} {
			t.Run(fmt.Sprintf("%s/affinity=%v", name, aff), func(t *testing.T) {
				spec := Spec{Scheduler: name, Backends: backends(1, 2, 3, 4, 5, 6), Affinity: aff, MaglevSize: 1021}
				var cur atomic.Pointer[Set]
				cur.Store(mustBuild(t, spec, nil))
				var done atomic.Bool
				var wg sync.WaitGroup
				var bad atomic.Int64
				for g := range 4 {
					wg.Go(func() {
						for i := 0; !done.Load() || i < 1000; i++ {
							s := cur.Load()
							c := clientAddr(g*1000 + i%50)
							b, ok := s.Pick(c, FlowHash(17, c, addr(9), uint16(i), 53), int64(i)*int64(time.Millisecond))
							if !ok {
								continue
							}
							if b.State != Active || b.Weight == 0 || index(s, b) < 0 {
								bad.Add(1)
							}
							b.Active.Add(1)
							b.Active.Add(-1)
						}
					})
				}
				rng := rand.New(rand.NewPCG(7, 8))
				for range 200 {
					for i := range spec.Backends {
						spec.Backends[i].State = State(rng.IntN(int(numStates)))
						spec.Backends[i].Weight = rng.IntN(4)
					}
					cur.Store(mustBuild(t, spec, cur.Load()))
				}
				done.Store(true)
				wg.Wait()
				if bad.Load() != 0 {
					t.Errorf("%d picks returned an ineligible backend", bad.Load())
				}
			})
		}
	}
}

// TestPickAllocs proves the 0-allocation promise for every scheduler, with and without
// affinity.
func TestPickAllocs(t *testing.T) {
	for _, name := range Schedulers {
		for _, aff := range []time.Duration{0, time.Hour} {
			s := mustBuild(t, Spec{Scheduler: name, Backends: backends(1, 2, 3, 4), Affinity: aff}, nil)
			i := 0
			allocs := testing.AllocsPerRun(1000, func() {
				i++
				c := clientAddr(i)
				if _, ok := s.Pick(c, FlowHash(6, c, addr(9), uint16(i), 443), int64(i)); !ok {
					t.Fatal("Pick: no backend")
				}
			})
			if allocs != 0 {
				t.Errorf("%s affinity=%v: %.1f allocs per Pick", name, aff, allocs)
			}
		}
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{Active: "active", Draining: "draining", Unhealthy: "unhealthy", 9: "state(9)"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), want)
		}
	}
}
