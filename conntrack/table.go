package conntrack

import (
	"time"

	"errors"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/edgegate/edgegate/packet"
)

// Errors of Insert.
var (
	// ErrExists: an entry with the same original tuple is already there (insert race); Insert
	// returns it so the caller applies the winner's translation.
	ErrExists = errors.New("conntrack: flow already tracked")
	// ErrReplyTaken: another flow already expects this reply tuple; the NAT layer picks
	// another port and retries.
	ErrReplyTaken = errors.New("conntrack: reply tuple in use")
	// ErrTableFull: MaxEntries reached and no unassured entry could be dropped.
	ErrTableFull = errors.New("conntrack: table full")
	// ErrNotInit: Insert of an entry whose Init was not given a flow-creating packet.
	ErrNotInit = errors.New("conntrack: entry not initialised by a flow-creating packet")
	// ErrExpired: Restore of an entry whose saved expiry has passed.
	ErrExpired = errors.New("conntrack: saved entry expired")
	// ErrReused: Insert of an entry that was inserted before (entries are never reused:
	// lock-free readers may still be walking through a removed one).
	ErrReused = errors.New("conntrack: entry inserted before")
)

// DefaultMaxEntries is the table bound when Config.MaxEntries is 0.
const DefaultMaxEntries = 262144

// Config configures a Table.
type Config struct {
	MaxEntries int      // bound on live entries; default DefaultMaxEntries
	Timeouts   Timeouts // zero fields take netfilter defaults
	// OnDelete is called once per entry removed (expiry, eviction, delete), after it left the
	// table and outside any lock; from Sweep's, Insert's or Delete's goroutine.
	OnDelete func(*Entry)
	// OnEvent, when set, is told of what a cluster's flow sync needs: an entry inserted (Insert,
	// Restore, Install), its state or assured flag changed (Track), removed by Delete or
	// DeleteMatching (EventDeleted) or otherwise, by expiry or eviction (EventGone). It runs on the packet path (after the change, outside any lock): it must not block,
	// allocate or lock.
	OnEvent func(*Entry, Event)
}

// Event is what Config.OnEvent reports.
type Event uint8

// Events.
const (
	EventInserted Event = iota + 1
	EventState
	EventDeleted
	EventGone
)

// Stats are cumulative counters of a Table.
type Stats struct {
	Inserted    uint64 // entries inserted
	Deleted     uint64 // removed by Delete / DeleteMatching
	Expired     uint64 // removed after their timeout (Sweep, or found expired by Insert)
	EarlyDrops  uint64 // unassured entries evicted to make room
	TableFull   uint64 // inserts refused with ErrTableFull
	InsertRaces uint64 // inserts lost to an entry with the same original tuple (ErrExists)
	ReplyTaken  uint64 // inserts refused with ErrReplyTaken
	Invalid     uint64 // packets found INVALID by Entry.Update, plus CountInvalid calls
	// InvalidWindow counts TCP segments outside their flow's sequence window: RSTs (dropped,
	// Entry.Track's OutOfWindow) and others (forwarded without a state change).
	InvalidWindow uint64
	Sweeps        uint64 // Sweep and SweepPart runs
}

// paddedCounter keeps a hot counter on its own cache line.
type paddedCounter struct {
	atomic.Uint64
	_ [56]byte
}

type paddedMutex struct {
	sync.Mutex
	_ [56]byte
}

// earlyDropBuckets is how many buckets (from the new flow's) Insert examines for an entry to
// evict when full, like netfilter's NF_CT_EVICTION_RANGE: bounded work, no global LRU.
const earlyDropBuckets = 16

// maxStripes bounds the writer lock stripes.
const maxStripes = 1024

