// Package lb chooses a backend for each new flow of a service.
//
// A Set is built once per configuration or health change (Build) and then only read: Pick
// takes no lock and allocates nothing, so the data path can call it from any number of
// goroutines while a control goroutine builds the next Set and swaps an atomic.Pointer[Set].
// Build carries the mutable parts that must survive a reload over from the previous Set: the
// per-backend Active flow counters (by address) and the client affinity table.
package lb

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
)

// State is a backend's administrative/health state. Only Active backends get new flows;
// flows already established to Draining or Unhealthy backends are the caller's business.
type State uint8

const (
	// Active backends receive new flows (if their weight is above zero).
	Active State = iota
	// Draining backends receive no new flows; their existing flows continue (graceful removal).
	Draining
	// Unhealthy backends failed their health check and receive no new flows.
	Unhealthy
	numStates
)

var stateNames = [numStates]string{"active", "draining", "unhealthy"}

// String returns a stable lowercase label for logs and metrics.
func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Backend is one endpoint of a service. Weight 0 means no new flows. Active counts the
// backend's live flows: the caller increments it when it commits a flow chosen by Pick and
// decrements it when the flow ends (conntrack.Entry.Load). Requests counts L7 requests in flight
// to the backend (the ingress adds one while it proxies a request). least_conn and two_choices
// weigh both; flow metrics read Active alone.
type Backend struct {
	Addr     netip.Addr
	Weight   int
	State    State
	Active   *atomic.Int64
	Requests *atomic.Int64
}

// eligible reports whether the backend may receive new flows.
func (b *Backend) eligible() bool { return b.State == Active && b.Weight > 0 }

// Spec describes the backends of one service and how to choose among them.
type Spec struct {
	// Scheduler is one of Schedulers; "" means DefaultScheduler.
	Scheduler string
	// Backends in configuration order (round_robin and weighted_round_robin follow it).
	// Addresses must be unique. A nil Active is filled by Build (see Build).
	Backends []Backend
	// Affinity enables client-IP session affinity with this timeout, refreshed by every new
	// flow of the client (to within min(Affinity/64, 1 s)); 0 disables it (callers apply
	// Kubernetes' default of 10800 s). The client table is a fixed-size lock-free
	// set-associative table of atomic words (no locks, no allocation, bounded memory; see
	// AffinityCapacity): when full, the entries expiring first are forgotten.
	Affinity time.Duration
	// MaglevSize is the Maglev table size for maglev and source_hash: a prime, at least
	// len(Backends); 0 means DefaultMaglevSize.
	MaglevSize int
	// AffinityCapacity bounds how many clients the affinity table remembers; 0 means
	// DefaultAffinityCapacity. Rounded up to a power of two.
	AffinityCapacity int
	// HashSeed keys maglev and source_hash (the Maglev permutations, the flow and client
	// hashes): every process given the same seed and backends makes the same choice for a flow
	// (the cluster's shared hash_seed), and a client that does not know the seed cannot aim
	// flows at one backend. 0 is the fixed, public default.
	HashSeed uint64
}

// Scheduler names, as used in the configuration.
const (
	SchedRandom             = "random"
	SchedRoundRobin         = "round_robin"
	SchedWeightedRoundRobin = "weighted_round_robin"
	SchedLeastConn          = "least_conn"
	SchedTwoChoices         = "two_choices"
	SchedSourceHash         = "source_hash"
	SchedMaglev             = "maglev"
)

// DefaultScheduler is used when Spec.Scheduler is empty (the configuration's default).
const DefaultScheduler = SchedRoundRobin

// Schedulers lists every valid Spec.Scheduler, for configuration validation and docs.
var Schedulers = []string{SchedRandom, SchedRoundRobin, SchedWeightedRoundRobin, SchedLeastConn,
	SchedTwoChoices, SchedSourceHash, SchedMaglev}

// MaxBackends bounds the backends of one Set (tables store 16-bit indices to halve their cache
// footprint).
const MaxBackends = 1<<16 - 2

// MaxWeight bounds Backend.Weight so weight products cannot overflow (load*weight comparisons).
const MaxWeight = 1 << 20

// Errors returned (wrapped) by Build.
var (
	ErrUnknownScheduler = errors.New("unknown scheduler")
	ErrBadBackend       = errors.New("invalid backend")
	ErrBadMaglevSize    = errors.New("invalid maglev table size")
	ErrBadAffinity      = errors.New("invalid session affinity")
)

