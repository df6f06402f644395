package lb

import "math/big"

// DefaultMaglevSize is the Maglev lookup table size used when Spec.MaglevSize is 0: the prime the
// Maglev paper (Eisenbud et al., NSDI 2016) uses, large enough for 1% balance up to ~650 backends.
const DefaultMaglevSize = 65537

// MaxMaglevSize bounds Spec.MaglevSize so one service cannot ask for an unbounded table.
const MaxMaglevSize = 1 << 24

// emptySlot marks a table entry not yet filled during population; it is never a backend index
// because MaxBackends < 1<<16-1.
const emptySlot = 1<<16 - 1

// isPrime reports whether n is prime. Baillie-PSW via math/big is exact for 64-bit inputs.
func isPrime(n int) bool {
	return n >= 2 && big.NewInt(int64(n)).ProbablyPrime(0)
}

// maglevCand is one eligible backend during table population: its index in Set.backends, the
// state of its permutation (next preferred slot and skip), its weight and turns taken so far.
type maglevCand struct {
	idx    uint16
	next   int
	skip   int
	weight int64
	turns  int64
}

// buildMaglev fills a Maglev lookup table of size m (prime) with indices into backends, taking
// the eligible ones in the given order (sorted by address, so the table does not depend on the
// order of the configuration). Each backend's preference list is the permutation
// (offset + j*skip) mod m with offset and skip hashed from its address, generated lazily so
// memory is O(m + n), not O(m*n). seed (Spec.HashSeed) keys offset and skip.
//
// Weights set how often a backend takes a turn (the paper leaves the scheme open; this is
// Envoy's): in round r a backend of weight w has had floor(r*w/maxWeight) turns, so the
// heaviest backends take a turn every round and entries are shared in proportion to weight.
// With equal weights this is exactly the paper's algorithm. Backends wait in a calendar queue
// keyed by the round of their next turn, so the cost is O(m + rounds + probes) whatever the
// weights, not O(rounds * n).
func buildMaglev(backends []Backend, order []int32, m int, seed uint64) []uint16 {
	table := make([]uint16, m)
	for i := range table {
		table[i] = emptySlot
	}
	c := make([]maglevCand, len(order))
	var maxW, sumW int64
	for k, i := range order {
		b := &backends[i]
		c[k] = maglevCand{
			idx:    uint16(i),
			next:   int(addrHash(b.Addr, seedOffset^seed) % uint64(m)),
			skip:   int(addrHash(b.Addr, seedSkip^seed)%uint64(m-1)) + 1,
			weight: int64(b.Weight),
		}
		maxW = max(maxW, c[k].weight)
		sumW += c[k].weight
	}
	// By round R the backends have had at least R*sumW/maxW - n turns, so this many rounds
	// always fill the table.
	rounds := int((int64(m+len(c))*maxW+sumW-1)/sumW) + 1
	// Calendar queue: FIFO lists per round, linked through next (-1 ends a list).
	head := make([]int32, rounds+1)
	tail := make([]int32, rounds+1)
	next := make([]int32, len(c))
	for r := range head {
		head[r], tail[r] = -1, -1
	}
	enqueue := func(k int32) {
		p := &c[k]
		r := int(((p.turns+1)*maxW + p.weight - 1) / p.weight) // first round with turns+1 turns
		if r > rounds {
			return
		}
		next[k] = -1
		if tail[r] < 0 {
			head[r] = k
		} else {
			next[tail[r]] = k
		}
		tail[r] = k
	}
	for k := range c {
		enqueue(int32(k))
	}
	filled := 0
	for r := 1; r <= rounds && filled < m; r++ {
		for k := head[r]; k >= 0 && filled < m; {
			// Backend k takes its turn: it claims its most preferred free entry.
			p, after := &c[k], next[k]
			pos := p.next
			for table[pos] != emptySlot {
				if pos += p.skip; pos >= m {
					pos -= m
				}
			}
			table[pos] = p.idx
			if pos += p.skip; pos >= m {
				pos -= m
			}
			p.next = pos
			p.turns++
			filled++
			enqueue(k) // into a later round's list: r' > r because weights are <= maxW
			k = after
		}
	}
	if filled < m {
		panic("lb: maglev table not filled") // unreachable: see rounds
	}
	return table
}