// Table is a bounded flow table. Each entry is linked into two hash chains, one per tuple,
// so a packet of either direction finds it with one Lookup. Readers (Lookup, Range, Sweep's
// scan) take no lock: bucket heads and links are atomic pointers, links of removed entries
// stay intact so a reader standing on one still reaches the rest of its chain, and entries
// are never reused. Writers (Insert, Delete, Sweep's removals) serialise per bucket on
// striped mutexes and never block readers. The bucket array has a fixed size of 2 x
// MaxEntries rounded up to a power of two (at most one chain node per bucket on average).
type Table struct {
	buckets []atomic.Pointer[byte]
	mask    uint64
	stripes []paddedMutex
	smask   uint64
	key     hashKey
	sh      *shared
	max     int64
	onDel   func(*Entry)

	n                                    atomic.Int64  // live (and reserved) entries
	cursor                               atomic.Uint64 // SweepPart's next bucket
	inserted, deleted, expired, early    paddedCounter
	tableFull, races, replyTaken, sweeps paddedCounter
}

// New makes a table.
func New(cfg Config) *Table {
	max := cfg.MaxEntries
	if max <= 0 {
		max = DefaultMaxEntries
	}
	nb := 1
	for nb < 2*max {
		nb <<= 1
	}
	ns := min(nb, maxStripes)
	t := &Table{
		buckets: make([]atomic.Pointer[byte], nb),
		mask:    uint64(nb - 1),
		stripes: make([]paddedMutex, ns),
		smask:   uint64(ns - 1),
		sh:      newShared(cfg.Timeouts),
		max:     int64(max),
		onDel:   cfg.OnDelete,
	}
	t.sh.onEvent = cfg.OnEvent
	for i := range t.key {
		t.key[i] = rand.Uint64()
	}
	return t
}

// link is the chain pointer naming node d of e: the address of e's byte d. Entries are
// 8-byte aligned (they hold pointers), so bit 0 of the address is the direction. The pointer
// stays inside the entry's allocation, so it keeps the entry alive for the GC.
func link(e *Entry, d Dir) *byte { return (*byte)(unsafe.Add(unsafe.Pointer(e), int(d))) }

// entryOf decodes a link.
func entryOf(p *byte) (*Entry, Dir) {
	d := Dir(uintptr(unsafe.Pointer(p)) & 1)
	return (*Entry)(unsafe.Add(unsafe.Pointer(p), -int(d))), d
}

func (t *Table) bucket(k *Tuple) uint64 { return k.hash(&t.key) & t.mask }

// Lookup finds the entry holding k in either direction. nil if none, or if it expired (Sweep
// removes it later) or was removed. Lock-free, 0 allocs.
func (t *Table) Lookup(k *Tuple, now int64) (*Entry, Dir) {
	p := t.buckets[t.bucket(k)].Load()
	for p != nil {
		e, d := entryOf(p)
		if e.Tuple[d].equal(k) {
			w := e.word.Load()
			if w&wDead != 0 || w&^wLowMask <= now {
				return nil, Original
			}
			return e, d
		}
		p = e.next(d).Load()
	}
	return nil, Original
}

// find walks bucket b for k; the caller holds b's stripe.
func (t *Table) find(b uint64, k *Tuple) *Entry {
	for p := t.buckets[b].Load(); p != nil; {
		e, d := entryOf(p)
		if e.Tuple[d].equal(k) {
			return e
		}
		p = e.next(d).Load()
	}
	return nil
}

// lock2 locks the stripes of buckets a and b in a fixed order (once if shared).
func (t *Table) lock2(a, b uint64) {
	sa, sb := a&t.smask, b&t.smask
	if sa > sb {
		sa, sb = sb, sa
	}
	t.stripes[sa].Lock()
	if sb != sa {
		t.stripes[sb].Lock()
	}
}

func (t *Table) unlock2(a, b uint64) {
	sa, sb := a&t.smask, b&t.smask
	if sb != sa {
		t.stripes[sb].Unlock()
	}
	t.stripes[sa].Unlock()
}

