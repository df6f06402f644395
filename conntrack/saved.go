package conntrack

import "errors"

// Saved is the state of an entry as a snapshot carries it from one process to the next
// (hand-over upgrade): the state word's parts. Tuples, Kind and Service are the Entry's own
// exported fields. TCP window state is not carried: a restored flow learns its windows from its
// next segments, liberally, as one picked up in mid-stream.
type Saved struct {
	State     State
	Assured   bool
	SeenReply bool
	NoOrig    bool  // picked up from a reply, no original-direction packet seen yet
	Expires   int64 // unix ns
}

// Save reads e's state for a snapshot.
func (e *Entry) Save() Saved {
	w := e.word.Load()
	return Saved{
		State:     State(w & wState),
		Assured:   w&wAssured != 0,
		SeenReply: w&wSeenReply != 0,
		NoOrig:    w&wNoOrig != 0,
		Expires:   w &^ wLowMask,
	}
}

// Restore inserts e (Tuple, Kind, Service, Load set by the caller) with the saved state and
// expiry, as Insert does otherwise (the same errors; ErrNotInit for a state no live entry has).
// An entry already expired at now is refused with ErrExpired.
func (t *Table) Restore(e *Entry, s Saved, now int64) (*Entry, error) {
	if s.State == StateNone || s.State >= numStates {
		return nil, ErrNotInit
	}
	if s.Expires <= now {
		return nil, ErrExpired
	}
	e.word.Store(pack(s.Expires, s.State, s.flags()))
	e.streamAt = streamTick(now) // a restored UDP flow may become a stream by its next packet
	return t.insert(e, now, true)
}

// Install puts a flow another node created (flow sync; e.Origin, tuples, Kind, Service and Load
// set by the caller) into the table in state s (Expires ignored: now + this table's timeout for
// the state), or, when the entry holding e's original tuple is already there with the same
// tuples and origin, moves that entry to s (state, flags, expiry) and returns it. A flow of
// another origin, or of this node, holding either tuple is left alone: ErrExists or
// ErrReplyTaken. The same peer's entry with another reply tuple (the port reused for a new
// connection) is replaced.
func (t *Table) Install(e *Entry, s Saved, now int64) (*Entry, error) {
	proto := e.Tuple[Original].Proto
	for try := 0; ; try++ {
		s.Expires = now + t.sh.timeoutOf(proto, s.State, s.flags())
		got, err := t.Restore(e, s, now)
		if !errors.Is(err, ErrExists) || got.Origin != e.Origin || got.Tuple[Original] != e.Tuple[Original] {
			return got, err
		}
		if got.Tuple[Reply] == e.Tuple[Reply] {
			got.adopt(s)
			return got, nil
		}
		if try > 0 || !t.Delete(got) {
			return got, err
		}
	}
}

func (s Saved) flags() int64 {
	var f int64
	if s.Assured {
		f |= wAssured
	}
	if s.SeenReply {
		f |= wSeenReply
	}
	if s.NoOrig {
		f |= wNoOrig
	}
	return f
}

// adopt moves a live entry to state s with expiry s.Expires (no-op on a removed entry).
func (e *Entry) adopt(s Saved) {
	for {
		w := e.word.Load()
		if w&wDead != 0 || e.word.CompareAndSwap(w, pack(s.Expires, s.State, s.flags())) {
			return
		}
	}
}