type sched uint8

const (
	schedRandom sched = iota
	schedRoundRobin
	schedWRR
	schedLeastConn
	schedTwoChoices
	schedSourceHash
	schedMaglev
)

// Set is an immutable, concurrency-safe selection structure for one service. Build reuses the
// affinity table and Active counters of prev (same address) so a reload keeps them.
type Set struct {
	sched    sched
	name     string
	backends []Backend
	elig     []bool   // per backend: may get new flows
	eligible []int32  // eligible backend indices, configuration order
	cum      []uint64 // cumulative weights over eligible (random, two_choices)
	seq      []uint16 // weighted_round_robin: one period of the smooth sequence
	table    []uint16 // maglev, source_hash: lookup table
	seed     uint64   // Spec.HashSeed
	ctr      atomic.Uint64

	aff      *affinityTable // nil: no affinity
	affTTL   int64
	affSlack int64    // expiry refreshes smaller than this are skipped (min(ttl/64, 1 s))
	idHash   []uint64 // backend identity hashes (affinity), sorted
	idIndex  []uint16 // backend index for idHash[i]
	backHash []uint64 // identity hash per backend index
}

// Build validates spec and builds its Set. prev (may be nil) is the Set it replaces: backends
// whose Active is nil get prev's counter for the same address, or a fresh one if the address
// is new; the affinity table is shared with prev (copied if the capacity changed), so clients
// keep their backend across reloads. The round robin position is carried over too, so
// frequent rebuilds do not favour the first backends.
func Build(spec Spec, prev *Set) (*Set, error) {
	name := spec.Scheduler
	if name == "" {
		name = DefaultScheduler
	}
	i := slices.Index(Schedulers, name)
	if i < 0 {
		return nil, fmt.Errorf("lb: %w %q (want one of %v)", ErrUnknownScheduler, name, Schedulers)
	}
	size, err := checkSpec(&spec)
	if err != nil {
		return nil, err
	}
	s := &Set{sched: sched(i), name: name, seed: spec.HashSeed}
	if err := s.addBackends(spec.Backends, prev); err != nil {
		return nil, err
	}
	s.buildTables(size)
	if spec.Affinity > 0 {
		s.buildAffinity(&spec, prev)
	}
	return s, nil
}

// checkSpec validates the sizes in spec and returns the Maglev table size to use.
func checkSpec(spec *Spec) (size int, err error) {
	if len(spec.Backends) > MaxBackends {
		return 0, fmt.Errorf("lb: %w: %d backends, at most %d", ErrBadBackend, len(spec.Backends), MaxBackends)
	}
	size = spec.MaglevSize
	if size == 0 {
		size = DefaultMaglevSize
	}
	if size > MaxMaglevSize || !isPrime(size) || size < len(spec.Backends) {
		return 0, fmt.Errorf("lb: %w %d: must be a prime in [%d, %d]", ErrBadMaglevSize, size,
			max(2, len(spec.Backends)), MaxMaglevSize)
	}
	if spec.Affinity < 0 || spec.AffinityCapacity < 0 || spec.AffinityCapacity > MaxAffinityCapacity {
		return 0, fmt.Errorf("lb: %w: timeout %v, capacity %d", ErrBadAffinity, spec.Affinity, spec.AffinityCapacity)
	}

	return size, nil
}

