package conntrack

import (
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/edgegate/edgegate/packet"
)

// Entry is one flow. Tuple[Original] is what the client sent (client -> service); Tuple[Reply]
// is the reply expected after NAT, as it arrives (backend -> masquerade address). Translation
// follows from the two tuples alone (as in netfilter): Original-direction packets get
// src=Reply.Dst, dst=Reply.Src; Reply-direction packets get src=Original.Dst,
// dst=Original.Src. Immutable after Insert except the atomics; an Entry is inserted at most
// once (never reused after removal, the GC frees it), which is what lets readers walk hash
// chains without locks. 168 bytes: one allocation (of the 176-byte size class) per flow.
//
// Field order is a cache layout: the first 64 bytes hold what an Original-direction lookup
// reads (its chain link, tuple and the state word), the next 64 Tuple[Reply] and its chain
// link, so walking past an entry in a hash chain touches one line (two when the allocator's
// 176-byte slot straddles a line); the TCP sequence state follows, read once per TCP packet.
type Entry struct {
	// word packs expiry (unix ns, rounded down to 256 ns) with state and flags in the low
	// byte, so one CAS moves state, flags and timeout together.
	word atomic.Int64
	// next0 and next1 are the hash chain links of the two directions. A link is a pointer to
	// byte d of the entry it leads to (d = that node's direction), so one pointer names both
	// the entry and which of its tuples the chain holds (see link and entryOf).
	next0 atomic.Pointer[byte]
	Load  *atomic.Int64 // optional: decremented once when the entry is removed (least_conn counts)
	Kind  uint8         // opaque label: service flow, egress flow, ...
	// Origin is 0 for a flow this node created, else 1 + the cluster index of the node that
	// did (a flow installed from a peer's flow-sync message, see Table.Install).
	Origin uint8

	Tuple   [2]Tuple // at offset 26: Tuple[Original] ends line 0, Tuple[Reply] starts line 1
	Service uint32   // opaque label of the caller (service id), for filters and metrics
	// streamAt (UDP) is when the flow may become a stream: creation + UDPStreamDelay, in
	// streamUnit ticks (wraps; compared by signed difference). Set by Init, then immutable.
	streamAt uint32
	next1    atomic.Pointer[byte]
	sh       *shared // timeouts and counters of the table (defaultShared before Insert)
	// win is the TCP sequence state of each direction (window tracking, see SeqWindow);
	// unused for UDP and ICMP. Line 2: touched once per TCP packet, after the lookup.
	win [2]SeqWindow
}

// Offsets of the two chain links, for next.
const (
	offNext0 = unsafe.Offsetof(Entry{}.next0)
	offNext1 = unsafe.Offsetof(Entry{}.next1)
)

// next is the chain link of e's node for direction d (branch-free: d is data-dependent).
func (e *Entry) next(d Dir) *atomic.Pointer[byte] {
	return (*atomic.Pointer[byte])(unsafe.Add(unsafe.Pointer(e), offNext0+uintptr(d)*(offNext1-offNext0)))
}

// Low byte of Entry.word.
const (
	wState     = 0x0f // State
	wAssured   = 0x10
	wSeenReply = 0x20
	wDead      = 0x40 // removed from the table (set under the writer lock, exactly once)
	wNoOrig    = 0x80 // picked up from a reply: no original-direction packet seen yet
	wLowMask   = 0xff
)

func pack(exp int64, st State, flags int64) int64 { return exp&^wLowMask | flags | int64(st) }

// State is the flow's current TCP state, or StateUnreplied/StateReplied for UDP and ICMP.
func (e *Entry) State() State { return State(e.word.Load() & wState) }

// Assured reports a flow that proved itself (TCP: handshake completed; UDP: a reply seen and
// traffic still flowing UDPStreamDelay after the first packet). Assured flows are never
// evicted to make room.
func (e *Entry) Assured() bool { return e.word.Load()&wAssured != 0 }

// SeenReply reports whether a valid reply-direction packet was seen.
func (e *Entry) SeenReply() bool { return e.word.Load()&wSeenReply != 0 }

// Expires is the unix-ns time after which the entry counts as absent (Lookup) and is removed
// (Sweep); rounded down to 256 ns.
func (e *Entry) Expires() int64 { return e.word.Load() &^ wLowMask }

// Removed reports an entry already removed from its table (expired, evicted or deleted).
func (e *Entry) Removed() bool { return e.word.Load()&wDead != 0 }

func (e *Entry) shared() *shared {
	if e.sh == nil {
		return defaultShared
	}
	return e.sh
}

