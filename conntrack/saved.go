package conntrack

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
	e.word.Store(pack(s.Expires, s.State, f))
	e.streamAt = streamTick(now) // a restored UDP flow may become a stream by its next packet
	return t.insert(e, now, true)
}
