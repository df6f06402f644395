package flowsync

// ReplayWindow is how many sequence numbers below the newest one seen a datagram may still
// carry (reordering on the path between nodes); older ones are dropped as replays.
const ReplayWindow = 1024

// replay is one peer's anti-replay state: the newest epoch and, within it, the newest
// sequence number and a bitmap of the ReplayWindow numbers at and below it that were seen.
type replay struct {
	epoch uint64
	top   uint64
	seen  [ReplayWindow / 64]uint64
}

// check reports whether (epoch, seq) is fresh and, if so, records it. fresh epoch: the first
// datagram of a newer epoch (the peer restarted, or the first one heard).
func (r *replay) check(epoch, seq uint64) (ok, newEpoch bool) {
	switch {
	case epoch < r.epoch || seq == 0:
		return false, false
	case epoch > r.epoch:
		r.epoch, r.top = epoch, seq
		clear(r.seen[:])
		r.set(seq)
		return true, true
	case seq > r.top:
		shift := seq - r.top
		if shift >= ReplayWindow {
			clear(r.seen[:])
		} else {
			for s := r.top + 1; s < seq; s++ {
				r.clearBit(s)
			}
		}
		r.top = seq
		r.set(seq)
		return true, false
	case r.top-seq >= ReplayWindow:
		return false, false
	case r.isSet(seq):
		return false, false
	}
	r.set(seq)
	return true, false
}

func (r *replay) set(s uint64)        { r.seen[(s/64)%uint64(len(r.seen))] |= 1 << (s % 64) }
func (r *replay) clearBit(s uint64)   { r.seen[(s/64)%uint64(len(r.seen))] &^= 1 << (s % 64) }
func (r *replay) isSet(s uint64) bool { return r.seen[(s/64)%uint64(len(r.seen))]&(1<<(s%64)) != 0 }