// addBackends copies backends into s, validating each, and gives each without counters prev's
// counters for the same address or fresh ones; prev's round robin position carries over.
func (s *Set) addBackends(backends []Backend, prev *Set) error {
	var prevActive, prevRequests map[netip.Addr]*atomic.Int64
	if prev != nil {
		prevActive = make(map[netip.Addr]*atomic.Int64, len(prev.backends))
		prevRequests = make(map[netip.Addr]*atomic.Int64, len(prev.backends))
		for _, b := range prev.backends {
			prevActive[b.Addr], prevRequests[b.Addr] = b.Active, b.Requests
		}
		s.ctr.Store(prev.ctr.Load())
	}
	s.backends = slices.Clone(backends)
	s.elig = make([]bool, len(s.backends))
	nfresh := 0
	for _, b := range s.backends {
		if b.Active == nil && prevActive[b.Addr] == nil {
			nfresh++
		}
	}
	fresh := make([]atomic.Int64, nfresh) // counters for new backends, one allocation for all
	seen := make(map[[16]byte]int, len(s.backends))
	var total uint64
	for i := range s.backends {
		b := &s.backends[i]
		switch {
		case !b.Addr.IsValid():
			return fmt.Errorf("lb: %w %d: no address", ErrBadBackend, i)
		case b.Weight < 0 || b.Weight > MaxWeight:
			return fmt.Errorf("lb: %w %v: weight %d not in [0, %d]", ErrBadBackend, b.Addr, b.Weight, MaxWeight)
		case b.State >= numStates:
			return fmt.Errorf("lb: %w %v: %v", ErrBadBackend, b.Addr, b.State)
		}
		if j, dup := seen[b.Addr.As16()]; dup {
			return fmt.Errorf("lb: %w %v: same address as backend %d", ErrBadBackend, b.Addr, j)
		}
		seen[b.Addr.As16()] = i
		if b.Active == nil {
			b.Active = prevActive[b.Addr]
			if b.Active == nil {
				b.Active, fresh = &fresh[0], fresh[1:]
			}
		}
		if b.Requests == nil {
			if b.Requests = prevRequests[b.Addr]; b.Requests == nil {
				b.Requests = new(atomic.Int64)
			}
		}
		if b.eligible() {
			s.elig[i] = true
			s.eligible = append(s.eligible, int32(i))
			total += uint64(b.Weight)
			s.cum = append(s.cum, total)
		}
	}
	return nil
}

// buildTables builds the scheduler's lookup structure over the eligible backends.
func (s *Set) buildTables(size int) {
	if len(s.eligible) > 0 {
		switch s.sched {
		case schedWRR:
			s.seq = wrrSequence(s.backends, s.eligible)
		case schedMaglev, schedSourceHash:
			order := slices.Clone(s.eligible)
			slices.SortFunc(order, func(a, b int32) int {
				return s.backends[a].Addr.Compare(s.backends[b].Addr)
			})
			s.table = buildMaglev(s.backends, order, size, s.seed)
		}
	}
}

// buildAffinity sets up client affinity, sharing (or copying) prev's table so clients keep
// their backend across rebuilds.
func (s *Set) buildAffinity(spec *Spec, prev *Set) {
	s.affTTL = int64(spec.Affinity)
	s.affSlack = min(s.affTTL/64, int64(time.Second))
	capacity := spec.AffinityCapacity
	if capacity == 0 {
		capacity = DefaultAffinityCapacity
	}
	if prev != nil && prev.aff != nil && prev.aff.capacity() == affinitySlots(capacity) {
		s.aff = prev.aff
	} else {
		s.aff = newAffinityTable(capacity)
		if prev != nil && prev.aff != nil {
			s.aff.copyFrom(prev.aff)
		}
	}
	s.backHash = make([]uint64, len(s.backends))
	s.idHash = make([]uint64, len(s.backends))
	s.idIndex = make([]uint16, len(s.backends))
	order := make([]int, len(s.backends))
	for i := range s.backends {
		s.backHash[i] = addrHash(s.backends[i].Addr, seedBackend)
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(s.backHash[a], s.backHash[b]) })
	for k, i := range order {
		s.idHash[k], s.idIndex[k] = s.backHash[i], uint16(i)
	}
}

// Backends returns a copy of the Set's backends in configuration order, with their Active
// counters (shared, not copied), for metrics and status pages.
func (s *Set) Backends() []Backend { return slices.Clone(s.backends) }

// Scheduler returns the name of the Set's scheduler.
func (s *Set) Scheduler() string { return s.name }

// Eligible returns how many backends may receive new flows (0: Pick always fails).
func (s *Set) Eligible() int { return len(s.eligible) }

// Pick chooses a backend for a new flow: client is the client address, hash a flow hash
// (FlowHash of the 5-tuple), now unix ns (affinity). ok=false: no eligible backend. The
// returned Backend belongs to the Set and must not be modified. Pick never returns a Draining,
// Unhealthy or weight-0 backend, allocates nothing and takes no lock.
func (s *Set) Pick(client netip.Addr, hash uint64, now int64) (b *Backend, ok bool) {
	if len(s.eligible) == 0 {
		return nil, false
	}
	if s.aff == nil {
		return &s.backends[s.pick(client, hash)], true
	}
	key := addrHash(client, seedClient) | 1 // 0 marks an empty affinity slot
	if id, exp, ok := s.aff.get(key, now); ok {
		if i, found := slices.BinarySearch(s.idHash, id); found && s.elig[s.idIndex[i]] {
			// Refresh the expiry, but skip the shared-cache-line write while it would move
			// by less than affinitySlack: a client opening many flows reads only.
			if now+s.affTTL-exp > s.affSlack {
				s.aff.put(key, id, now+s.affTTL)
			}
			return &s.backends[s.idIndex[i]], true
		}
	}
	i := s.pick(client, hash)
	s.aff.put(key, s.backHash[i], now+s.affTTL)
	return &s.backends[i], true
}

