package lb

import (
	"math/bits"
	"sync/atomic"
)

// DefaultAffinityCapacity is the number of clients the affinity table of a service remembers
// when Spec.AffinityCapacity is 0 (32 bytes each: 2 MiB).
const DefaultAffinityCapacity = 1 << 16

// MaxAffinityCapacity bounds Spec.AffinityCapacity.
const MaxAffinityCapacity = 1 << 24

// affWays is the associativity: a client can live in any of the affWays slots of its bucket.
const affWays = 4

// affinityTable remembers, per client, the backend of its last new flow and when that memory
// expires. It is a fixed-size, lock-free, 4-way set-associative hash table of atomic words:
// no locks, no allocation after creation, memory bounded by its capacity.
//
// Each slot is three independent atomic words. A writer stores backend and expiry, then
// check = key^backend^expiry; a reader loads the three and accepts the slot only if
// check^backend^expiry equals its key (the lockless hashing trick of chess transposition
// tables). A read torn by a concurrent writer fails the check and counts as a miss, so
// readers never see a half-written entry as valid. Writers racing for the same slot may lose
// one entry (that client then gets a fresh pick): affinity is best effort, never wrong about
// eligibility, because Pick re-checks the backend against the current Set.
//
// When all slots of a bucket are live, the one expiring first is evicted. The table is shared
// by consecutive Sets of a service (Build carries it over), which is why it identifies
// backends by a hash of their address, not by their index in one Set.
type affinityTable struct {
	slots []affSlot
	mask  uint64 // bucket mask: bucket b is slots[b*affWays : (b+1)*affWays]
}

type affSlot struct {
	check   atomic.Uint64
	backend atomic.Uint64
	expires atomic.Int64 // unix ns
	_       [8]byte      // 32 bytes: two slots per cache line, buckets on line pairs
}

// affinitySlots rounds a requested capacity up to the table's real size (a power of two).
func affinitySlots(capacity int) int {
	return 1 << bits.Len(uint(max(capacity, affWays)-1))
}

// newAffinityTable makes a table with affinitySlots(capacity) slots.
func newAffinityTable(capacity int) *affinityTable {
	n := affinitySlots(capacity)
	return &affinityTable{slots: make([]affSlot, n), mask: uint64(n/affWays - 1)}
}

func (t *affinityTable) capacity() int { return len(t.slots) }

func (t *affinityTable) bucket(key uint64) []affSlot {
	b := int(key & t.mask)
	return t.slots[b*affWays : b*affWays+affWays : b*affWays+affWays]
}

// get returns the backend hash remembered for key and its expiry if it has not expired at now.
func (t *affinityTable) get(key uint64, now int64) (backend uint64, expires int64, ok bool) {
	bk := t.bucket(key)
	for i := range bk {
		s := &bk[i]
		c, b, e := s.check.Load(), s.backend.Load(), s.expires.Load()
		if c^b^uint64(e) == key && e > now {
			return b, e, true
		}
	}
	return 0, 0, false
}

// put remembers backend for key until expires. It reuses key's own slot, else the slot
// expiring first (free and expired slots come first that way).
func (t *affinityTable) put(key, backend uint64, expires int64) {
	bk := t.bucket(key)
	victim := -1
	oldest := int64(0)
	for i := range bk {
		s := &bk[i]
		c, b, e := s.check.Load(), s.backend.Load(), s.expires.Load()
		if c^b^uint64(e) == key {
			victim = i
			break
		}
		if victim < 0 || e < oldest {
			victim, oldest = i, e
		}
	}
	s := &bk[victim]
	s.backend.Store(backend)
	s.expires.Store(expires)
	s.check.Store(key ^ backend ^ uint64(expires))
}

// copyFrom moves the entries of old (possibly another size) into t; entries that do not fit
// evict older ones as put does.
func (t *affinityTable) copyFrom(old *affinityTable) {
	for i := range old.slots {
		s := &old.slots[i]
		c, b, e := s.check.Load(), s.backend.Load(), s.expires.Load()
		if key := c ^ b ^ uint64(e); key != 0 && e != 0 {
			t.put(key, b, e)
		}
	}
}
