package lb

import (
	"container/heap"
	"math/big"
)

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

// turnHeap orders candidates by virtual time turns/weight (earliest next turn first), ties by
// position, so with equal weights it reproduces the paper's round-robin turn order exactly.
type turnHeap struct {
	c   []maglevCand
	pos []int32
}

func (h *turnHeap) Len() int { return len(h.pos) }
func (h *turnHeap) Less(i, j int) bool {
	a, b := &h.c[h.pos[i]], &h.c[h.pos[j]]
	l, r := a.turns*b.weight, b.turns*a.weight
	if l != r {
		return l < r
	}
	return h.pos[i] < h.pos[j]
}
func (h *turnHeap) Swap(i, j int) { h.pos[i], h.pos[j] = h.pos[j], h.pos[i] }
func (h *turnHeap) Push(any)      { panic("lb: turnHeap.Push is not used") }
func (h *turnHeap) Pop() any      { panic("lb: turnHeap.Pop is not used") }

// buildMaglev fills a Maglev lookup table of size m (prime) with indices into backends, taking
// the eligible ones in the given order (sorted by address, so the table does not depend on the
// order of the configuration). Each backend's preference list is the permutation
// (offset + j*skip) mod m with offset and skip hashed from its address, generated lazily so
// memory is O(m + n), not O(m*n). Weights change how often a backend takes a turn: turns
// are handed out in order of turns/weight, so entries are shared in proportion to weight.
func buildMaglev(backends []Backend, order []int32, m int) []uint16 {
	table := make([]uint16, m)
	for i := range table {
		table[i] = emptySlot
	}
	c := make([]maglevCand, len(order))
	equal := true
	for k, i := range order {
		b := &backends[i]
		c[k] = maglevCand{
			idx:    uint16(i),
			next:   int(addrHash(b.Addr, seedOffset) % uint64(m)),
			skip:   int(addrHash(b.Addr, seedSkip)%uint64(m-1)) + 1,
			weight: int64(b.Weight),
		}
		if c[k].weight != c[0].weight {
			equal = false
		}
	}
	// take gives candidate k its next turn: it claims its most preferred free entry.
	take := func(k int) {
		p := &c[k]
		pos := p.next
		for table[pos] != emptySlot {
			pos += p.skip
			if pos >= m {
				pos -= m
			}
		}
		table[pos] = p.idx
		pos += p.skip
		if pos >= m {
			pos -= m
		}
		p.next = pos
		p.turns++
	}
	filled := 0
	if equal {
		// Fast path, the paper's algorithm as written: every backend takes one turn per round.
		for filled < m {
			for k := range c {
				take(k)
				if filled++; filled == m {
					break
				}
			}
		}
		return table
	}
	h := &turnHeap{c: c, pos: make([]int32, len(c))}
	for k := range h.pos {
		h.pos[k] = int32(k)
	}
	heap.Init(h)
	for ; filled < m; filled++ {
		take(int(h.pos[0]))
		heap.Fix(h, 0)
	}
	return table
}