// Insert adds e (initialised by e.Init from its first packet; the expiry is recomputed here
// with this table's timeouts). If Tuple[Original] is already tracked it returns the existing
// entry and ErrExists (insert race: use the winner's translation; the winner may hold the
// tuple in either direction, Lookup tells which). If Tuple[Reply] is taken: ErrReplyTaken
// (choose another port). Full: evicts an unassured entry near the new flow's bucket (early
// drop) else ErrTableFull. An expired entry in the way is removed first. e.Load is decremented
// only for entries that were inserted; as the entry may be removed (and decremented) right
// after it becomes visible, count the flow before Insert and undo that on any error. An entry
// refused with an error may be changed (e.g. another reply tuple) and inserted again.
func (t *Table) Insert(e *Entry, now int64) (*Entry, error) { return t.insert(e, now, false) }

// insert is Insert; keep leaves the entry's expiry as set (Restore) instead of now + timeout.
func (t *Table) insert(e *Entry, now int64, keep bool) (*Entry, error) {
	if e.sh != nil {
		return nil, ErrReused
	}
	w := e.word.Load()
	st := State(w & wState)
	if st == StateNone {
		return nil, ErrNotInit
	}
	k0, k1 := &e.Tuple[Original], &e.Tuple[Reply]
	b0, b1 := t.bucket(k0), t.bucket(k1)
	if x, _ := t.Lookup(k0, now); x != nil {
		// Lost a race without taking a slot (which might have evicted another flow).
		t.races.Add(1)
		return x, ErrExists
	}
	if x, _ := t.Lookup(k1, now); x != nil {
		// The reply tuple (the NAT port) is taken: refuse before reserve, which may evict
		// an unrelated flow to make room for an insert that cannot succeed.
		t.replyTaken.Add(1)
		return nil, ErrReplyTaken
	}
	if err := t.reserve(b0, now); err != nil {
		return nil, err
	}
	for {
		t.lock2(b0, b1)
		x := t.find(b0, k0)
		if x == nil {
			x = t.find(b1, k1)
		}
		if x == nil {
			exp := now + t.sh.timeoutOf(k0.Proto, st, w)
			if keep {
				exp = w &^ wLowMask
			}
			t.publish(e, b0, b1, exp)
			t.unlock2(b0, b1)
			t.inserted.Add(1)
			if t.sh.onEvent != nil {
				t.sh.onEvent(e, EventInserted)
			}
			return e, nil
		}
		t.unlock2(b0, b1)
		if xw := x.word.Load(); xw&wDead == 0 && xw&^wLowMask <= now {
			// Expired but not swept yet: remove it (its other bucket may be under a
			// stripe we do not hold) and try again.
			t.remove(x, &t.expired)
			continue
		}
		t.n.Add(-1)
		if x.Tuple[Original] == *k0 || x.Tuple[Reply] == *k0 {
			t.races.Add(1)
			return x, ErrExists
		}
		t.replyTaken.Add(1)
		return nil, ErrReplyTaken
	}
}

// publish makes e (word as Init set it) visible in buckets b0 and b1, whose stripes the caller
// holds, expiring at exp.
func (t *Table) publish(e *Entry, b0, b1 uint64, exp int64) {
	e.sh = t.sh
	w := e.word.Load()
	e.word.Store(pack(exp, State(w&wState), w&(wAssured|wSeenReply|wNoOrig)))
	e.next(Original).Store(t.buckets[b0].Load())
	t.buckets[b0].Store(link(e, Original))
	e.next(Reply).Store(t.buckets[b1].Load())
	t.buckets[b1].Store(link(e, Reply))
}

// reserveEvictions bounds the entries one Insert into a full table may evict (each eviction
// frees a slot that a concurrent insert may take first).
const reserveEvictions = 4

// reserve takes one slot of MaxEntries, evicting an unassured entry if the table is full.
func (t *Table) reserve(b uint64, now int64) error {
	for try := 0; ; try++ {
		if t.n.Add(1) <= t.max {
			return nil
		}
		t.n.Add(-1)
		if try == reserveEvictions || !t.evict(b, now) {
			t.tableFull.Add(1)
			return ErrTableFull
		}
	}
}