// Init sets the initial state and timeout from the flow's first packet (one for which
// NewFlowOK is true): TCP SYN_SENT, UDP and ICMP echo unreplied. Timeouts are netfilter's
// defaults until Insert, which re-applies its table's timeouts. A packet that cannot start a
// flow leaves the entry uninitialised, and Insert refuses it.
func (e *Entry) Init(p *packet.Packet, now int64) {
	var st State
	var timeout int64
	sh := e.shared()
	switch {
	case p.Proto == packet.ProtoTCP && tcpKind(p.TCPFlags) == kindSYN:
		st, timeout = StateSynSent, sh.tcp[StateSynSent]
		s := segmentOf(p)
		e.win[Original].initSYN(&s, p)
	case p.Proto == packet.ProtoUDP:
		st, timeout = StateUnreplied, sh.udp
		e.streamAt = streamTick(now + int64(UDPStreamDelay))
	case NewFlowOK(p): // ICMP echo request
		st, timeout = StateUnreplied, sh.icmp
	default:
		e.word.Store(0)
		return
	}
	e.word.Store(pack(now+timeout, st, 0))
}

// InitPickUp sets the state of a flow picked up in mid-stream (PickUpOK) from its first packet,
// seen in direction d: ESTABLISHED, not assured, a reply seen when d is Reply. Until the flow is
// assured (a packet each way, then one more) it times out after tcp_syn_recv, not
// tcp_established: a mid-stream segment nobody answers is as unproven as a half-open handshake,
// and a flood of stray ACKs must not fill the table with five-day entries (they are unassured,
// so early drop may evict them too). A packet PickUpOK refuses leaves the entry uninitialised.
func (e *Entry) InitPickUp(d Dir, p *packet.Packet, now int64) {
	if !PickUpOK(p) {
		e.word.Store(0)
		return
	}
	var flags int64
	if d == Reply {
		flags = wSeenReply | wNoOrig
	}
	e.word.Store(pack(now+e.shared().tcp[StateSynRecv], StateEstablished, flags))
}

// timeoutOf is the idle timeout of state st for protocol proto with flags (the low byte of
// Entry.word): a UDP flow gets the stream timeout only once assured, and a TCP flow picked up in
// mid-stream (InitPickUp) gets tcp_established only once assured.
func (sh *shared) timeoutOf(proto packet.Proto, st State, flags int64) int64 {
	switch proto {
	case packet.ProtoTCP:
		if st == StateEstablished && flags&wAssured == 0 {
			return sh.tcp[StateSynRecv]
		}
		return sh.tcp[st]
	case packet.ProtoUDP:
		if flags&wAssured != 0 {
			return sh.udpStream
		}
		return sh.udp
	}
	return sh.icmp
}

// UDPStreamDelay is how long a UDP flow must live before it can become assured, as in
// netfilter (nf_conntrack_udp_packet's stream_ts, 2 s): a flow is assured (stream timeout,
// never early-dropped) by its first packet after this delay once a reply was seen. A single
// query/answer exchange (DNS, NTP) so keeps the short timeout and stays evictable, and a
// flood of such exchanges cannot pin a full table.
const UDPStreamDelay = 2 * time.Second

// streamUnit is the resolution of Entry.streamAt: 2^20 ns (about 1 ms). A uint32 of ticks
// spans 52 days; only differences under half of that are compared, and an unassured UDP
// flow lives at most UDPStreamDelay plus one UDP timeout.
const streamUnit = 20

func streamTick(ns int64) uint32 { return uint32(ns >> streamUnit) }

// streamDue reports whether now is past the flow's streamAt.
func (e *Entry) streamDue(now int64) bool { return int32(streamTick(now)-e.streamAt) > 0 }

// refreshSlack is how much an unchanged state's expiry may lag before Update rewrites it:
// skipping tiny refreshes keeps the entry's cache line from bouncing between workers on
// every packet, at the cost of expiring up to 134 ms early.
const refreshSlack = 1 << 27

// Verdict is what Track decides for a packet of a tracked flow.
type Verdict uint8

const (
	// Accept: translate and forward the packet.
	Accept Verdict = iota
	// Invalid: the packet fits no state of its flow (conntrack INVALID); drop it.
	Invalid
	// OutOfWindow: an RST outside the flow's sequence window (a blind reset); drop it.
	OutOfWindow
	// outOfWindowPass is internal: a non-RST segment outside the window, counted and
	// forwarded without a state change (Track returns Accept).
	outOfWindowPass
)

// Update is Track(d, p, now) == Accept.
func (e *Entry) Update(d Dir, p *packet.Packet, now int64) bool { return e.Track(d, p, now) == Accept }

