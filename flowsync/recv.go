package flowsync

import (
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/edgegate/edgegate/conntrack"
)

// peerState is what the receiver keeps per sending node.
type peerState struct {
	replay replay
	limit  limiter
}

// recvLoop reads datagrams until the node closes.
func (n *Node) recvLoop() {
	defer n.wg.Done()
	var buf [MaxDatagram + 1]byte
	var recs [MaxRecords]Record
	dec := NewDecoder(n.cfg.Key)
	var peers [MaxNodes]*peerState
	for {
		k, from, err := n.conn.ReadFromUDPAddrPort(buf[:])
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			n.stats.recvErrors.Add(1)
			select {
			case <-n.done:
				return
			case <-time.After(10 * time.Millisecond): // not a busy loop on a persistent error
			}
			continue
		}
		n.stats.rxDatagrams.Add(1)
		if why := n.handle(dec, buf[:k], from, &recs, &peers); why != nil {
			n.stats.drop(why)
		}
	}
}

// handle checks one datagram and applies its records.
func (n *Node) handle(dec *Decoder, b []byte, from netip.AddrPort, recs *[MaxRecords]Record, peers *[MaxNodes]*peerState) error {
	if !n.peers[from.Addr().Unmap()] {
		return ErrUnknown
	}
	h, err := dec.Decode(b, recs[:])
	if err != nil {
		return err
	}
	if int(h.Node) >= MaxNodes || int(h.Node) == n.cfg.Index {
		return ErrUnknown
	}
	ps := peers[h.Node]
	if ps == nil {
		ps = &peerState{}
		ps.limit.init(MaxDatagramsPerSec)
		peers[h.Node] = ps
	}
	if !ps.limit.take(time.Now()) {
		return errRate
	}
	ok, newEpoch := ps.replay.check(h.Epoch, h.Seq)
	if !ok {
		return ErrReplay
	}
	if newEpoch {
		n.log.Info("cluster peer heard (new epoch): sending it the flow table", "node", h.Node, "from", from)
		n.dump(int(h.Node), n.peerAddr(from))
	}
	now := time.Now().UnixNano()
	for i := range h.Count {
		n.apply(&recs[i], now)
	}
	return nil
}

// peerAddr is the configured listen address of the peer that sent from (its source port may
// differ when it listens on a wildcard address).
func (n *Node) peerAddr(from netip.AddrPort) netip.AddrPort {
	for _, p := range n.cfg.Peers {
		if p.Addr().Unmap() == from.Addr().Unmap() {
			return p
		}
	}
	return from
}

var errRate = errors.New("flowsync: peer over its rate")

// apply installs, updates or deletes one received flow.
func (n *Node) apply(r *Record, now int64) {
	n.stats.rxRecords.Add(1)
	if int(r.Origin) >= MaxNodes {
		n.stats.rejected.Add(1)
		return
	}
	if r.Op == OpDelete {
		e, d := n.cfg.Table.Lookup(&r.Tuple[conntrack.Original], now)
		if e != nil && d == conntrack.Original && e.Origin == r.Origin+1 && e.Tuple == r.Tuple && n.cfg.Table.Delete(e) {
			n.stats.deleted.Add(1)
		}
		return
	}
	svc, load, ok := n.cfg.Resolve(r.Kind, &r.Tuple)
	if !ok {
		n.stats.rejected.Add(1)
		return
	}
	e := &conntrack.Entry{Kind: r.Kind, Origin: r.Origin + 1, Service: svc, Load: load, Tuple: r.Tuple}
	if e.Tuple[conntrack.Original].Proto != e.Tuple[conntrack.Reply].Proto {
		n.stats.rejected.Add(1)
		return
	}
	if n.cfg.Table.Cap()/PeerShareDiv <= int(n.installed[r.Origin].Load()) {
		n.stats.peerLimit.Add(1)
		return
	}
	// Count the flow before it becomes visible (its removal decrements at once).
	n.installed[r.Origin].Add(1)
	if load != nil {
		load.Add(1)
	}
	got, err := n.cfg.Table.Install(e, r.Saved, now)
	if got != e {
		n.installed[r.Origin].Add(-1)
		if load != nil {
			load.Add(-1)
		}
	}
	switch {
	case err != nil:
		n.stats.conflicts.Add(1)
	case got == e:
		n.stats.installed.Add(1)
	default:
		n.stats.updated.Add(1)
	}
}
