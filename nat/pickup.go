package nat

import (
	"errors"
	"net/netip"

	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/lb"
	"github.com/edgegate/edgegate/packet"
)

// Pick-up after a restart (conntrack.tcp_loose, netfilter's nf_conntrack_tcp_loose): a packet
// of a flow the table does not know that cannot start one (a TCP segment in mid-stream) creates
// the flow when its translation can be rebuilt from the packet and the rules alone, i.e. when
// the lost entry's tuples follow from:
//   - the backend: lb.Set.Recompute (maglev without affinity, source_hash), the same backend
//     while the eligible set is unchanged;
//   - the masquerade address: chosen by a fixed hash of the client address;
//   - the masquerade port: the client's own port, which every new service flow tries first. A
//     flow whose port collided (and so drew a random one), or whose client port lies outside
//     nat.port_range, cannot be rebuilt; neither can egress flows (random ports by design).
// Everything else is dropped with NoPickUp. A wrong guess is harmless: the backend answers a
// segment of a connection it does not know with a reset, which the client would get anyway.

// pickUp handles a mid-stream TCP segment of an unknown flow: from a client to a service, or
// from a backend to a client (pickUpReply).
func (t *Translator) pickUp(p *packet.Packet, k *conntrack.Tuple, r *Rules, now int64) (Verdict, Reason) {
	tg, ok := r.lookupService(p.Proto, p.Dst, p.DstPort)
	if !ok {
		if v, why, ok := t.pickUpReply(p, k, r, now); ok {
			return v, why
		}
		return Drop, NoPickUp
	}
	set := tg.Svc.Set4
	if p.Version == 6 {
		set = tg.Svc.Set6
	}
	if set == nil {
		return Drop, NoPickUp
	}
	b, ok := set.Recompute(p.Src, lb.FlowHash(uint8(p.Proto), p.Src, p.Dst, p.SrcPort, p.DstPort))
	if !ok {
		return Drop, NoPickUp
	}
	masq := tg.Svc.Masquerade || b.Addr == p.Src
	src := p.Src
	if masq {
		if uint32(p.SrcPort)-uint32(r.portLo) > uint32(r.portHi)-uint32(r.portLo) {
			return Drop, NoPickUp // the lost flow drew a random port
		}
		if src, ok = r.masqFor(p.Src, lb.FlowHash(0, p.Src, netip.Addr{}, 0, 0)); !ok {
			return Drop, NoMasquerade
		}
	}
	e := &conntrack.Entry{Kind: KindService, Service: tg.Svc.ID, Load: b.Active}
	e.InitPickUp(conntrack.Original, p, now)
	b.Active.Add(1)
	// One try with the client's port; taken means another flow holds it now.
	v, why, inserted := t.insertAndApply(p, k, e, mapping{src: src, dst: b.Addr, dport: tg.Port.TargetPort, ports: portKeep}, r, now)
	if !inserted {
		b.Active.Add(-1)
	}
	if why == PortExhausted {
		why = NoPickUp
	}
	return v, why
}

// pickUpReply rebuilds the flow of a packet from a backend to a client of a service without
// source NAT (source_nat: none) when exactly one service port explains it: the service's
// target port is the packet's source port, its set holds the sender, and Recompute chooses the
// sender for the flow the client would have opened to one of the service's addresses (or node
// ports). Replies to a masquerade address cannot be rebuilt: the client is not in the packet.
// ok=false: not such a reply (the caller goes on with its other rules).
func (t *Translator) pickUpReply(p *packet.Packet, k *conntrack.Tuple, r *Rules, now int64) (v Verdict, why Reason, ok bool) {
	if r.isMasq(p.Dst) {
		return 0, 0, false
	}
	var found *lb.Backend
	var svc *Service
	var orig conntrack.Tuple
	n := 0
	for i := range r.services {
		s := &r.services[i]
		set := s.Set4
		if p.Version == 6 {
			set = s.Set6
		}
		if s.Masquerade || set == nil {
			continue
		}
		for j := range s.Ports {
			port := &s.Ports[j]
			if port.Proto != p.Proto || port.TargetPort != p.SrcPort {
				continue
			}
			try := func(vip netip.Addr, vport uint16) {
				if vip.Is4() != p.Src.Is4() {
					return
				}
				b, ok := set.Recompute(p.Dst, lb.FlowHash(uint8(p.Proto), p.Dst, vip, p.DstPort, vport))
				if ok && b.Addr == p.Src {
					found, svc, n = b, s, n+1
					orig = conntrack.MakeTuple(p.Proto, p.Dst, vip, p.DstPort, vport)
				}
			}
			for _, a := range s.Addrs {
				try(a, port.Port)
			}
			if port.NodePort != 0 {
				for a := range r.nodeAddrs {
					try(a, port.NodePort)
				}
			}
		}
	}
	switch {
	case n == 0:
		return 0, 0, false
	case n > 1:
		return Drop, NoPickUp, true // ambiguous: drop rather than guess
	}
	return t.insertReply(p, k, &orig, svc, found, now)
}

// insertReply inserts the flow rebuilt by pickUpReply and translates p as its reply.
func (t *Translator) insertReply(p *packet.Packet, k, orig *conntrack.Tuple, svc *Service, b *lb.Backend, now int64) (Verdict, Reason, bool) {
	e := &conntrack.Entry{Kind: KindService, Service: svc.ID, Load: b.Active}
	e.Tuple[conntrack.Original] = *orig
	e.Tuple[conntrack.Reply] = *k
	if p.Proto == packet.ProtoTCP {
		e.InitPickUp(conntrack.Reply, p, now)
	} else {
		e.Init(p, now) // UDP: unreplied until the client speaks
	}
	b.Active.Add(1)
	got, err := t.CT.Insert(e, now)
	switch {
	case err == nil:
		// The entry's state already counts p (a reply), so no Update: a UDP flow stays
		// unreplied until the client speaks, not assured by one side alone.
	case errors.Is(err, conntrack.ErrExists):
		b.Active.Add(-1)
		if !got.Update(conntrack.Reply, p, now) {
			return Drop, Invalid, true
		}
		e = got // lost the race to another packet of the flow
	case errors.Is(err, conntrack.ErrReplyTaken):
		b.Active.Add(-1)
		return Drop, NoPickUp, true
	default:
		b.Active.Add(-1)
		return Drop, TableFull, true
	}
	apply(p, e, conntrack.Reply)
	return Forward, OK, true
}

// isMasq reports whether a is a masquerade address.
func (r *Rules) isMasq(a netip.Addr) bool {
	for _, m := range r.masq4 {
		if m == a {
			return true
		}
	}
	for _, m := range r.masq6 {
		if m == a {
			return true
		}
	}
	return false
}