// Track advances the state machine for a packet of this flow in direction d and refreshes the
// timeout. TCP segments are also checked against the sequence windows (see SeqWindow): an RST
// outside them is OutOfWindow, other out-of-window segments are counted (Stats.InvalidWindow)
// and accepted without a state change. Invalid means the packet fits no state of the flow
// (count and drop it, do not translate). ICMP errors quoting the flow are RELATED: accepted,
// no state change. Safe for concurrent use (CAS on one word, atomics for the windows); 0 allocs.
func (e *Entry) Track(d Dir, p *packet.Packet, now int64) Verdict {
	if p.IsICMPError {
		return Accept
	}
	proto := e.Tuple[Original].Proto
	if p.Proto != proto {
		e.shared().invalid.Add(1)
		return Invalid
	}
	kind := tcpKind(p.TCPFlags)
	windowed := false // TCP: the window was checked (once, on the first pass of the loop)
	for {
		w := e.word.Load()
		s := transition{st: State(w & wState), flags: w & (wAssured | wSeenReply | wDead | wNoOrig)}
		if d == Original {
			s.flags &^= wNoOrig
		}
		v, done := Accept, false
		switch proto {
		case packet.ProtoTCP:
			s, v, done = e.tcpStep(d, p, kind, s, !windowed)
			windowed = true
		case packet.ProtoUDP:
			s = e.udpStep(d, s, now)
		default:
			s, v, done = e.echoStep(d, p, s)
		}
		if done {
			return v
		}
		if e.commit(w, d, s, proto, now) {
			return Accept
		}
	}
}

// transition is a flow's next state and flags, and whether it ends at once.
type transition struct {
	st    State
	flags int64
	kill  bool
}

// tcpStep moves s (the flow's word as loaded) for a segment of kind in direction d. done says
// the segment is answered with v and the word stays as it is: invalid, ignored, or out of the
// sequence window (checked when checkWindow: once per Track).
func (e *Entry) tcpStep(d Dir, p *packet.Packet, kind int, s transition, checkWindow bool) (_ transition, v Verdict, done bool) {
	sh := e.shared()
	old := s.st
	st := tcpTransitions[d][kind][old]
	switch st {
	case sIV:
		sh.invalid.Add(1)
		return s, Invalid, true
	case sIG:
		return s, Accept, true
	}
	if checkWindow {
		v, keep := e.window(d, p, old, s.flags&wAssured != 0)
		if v != Accept {
			sh.invalidWindow.Add(1)
			if v == OutOfWindow {
				return s, OutOfWindow, true
			}
			return s, Accept, true // out of window, not an RST: forward, state unchanged
		}
		if keep {
			return s, Accept, true // an in-window but inexact RST: forward, state kept
		}
	}
	s.st = st
	switch {
	case reopens(d, p.TCPFlags, old): // see Reopens; the flow starts over unassured
		s.flags &^= wAssured | wSeenReply
	case s.flags&wSeenReply == 0 && p.TCPFlags&packet.TCPRst != 0:
		// RST before any reply (e.g. connection refused): netfilter kills the
		// flow at once rather than keeping it for the CLOSE timeout.
		s.kill = true
	case s.flags&(wSeenReply|wNoOrig) == wSeenReply && st == StateEstablished &&
		(old == StateSynRecv || old == StateEstablished):
		s.flags |= wAssured
	}
	return s, Accept, false
}

// udpStep moves s for a datagram in direction d.
func (e *Entry) udpStep(d Dir, s transition, now int64) transition {
	if d == Reply {
		s.st = StateReplied
	}
	// netfilter: traffic again after the stream delay, a reply having been seen
	// before this packet, makes the flow a stream.
	if s.flags&wSeenReply != 0 && e.streamDue(now) {
		s.flags |= wAssured
	}
	return s
}

// echoStep moves s for an ICMP echo message: requests one way, replies the other (anything else
// is invalid: done).
func (e *Entry) echoStep(d Dir, p *packet.Packet, s transition) (_ transition, v Verdict, done bool) {
	if (d == Original && !p.IsEchoRequest()) || (d == Reply && !p.IsEchoReply()) {
		e.shared().invalid.Add(1)
		return s, Invalid, true
	}
	if d == Reply {
		s.st = StateReplied
	}
	return s, Accept, false
}

// commit stores s over w, the word it was computed from (a reply marks the flow replied, the
// expiry restarts from now), unless nothing would change but an expiry within refreshSlack. It
// reports false when another packet changed the word first (compute again).
func (e *Entry) commit(w int64, d Dir, s transition, proto packet.Proto, now int64) bool {
	if d == Reply {
		s.flags |= wSeenReply
	}
	exp := now + e.shared().timeoutOf(proto, s.st, s.flags)
	if s.kill {
		exp = now
	}
	nw := pack(exp, s.st, s.flags)
	if nw&wLowMask == w&wLowMask {
		if delta := (nw &^ wLowMask) - (w &^ wLowMask); delta < refreshSlack {
			return true // same state, expiry (nearly) current: no write
		}
	}
	if !e.word.CompareAndSwap(w, nw) {
		return false
	}
	if sh := e.shared(); sh.onEvent != nil && ((nw^w)&wState != 0 || (nw^w)&wAssured != 0) {
		sh.onEvent(e, EventState)
	}
	return true
}
