package flowsync

import (
	"sync/atomic"

	"github.com/edgegate/edgegate/conntrack"
)

// QueueLen bounds the flow events waiting to be sent (a power of two). When the sender falls
// behind (more events than MaxDatagramsPerSec × MaxRecords per second), new events are
// dropped and counted (edgegate_flowsync_queue_drops_total).
const QueueLen = 1 << 16

// queue is a bounded lock-free multi-producer queue of flow events (D. Vyukov's bounded MPMC
// queue): the packet path pushes without lock or allocation, the sender pops.
type queue struct {
	head  atomic.Uint64 // next slot to pop
	_     [56]byte
	tail  atomic.Uint64 // next slot to push
	_     [56]byte
	slots [QueueLen]slot
}

type slot struct {
	seq atomic.Uint64
	e   *conntrack.Entry
	ev  conntrack.Event
}

func newQueue() *queue {
	q := new(queue)
	for i := range q.slots {
		q.slots[i].seq.Store(uint64(i))
	}
	return q
}

// push adds an event; false when the queue is full.
func (q *queue) push(e *conntrack.Entry, ev conntrack.Event) bool {
	for {
		pos := q.tail.Load()
		s := &q.slots[pos&(QueueLen-1)]
		switch seq := s.seq.Load(); {
		case seq == pos:
			if q.tail.CompareAndSwap(pos, pos+1) {
				s.e, s.ev = e, ev
				s.seq.Store(pos + 1)
				return true
			}
		case seq < pos:
			return false // full
		}
	}
}

// pop takes the oldest event; ok false when empty.
func (q *queue) pop() (e *conntrack.Entry, ev conntrack.Event, ok bool) {
	for {
		pos := q.head.Load()
		s := &q.slots[pos&(QueueLen-1)]
		switch seq := s.seq.Load(); {
		case seq == pos+1:
			if q.head.CompareAndSwap(pos, pos+1) {
				e, ev = s.e, s.ev
				s.e = nil
				s.seq.Store(pos + QueueLen)
				return e, ev, true
			}
		case seq < pos+1:
			return nil, 0, false // empty
		}
	}
}