// evict removes one expired or unassured entry from the chains of earlyDropBuckets buckets
// starting at b (netfilter's early_drop). Assured flows are never evicted.
func (t *Table) evict(b uint64, now int64) bool {
	for i := uint64(0); i < earlyDropBuckets; i++ {
		for p := t.buckets[(b+i)&t.mask].Load(); p != nil; {
			e, d := entryOf(p)
			w := e.word.Load()
			if w&wDead == 0 {
				if w&^wLowMask <= now {
					if t.remove(e, &t.expired) {
						return true
					}
				} else if w&wAssured == 0 {
					if t.remove(e, &t.early) {
						return true
					}
				}
			}
			p = e.next(d).Load()
		}
	}
	return false
}

// unlink removes the node target from bucket b; the caller holds b's stripe. The removed
// node's own link is left as is for readers standing on it.
func (t *Table) unlink(b uint64, target *byte) {
	prev := &t.buckets[b]
	for p := prev.Load(); p != nil; p = prev.Load() {
		e, d := entryOf(p)
		if p == target {
			prev.Store(e.next(d).Load())
			return
		}
		prev = e.next(d)
	}
}

// remove takes e out of the table once, counts it in c and runs the deletion hooks; false if
// e is not in this table (already removed, or never inserted here).
func (t *Table) remove(e *Entry, c *paddedCounter) bool {
	if e.sh != t.sh {
		return false
	}
	b0, b1 := t.bucket(&e.Tuple[Original]), t.bucket(&e.Tuple[Reply])
	t.lock2(b0, b1)
	w := e.word.Load()
	for w&wDead == 0 && !e.word.CompareAndSwap(w, w|wDead) {
		w = e.word.Load() // a concurrent Update moved the state
	}
	if w&wDead != 0 {
		t.unlock2(b0, b1)
		return false
	}
	t.unlink(b0, link(e, Original))
	t.unlink(b1, link(e, Reply))
	t.unlock2(b0, b1)
	t.n.Add(-1)
	c.Add(1)
	if e.Load != nil {
		e.Load.Add(-1)
	}
	if t.onDel != nil {
		t.onDel(e)
	}
	if t.sh.onEvent != nil {
		ev := EventGone
		if c == &t.deleted {
			ev = EventDeleted
		}
		t.sh.onEvent(e, ev)
	}
	return true
}

// Delete removes e; false if it was not in the table (already removed).
func (t *Table) Delete(e *Entry) bool { return t.remove(e, &t.deleted) }

// Sweep removes the entries expired at now, walking every bucket; run it from a background
// goroutine about once a second. Returns how many it removed. Lookup already ignores expired
// entries, so sweeping late only delays freeing them (and their OnDelete).
func (t *Table) Sweep(now int64) int {
	n := t.sweepRange(0, uint64(len(t.buckets)), now)
	t.sweeps.Add(1)
	return n
}

// SweepPart is Sweep over the next 1/parts of the buckets (round robin across calls), to
// spread the work of a large table: SweepPart(now, 10) every 100 ms covers it once a second
// in short steps instead of one pass of tens of milliseconds at a million flows.
func (t *Table) SweepPart(now int64, parts int) int {
	nb := uint64(len(t.buckets))
	step := (nb + uint64(max(parts, 1)) - 1) / uint64(max(parts, 1))
	start := (t.cursor.Add(step) - step) % nb
	n := t.sweepRange(start, min(start+step, nb), now)
	t.sweeps.Add(1)
	return n
}

func (t *Table) sweepRange(lo, hi uint64, now int64) int {
	n := 0
	for i := lo; i < hi; i++ {
		for p := t.buckets[i].Load(); p != nil; {
			e, d := entryOf(p)
			next := e.next(d).Load()
			if w := e.word.Load(); w&wDead == 0 && w&^wLowMask <= now && t.remove(e, &t.expired) {
				n++
			}
			p = next
		}
	}
	return n
}

// Range calls fn for each entry in the table (expired ones not yet swept included, check
// Expires) until fn returns false. Safe while the data path runs; each entry present for the
// whole walk is visited once, entries inserted or removed meanwhile may or may not be.
func (t *Table) Range(fn func(*Entry) bool) {
	for i := range t.buckets {
		for p := t.buckets[i].Load(); p != nil; {
			e, d := entryOf(p)
			if d == Original && e.word.Load()&wDead == 0 && !fn(e) {
				return
			}
			p = e.next(d).Load()
		}
	}
}