// Recompute returns the backend Pick chose for a flow when it was new, for a flow met in mid-stream
// whose entry was lost (a restart): possible only for schedulers whose choice is a function of the
// packet and the eligible set alone, with fixed hash secrets (the same in every process), i.e.
// maglev without session affinity (the flow hash) and source_hash (the client address, with or
// without affinity, which then holds the same choice). It is the same backend while the eligible
// set is unchanged. ok=false: another scheduler (random, round robin, least connections, two
// choices, maglev with affinity) or no eligible backend. Recompute touches no affinity entry and
// no counter.
func (s *Set) Recompute(client netip.Addr, hash uint64) (b *Backend, ok bool) {
	if len(s.eligible) == 0 {
		return nil, false
	}
	switch {
	case s.sched == schedSourceHash, s.sched == schedMaglev && s.aff == nil:
		return &s.backends[s.pick(client, hash)], true
	}
	return nil, false
}

// pick runs the scheduler; there is at least one eligible backend.
func (s *Set) pick(client netip.Addr, hash uint64) int {
	switch s.sched {
	case schedRandom:
		return int(s.eligible[s.weightedPos(rand.Uint64N(s.total()))])
	case schedRoundRobin:
		return int(s.eligible[(s.ctr.Add(1)-1)%uint64(len(s.eligible))])
	case schedWRR:
		return int(s.seq[(s.ctr.Add(1)-1)%uint64(len(s.seq))])
	case schedLeastConn:
		return s.leastConn(hash)
	case schedTwoChoices:
		return s.twoChoices()
	case schedSourceHash:
		return int(s.table[reduce(addrHash(client, seedClient^s.seed), len(s.table))])
	default: // schedMaglev
		if s.seed != 0 {
			hash = mix(hash^s.seed, p4^s.seed)
		}
		return int(s.table[reduce(hash, len(s.table))])
	}
}

func (s *Set) total() uint64 { return s.cum[len(s.cum)-1] }

// weightedPos maps r in [0, total) to the position in eligible whose weight interval holds r.
func (s *Set) weightedPos(r uint64) int {
	p, _ := slices.BinarySearch(s.cum, r+1)
	return p
}

// load reads a backend's live flow count (negative counts from caller bugs count as 0).
func (s *Set) load(i int32) int64 {
	b := &s.backends[i]
	return max(0, b.Active.Load()) + max(0, b.Requests.Load())
}

// leastConn returns the eligible backend with the lowest Active/Weight. The scan starts at a
// position taken from the flow hash so ties (e.g. an idle service) spread over backends
// instead of all going to the first one.
func (s *Set) leastConn(hash uint64) int {
	n := len(s.eligible)
	p := reduce(hash, n)
	best := s.eligible[p]
	bl, bw := s.load(best), int64(s.backends[best].Weight)
	for k := 1; k < n; k++ {
		if p++; p == n {
			p = 0
		}
		i := s.eligible[p]
		l, w := s.load(i), int64(s.backends[i].Weight)
		if l*bw < bl*w {
			best, bl, bw = i, l, w
		}
	}
	return int(best)
}

// twoChoices draws two distinct eligible backends at random in proportion to weight and
// returns the one with the lower Active/Weight (the first on a tie, so an idle service still
// follows the weights).
func (s *Set) twoChoices() int {
	total := s.total()
	pa := s.weightedPos(rand.Uint64N(total))
	a := s.eligible[pa]
	if len(s.eligible) == 1 {
		return int(a)
	}
	wa := uint64(s.backends[a].Weight)
	// Sample the second from the remaining weight, skipping a's interval.
	r := rand.Uint64N(total - wa)
	if r >= s.cum[pa]-wa {
		r += wa
	}
	b := s.eligible[s.weightedPos(r)]
	la, lb := s.load(a), s.load(b)
	if lb*int64(wa) < la*int64(s.backends[b].Weight) {
		return int(b)
	}
	return int(a)
}
