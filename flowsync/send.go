package flowsync

import (
	"net/netip"
	"sync"
	"time"

	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/packet"
)

// limiter is a token bucket of datagrams per second (burst: one tenth of a second's worth).
type limiter struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func (l *limiter) init(perSec int) { l.rate, l.tokens = float64(perSec), float64(perSec)/10 }

// take takes one token; false when the bucket is empty.
func (l *limiter) take(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() {
		l.tokens = min(l.rate/10, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

// wait takes a token, sleeping while the bucket is empty; false when the node closes.
func (n *Node) wait() bool {
	for !n.send.take(time.Now()) {
		select {
		case <-n.done:
			return false
		case <-time.After(time.Millisecond):
		}
	}
	return true
}

// batch collects records and sends them to a set of peers.
type batch struct {
	n    *Node
	enc  *Encoder
	recs [MaxRecords]Record
	k    int
	to   []netip.AddrPort
}

func (n *Node) newBatch(to []netip.AddrPort) *batch {
	return &batch{n: n, enc: NewEncoder(n.cfg.Key), to: to}
}

// add appends e as op (skipped when the entry is gone meanwhile); a full batch is sent first.
func (b *batch) add(e *conntrack.Entry, op Op) bool {
	if op == OpUpsert && e.Removed() {
		return true
	}
	r := &b.recs[b.k]
	*r = Record{Op: op, Kind: e.Kind, Origin: uint8(b.n.cfg.Index), Saved: e.Save(), Tuple: e.Tuple}
	if e.Origin != 0 {
		r.Origin = e.Origin - 1
	}
	if op == OpDelete {
		r.Saved.State = conntrack.StateClose
		if e.Tuple[0].Proto != packet.ProtoTCP {
			r.Saved.State = conntrack.StateReplied
		}
	}
	if b.k++; b.k == MaxRecords {
		return b.flush()
	}
	return true
}

// flush sends the collected records (one datagram, to every peer of the batch).
func (b *batch) flush() bool {
	if b.k == 0 {
		return true
	}
	return b.send()
}

// send sends the collected records, none included (a hello).
func (b *batch) send() bool {
	if !b.n.wait() {
		return false
	}
	dg := b.enc.Encode(Header{Node: uint8(b.n.cfg.Index), Epoch: b.n.epoch, Seq: b.n.seq.Add(1)}, b.recs[:b.k])
	for _, p := range b.to {
		if _, err := b.n.conn.WriteToUDPAddrPort(dg, p); err != nil {
			b.n.stats.sendErrors.Add(1)
			continue
		}
		b.n.stats.txDatagrams.Add(1)
		b.n.stats.txRecords.Add(uint64(b.k))
	}
	b.k = 0
	return true
}

// refreshLoop sends this node's live flows to every peer each RefreshInterval (in its own
// goroutine: a walk of a large table takes seconds at MaxDatagramsPerSec, and the event queue
// must drain meanwhile).
func (n *Node) refreshLoop() {
	defer n.wg.Done()
	tick := time.NewTicker(RefreshInterval)
	defer tick.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-tick.C:
			n.walk(n.cfg.Peers, false)
		}
	}
}

// sendLoop drains the event queue every FlushInterval and says hello when idle.
func (n *Node) sendLoop() {
	defer n.wg.Done()
	b := n.newBatch(n.cfg.Peers)
	tick := time.NewTicker(FlushInterval)
	defer tick.Stop()
	hello := time.Time{} // the first tick says hello
	for {
		select {
		case <-n.done:
			return
		case now := <-tick.C:
			for {
				e, ev, ok := n.q.pop()
				if !ok {
					break
				}
				op := OpUpsert
				if ev == conntrack.EventDeleted {
					op = OpDelete
				}
				if !b.add(e, op) {
					return
				}
			}
			sent := b.k > 0
			if !b.flush() {
				return
			}
			if sent {
				hello = now.Add(HelloInterval)
			} else if now.After(hello) {
				hello = now.Add(HelloInterval)
				if !b.send() {
					return
				}
			}
		}
	}
}

// walk sends the table's live flows to the peers in to: this node's own (all false), or every
// flow with its origin (all true: a dump to a peer that just started), the peer's own flows
// included: a peer that restarted lost them, and other nodes may be holding them for it.
func (n *Node) walk(to []netip.AddrPort, all bool) {
	b := n.newBatch(to)
	now := time.Now().UnixNano()
	n.cfg.Table.Range(func(e *conntrack.Entry) bool {
		select {
		case <-n.done:
			return false
		default:
		}
		if e.Kind == 0 || (e.Origin != 0 && !all) || e.Expires() <= now {
			return true
		}
		return b.add(e, OpUpsert)
	})
	b.flush()
}

// dump sends every flow to the peer at p (index i) once it is heard from with a new epoch (it
// started, or restarted, and knows nothing): flows ECMP moves to it keep working. One dump per
// peer at a time.
func (n *Node) dump(i int, p netip.AddrPort) {
	if !n.dumping[i].CompareAndSwap(false, true) {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer n.dumping[i].Store(false)
		n.stats.dumps.Add(1)
		n.walk([]netip.AddrPort{p}, true)
	}()
}