// Filter selects entries for DeleteMatching (and Match); zero fields match anything.
type Filter struct {
	Proto   packet.Proto // protocol number
	Addr    netip.Addr   // any address of either tuple
	Port    uint16       // any port of either tuple
	Backend netip.Addr   // the backend: source address of the reply tuple
	State   State        // exact state
	// Service matches Entry.Service when MatchService is set (0 may be a valid label).
	Service      uint32
	MatchService bool
	// Kind matches Entry.Kind when MatchKind is set.
	Kind      uint8
	MatchKind bool
}

// Match reports whether e satisfies every set field of f.
func (f *Filter) Match(e *Entry) bool {
	o, r := &e.Tuple[Original], &e.Tuple[Reply]
	if f.Proto != 0 && o.Proto != f.Proto {
		return false
	}
	if f.Addr.IsValid() {
		a := f.Addr.As16()
		if o.Src != a && o.Dst != a && r.Src != a && r.Dst != a {
			return false
		}
	}
	if f.Port != 0 && o.SrcPort != f.Port && o.DstPort != f.Port && r.SrcPort != f.Port && r.DstPort != f.Port {
		return false
	}
	if f.Backend.IsValid() && r.Src != f.Backend.As16() {
		return false
	}
	if f.State != StateNone && e.State() != f.State {
		return false
	}
	if f.MatchService && e.Service != f.Service {
		return false
	}
	if f.MatchKind && e.Kind != f.Kind {
		return false
	}
	return true
}

// DeleteMatching removes every entry matching f (e.g. all flows of a removed backend) and
// returns how many; counted as Deleted. Safe while the data path runs.
func (t *Table) DeleteMatching(f Filter) int {
	n := 0
	t.Range(func(e *Entry) bool {
		if f.Match(e) && t.remove(e, &t.deleted) {
			n++
		}
		return true
	})
	return n
}

// Len is the number of entries (including expired ones not yet swept).
func (t *Table) Len() int { return int(t.n.Load()) }

// Cap is MaxEntries.
func (t *Table) Cap() int { return int(t.max) }

// CountInvalid counts an INVALID packet that had no entry (NewFlowOK false) in Stats.Invalid.
func (t *Table) CountInvalid() { t.sh.invalid.Add(1) }

// Stats reads the counters (each atomically; not a consistent snapshot across them).
func (t *Table) Stats() Stats {
	return Stats{
		Inserted:      t.inserted.Load(),
		Deleted:       t.deleted.Load(),
		Expired:       t.expired.Load(),
		EarlyDrops:    t.early.Load(),
		TableFull:     t.tableFull.Load(),
		InsertRaces:   t.races.Load(),
		ReplyTaken:    t.replyTaken.Load(),
		Invalid:       t.sh.invalid.Load(),
		InvalidWindow: t.sh.invalidWindow.Load(),
		Sweeps:        t.sweeps.Load(),
	}
}

// DeleteStaleHandshakes removes the TCP entries matching f that are still in their handshake
// (SYN_SENT or SYN_RECV, not assured) and saw no packet for idle or longer, and returns how
// many; counted as Deleted. A SYN flood that got flows before the SYN proxy engaged leaves such
// entries (the spoofed clients never answer); while the proxy is engaged they are removed long
// before their netfilter timeouts (120 s, 60 s). Safe while the data path runs.
func (t *Table) DeleteStaleHandshakes(f Filter, idle time.Duration, now int64) int {
	n := 0
	t.Range(func(e *Entry) bool {
		st := e.State()
		if e.Tuple[Original].Proto != packet.ProtoTCP || (st != StateSynSent && st != StateSynRecv) || e.Assured() {
			return true
		}
		// The entry's deadline is its last packet plus its state's timeout.
		lastSeen := e.Expires() - e.shared().tcp[st]
		if now-lastSeen >= int64(idle) && f.Match(e) && t.remove(e, &t.deleted) {
			n++
		}
		return true
	})
	return n
}
