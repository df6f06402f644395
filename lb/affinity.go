package lb

import (
	"math/bits"
	"net/netip"
	"slices"
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
// Each slot is a sequence lock over three atomic words (key, backend, expiry). A writer takes
// the slot by moving its sequence from even to odd with a CAS, stores the words and makes the
// sequence even again; a reader accepts the words only if the sequence was even and unchanged
// around its loads, so a read torn by a writer counts as a miss and never returns another
// client's backend. (An XOR check word, as in chess transposition tables, was tried first: with
// structured keys a torn read could pass it.) A writer finding the slot taken gives up, so
// writers racing for one slot may lose an entry (that client then gets a fresh pick): affinity
// is best effort, never wrong about eligibility, because Pick re-checks the backend against
// the current Set.
//
// When all slots of a bucket are live, the one expiring first is evicted. The table is shared
// by consecutive Sets of a service (Build carries it over), which is why it identifies
// backends by a hash of their address, not by their index in one Set.
type affinityTable struct {
	slots []affSlot
	mask  uint64 // bucket mask: bucket b is slots[b*affWays : (b+1)*affWays]
}

type affSlot struct {
	// seq is a per-slot sequence lock: odd while a writer fills the slot. Readers that see it odd
	// or changed across their loads count a miss, so a torn read never returns another client's
	// backend. Writers take it with a CAS and give up if another writer holds it (best effort).
	seq     atomic.Uint64
	key     atomic.Uint64
	backend atomic.Uint64
	expires atomic.Int64 // unix ns
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
		if k, b, e, ok := bk[i].load(); ok && k == key && e > now {
			return b, e, true
		}
	}
	return 0, 0, false
}

// load reads a slot consistently; ok is false when a writer was active.
func (s *affSlot) load() (key, backend uint64, expires int64, ok bool) {
	q := s.seq.Load()
	if q&1 != 0 {
		return 0, 0, 0, false
	}
	key, backend, expires = s.key.Load(), s.backend.Load(), s.expires.Load()
	return key, backend, expires, s.seq.Load() == q
}

// put remembers backend for key until expires. It reuses key's own slot, else the slot
// expiring first (free and expired slots come first that way).
func (t *affinityTable) put(key, backend uint64, expires int64) {
	bk := t.bucket(key)
	victim := -1
	oldest := int64(0)
	for i := range bk {
		k, _, e, _ := bk[i].load()
		if k == key {
			victim = i
			break
		}
		if victim < 0 || e < oldest {
			victim, oldest = i, e
		}
	}
	s := &bk[victim]
	q := s.seq.Load()
	if q&1 != 0 || !s.seq.CompareAndSwap(q, q+1) {
		return // another writer is filling this slot: this refresh is lost, the client re-picks
	}
	s.key.Store(key)
	s.backend.Store(backend)
	s.expires.Store(expires)
	s.seq.Store(q + 2)
}

// copyFrom moves the entries of old (possibly another size) into t; entries that do not fit
// evict older ones as put does.
func (t *affinityTable) copyFrom(old *affinityTable) {
	for i := range old.slots {
		if k, b, e, ok := old.slots[i].load(); ok && e != 0 {
			t.put(k, b, e)
		}
	}
}

// AffinityEntry is one remembered client → backend choice as a snapshot carries it from one
// process to the next (hand-over upgrade, checkpoint): the client's key (lb's hash of the client
// address, with fixed secrets: the same in every process of a build that writes this snapshot
// version), the backend's address and when the memory expires.
type AffinityEntry struct {
	Client  uint64     `json:"client"`
	Backend netip.Addr `json:"backend"`
	Expires int64      `json:"expires_unix_ns"`
}

// SaveAffinity returns the live affinity entries (expiring after now) whose backend is in the
// Set; nil without affinity.
func (s *Set) SaveAffinity(now int64) []AffinityEntry {
	if s.aff == nil {
		return nil
	}
	var out []AffinityEntry
	for i := range s.aff.slots {
		k, b, e, ok := s.aff.slots[i].load()
		if !ok || k == 0 || e <= now {
			continue
		}
		if j, found := slices.BinarySearch(s.idHash, b); found {
			out = append(out, AffinityEntry{Client: k, Backend: s.backends[s.idIndex[j]].Addr, Expires: e})
		}
	}
	return out
}

// RestoreAffinity remembers the entries (SaveAffinity's, from another process) whose backend is
// in the Set and that expire after now, and returns how many; entries beyond the table's
// capacity evict as Pick's do. Without affinity it does nothing.
func (s *Set) RestoreAffinity(entries []AffinityEntry, now int64) int {
	if s.aff == nil {
		return 0
	}
	n := 0
	for _, en := range entries {
		h := addrHash(en.Backend, seedBackend)
		if en.Client == 0 || en.Expires <= now {
			continue
		}
		if _, found := slices.BinarySearch(s.idHash, h); !found {
			continue
		}
		s.aff.put(en.Client, h, en.Expires)
		n++
	}
	return n
}
