package nat

import (
	"errors"
	"math/rand/v2"
	"net/netip"

	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/lb"
	"github.com/edgegate/edgegate/packet"
	"github.com/edgegate/edgegate/synproxy"
)

// Verdict is what the caller does with the packet after Translate.
type Verdict uint8

const (
	// Drop: count Reason and discard.
	Drop Verdict = iota
	// Forward: the packet was translated in place; write it back to the device.
	Forward
	// Local: the gateway answered in place (echo reply to a service address, a refusal); write
	// it back. A refusal also carries its Reason.
	Local
	// Cookie: the SYN proxy answered a SYN with a cookie SYN-ACK built in place; write it back.
	Cookie
	// ProxyOpen: a valid cookie ACK became the SYN to the backend (built and translated in
	// place); write it.
	ProxyOpen
	// ProxyResend: a client segment before the backend answered became that SYN again.
	ProxyResend
	// ProxySplice: the backend's SYN-ACK became the ACK to the backend, and a second packet,
	// the window opening to the client, follows at ExtraOff from the packet's start; write both.
	ProxySplice
)

// Built reports a verdict whose packet the gateway built with complete checksums and no
// segmentation: any offload header the packet came with must be cleared.
func (v Verdict) Built() bool { return v >= Local }

// ExtraOff is where, from the start of p.B, Translate writes the second packet of a
// ProxySplice verdict; the buffer behind p.B needs ExtraOff + synproxy.ExtraRoom bytes.
const ExtraOff = 512

// Reason says why a packet was dropped; labels for metrics come from String.
type Reason uint8

const (
	OK              Reason = iota
	Invalid                // conntrack INVALID: fits no state of its flow, or cannot start one
	TableFull              // no room in the flow table even after early drop
	NoBackend              // the service has no eligible backend
	PortExhausted          // no free source port on the SNAT address after bounded tries
	NoRule                 // not a service, not a flow, not egress traffic
	NoFlowICMP             // ICMP error quoting a packet of no known flow
	NoMasquerade           // masquerade needed but no address of the flow's family configured
	NoPickUp               // mid-stream packet of an unknown flow whose translation cannot be rebuilt
	InvalidWindow          // TCP RST outside its flow's sequence window (blind reset)
	ICMPRateLimited        // an echo reply or port unreachable over ICMPRatePerSec, not sent
	BadCookie              // an ACK without flow to a proxied service port whose cookie does not check
	NumReasons
)

var reasonNames = [NumReasons]string{"ok", "invalid_state", "table_full", "no_backend", "port_exhausted", "no_rule", "icmp_no_flow", "no_masquerade_address", "pickup_not_rebuildable", "invalid_window", "icmp_rate_limited", "invalid_cookie"}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Kinds of conntrack entries created here.
const (
	KindService uint8 = 1
	KindEgress  uint8 = 2
)

// Bounds of the work one new flow may cause under port pressure (a nearly exhausted masquerade
// or egress port range): at most portTries insert attempts (RFC 6056 algorithm 1 with a bounded
// number of tries; each attempt is one lock-free lookup, and an insert only when the port is
// free), and at most portEvictions expendable flows (unreplied or closing) evicted to take their
// port, each followed by a retry on that very port.
const (
	portTries     = 64
	portEvictions = 2
)

// Translator applies NAT using a shared flow table.
type Translator struct {
	CT *conntrack.Table
	// icmp limits the ICMP answers built here (echo replies, port unreachable); shared by all
	// workers using this Translator.
	icmp rateLimiter
	// Proxy holds the SYN cookie keys; nil: no SYN proxy (every SYN is forwarded).
	Proxy *synproxy.Secret
	proxy proxyState
}

// Translate looks the packet up, creates its flow when it is new and allowed, and rewrites it in
// place. A packet whose L4 checksum field holds only the pseudo-header sum (p.PartialCsum, the
// offload path) keeps it so.
func (t *Translator) Translate(p *packet.Packet, r *Rules, now int64) (Verdict, Reason) {
	if p.IsICMPError {
		return t.translateICMPError(p, now)
	}
	k := conntrack.TupleOf(p)
	e, d := t.CT.Lookup(&k, now)
	if e != nil && e.Reopens(d, p) {
		// A new connection reusing the ports of a closed one is a new flow, as netfilter treats
		// it: it picks a backend from the current configuration and health, not the old one's.
		t.CT.Delete(e)
		e = nil
	}
	if e == nil {
		return t.newFlow(p, &k, r, now)
	}
	if c := t.proxy.conn(e); c != nil {
		return t.translateProxied(p, e, d, c, now)
	}
	if v, why := track(e, d, p, now); v != Forward {
		return v, why
	}
	apply(p, e, d)
	return Forward, OK
}

// track runs conntrack for a packet of e in direction d: Forward, or Drop with its reason.
func track(e *conntrack.Entry, d conntrack.Dir, p *packet.Packet, now int64) (Verdict, Reason) {
	switch e.Track(d, p, now) {
	case conntrack.Accept:
		return Forward, OK
	case conntrack.OutOfWindow:
		return Drop, InvalidWindow
	}
	return Drop, Invalid
}

// apply rewrites p as a packet of e travelling in direction d (netfilter's rule: the translation
// follows from the two tuples alone).
func apply(p *packet.Packet, e *conntrack.Entry, d conntrack.Dir) {
	var to *conntrack.Tuple
	if d == conntrack.Original {
		to = &e.Tuple[conntrack.Reply]
	} else {
		to = &e.Tuple[conntrack.Original]
	}
	// The packet must leave as the reverse of the other direction's tuple.
	src, dst := to.DstAddr(), to.SrcAddr()
	if src != p.Src || to.DstPort != p.SrcPort {
		p.SetSrc(src, to.DstPort)
	}
	if dst != p.Dst || to.SrcPort != p.DstPort {
		p.SetDst(dst, to.SrcPort)
	}
}

func (t *Translator) newFlow(p *packet.Packet, k *conntrack.Tuple, r *Rules, now int64) (Verdict, Reason) {
	if p.Proto == packet.ProtoTCP && t.Proxy != nil {
		if v, why, done := t.synProxy(p, k, r, now); done {
			return v, why
		}
	}
	if !conntrack.NewFlowOK(p) {
		if r.tcpLoose && conntrack.PickUpOK(p) {
			return t.pickUp(p, k, r, now)
		}
		return Drop, Invalid
	}
	if tg, ok := r.lookupService(p.Proto, p.Dst, p.DstPort); ok {
		return t.newServiceFlow(p, k, r, tg, now, nil)
	}
	if p.Proto == packet.ProtoUDP && r.tcpLoose {
		if v, why, ok := t.pickUpReply(p, k, r, now); ok {
			return v, why
		}
	}
	if p.IsEchoRequest() && r.IsVIP(p.Dst) {
		if !t.icmp.allow(now) {
			return Drop, ICMPRateLimited
		}
		p.MakeEchoReply()
		return Local, OK
	}
	if eg := r.egressFor(p.Src, p.Dst); eg != nil {
		h := lb.FlowHash(0, p.Src, netip.Addr{}, 0, 0)
		pool, ok := poolFor(eg.Pool, p.Src, h)
		if !ok {
			return Drop, NoMasquerade
		}
		e := &conntrack.Entry{Kind: KindEgress}
		e.Init(p, now)
		v, why, _ := t.insertAndApply(p, k, e, mapping{src: pool, dst: p.Dst, dport: p.DstPort, ports: portRandom}, r, now)
		return v, why
	}
	return Drop, NoRule
}

// refuse answers a new flow to a service without eligible backend when the service's policy says
// so (TCP reset, ICMP port unreachable), so clients fail at once instead of timing out; otherwise
// the packet is dropped. Either way it counts as NoBackend, but for a port unreachable over the
// ICMP rate limit, dropped as ICMPRateLimited.
func (t *Translator) refuse(p *packet.Packet, s *Service, now int64) (Verdict, Reason) {
	if s.RefuseWhenEmpty {
		switch p.Proto {
		case packet.ProtoTCP:
			if p.MakeTCPReset() {
				return Local, NoBackend
			}
		case packet.ProtoUDP:
			if !t.icmp.allow(now) {
				return Drop, ICMPRateLimited
			}
			if p.MakePortUnreachable() {
				return Local, NoBackend
			}
		}
	}
	return Drop, NoBackend
}

// newServiceFlow opens a flow to a backend of tg. px, when not nil, is the proxied connection
// whose SYN p is: it is attached to the entry before the entry becomes visible.
func (t *Translator) newServiceFlow(p *packet.Packet, k *conntrack.Tuple, r *Rules, tg Target, now int64, px *synproxy.Conn) (Verdict, Reason) {
	set := tg.Svc.Set4
	if p.Version == 6 {
		set = tg.Svc.Set6
	}
	if set == nil {
		return t.refuse(p, tg.Svc, now)
	}
	h := lb.FlowHash(uint8(p.Proto), p.Src, p.Dst, p.SrcPort, p.DstPort)
	b, ok := set.Pick(p.Src, h, now)
	if !ok {
		return t.refuse(p, tg.Svc, now)
	}
	m, ok := r.serviceMapping(p, tg, b.Addr)
	if !ok {
		return Drop, NoMasquerade
	}
	e := &conntrack.Entry{Kind: KindService, Service: tg.Svc.ID, Load: b.Active}
	e.Init(p, now)
	// Count the flow before it becomes visible: the table decrements Load when it deletes the entry,
	// which may happen as soon as it is inserted.
	b.Active.Add(1)
	if px != nil {
		t.proxy.attach(e, px)
	}
	v, why, inserted := t.insertAndApply(p, k, e, m, r, now)
	if !inserted {
		b.Active.Add(-1)
		if px != nil {
			t.proxy.Forget(e)
		}
	}
	if why == PortExhausted && r.proxy == synproxy.Auto {
		t.proxy.gauge.Engage(now)
	}
	return v, why
}

// portPolicy says how a new flow's source port (ICMP echo: identifier) is chosen.
type portPolicy uint8

const (
	portKeep         portPolicy = iota // the client's port, one try (no source NAT, pick-up)
	portPreferClient                   // the client's port first, then random ones (masquerade)
	portRandom                         // random ports only (egress)
)

// mapping is the translation of a new flow: its reply tuple runs from dst:dport back to src and
// the source port ports chooses.
type mapping struct {
	src, dst netip.Addr
	dport    uint16
	ports    portPolicy
}

// serviceMapping is the translation of p's new flow to backend of tg: to the target port (echo
// identifiers stay) and, when the service masquerades or the backend reaches its own service
// (hairpin: it would answer itself), from a masquerade address; false when none is configured.
func (r *Rules) serviceMapping(p *packet.Packet, tg Target, backend netip.Addr) (mapping, bool) {
	m := mapping{src: p.Src, dst: backend, dport: tg.Port.TargetPort, ports: portKeep}
	if p.Proto == packet.ProtoICMP || p.Proto == packet.ProtoICMPv6 {
		m.dport = 0
	}
	if tg.Svc.Masquerade || backend == p.Src {
		src, ok := r.masqFor(p.Src, lb.FlowHash(0, p.Src, netip.Addr{}, 0, 0))
		if !ok {
			return m, false
		}
		m.src, m.ports = src, portPreferClient
	}
	return m, true
}

// insertAndApply completes e (original tuple k, reply tuple from m; its state already set from p)
// and inserts it. inserted reports whether e itself went into the table.
//
// Source ports (ICMP echo: identifiers) other than portKeep: a service flow first tries to keep
// the client's port, as netfilter's MASQUERADE does without --random-fully: a backend that still holds
// TIME_WAIT for (masquerade address, port) then sees the same client's sequence numbers and
// timestamps and accepts the reuse, where a port taken over from another client would be refused
// until the backend's TIME_WAIT ends. Ports come from the node's slice of the range (Spec.SliceLo):
// a client port outside it is replaced like a collision. Egress flows and collisions draw random ports
// (RFC 6056 algorithm 1), at most portTries of them. The second half of the tries may take a port
// from a flow that never saw a reply or is already closing (TIME_WAIT, CLOSE), at most
// portEvictions of them: under pressure those go before a new flow is refused.
func (t *Translator) insertAndApply(p *packet.Packet, k *conntrack.Tuple, e *conntrack.Entry, m mapping, r *Rules, now int64) (v Verdict, why Reason, inserted bool) {
	e.Tuple[conntrack.Original] = *k
	tries := 1
	if m.ports != portKeep {
		tries = portTries
	}
	alo, ahi := r.allocRange()
	lo, span := uint32(alo), uint32(ahi)-uint32(alo)+1
	evictions, retry := 0, false
	// For ICMP echo the identifier is the request tuple's SrcPort, so the reply tuple carries it as
	// its DstPort, exactly like a source port (dport is 0 for echo).
	sport := p.SrcPort
	for i := 0; i < tries; i++ {
		if m.ports != portKeep && !retry && (i > 0 || m.ports == portRandom || uint32(sport)-lo >= span) {
			sport = uint16(lo + rand.Uint32N(span))
		}
		retry = false
		e.Tuple[conntrack.Reply] = conntrack.MakeTuple(p.Proto, m.dst, m.src, m.dport, sport)
		got, err := t.CT.Insert(e, now)
		switch {
		case err == nil:
			apply(p, e, conntrack.Original)
			return Forward, OK, true
		case errors.Is(err, conntrack.ErrExists):
			// Lost the insert race (two packets of one new flow at once): follow the winner so the
			// flow has one entry and one backend.
			if v, why := track(got, conntrack.Original, p, now); v != Forward {
				return v, why, false
			}
			apply(p, got, conntrack.Original)
			return Forward, OK, false
		case errors.Is(err, conntrack.ErrReplyTaken):
			// Under pressure (second half of the tries) take the port of an expendable flow,
			// and retry on that port, not a new random one.
			if i >= tries/2 && i < tries-1 && evictions < portEvictions && t.evictHolder(&e.Tuple[conntrack.Reply], now) {
				evictions++
				retry = true
			}
		default:
			return Drop, TableFull, false
		}
	}
	return Drop, PortExhausted, false
}

// evictHolder deletes the flow holding reply tuple k when it is expendable: unreplied, or closing.
func (t *Translator) evictHolder(k *conntrack.Tuple, now int64) bool {
	h, _ := t.CT.Lookup(k, now)
	if h == nil {
		return true // gone meanwhile
	}
	if h.Assured() && !h.State().Closing() {
		return false
	}
	return t.CT.Delete(h)
}

// translateICMPError rewrites an ICMP error about a tracked flow (RFC 5508): the quoted packet is
// put back into the form its sender knows and the outer header is addressed to that sender.
func (t *Translator) translateICMPError(p *packet.Packet, now int64) (Verdict, Reason) {
	in, why := p.Inner()
	if why != packet.OK {
		return Drop, NoFlowICMP
	}
	k := conntrack.TupleOf(&in).Reverse()
	e, d := t.CT.Lookup(&k, now)
	if e == nil {
		return Drop, NoFlowICMP
	}
	if c := t.proxy.conn(e); c != nil {
		c.AdjustQuote(p.B[p.L4Off:], packet.ICMPLen+in.L4Off, d^1 == conntrack.Reply)
	}
	// The quoted packet travelled in direction !d after translation; restore its form before it.
	q := &e.Tuple[d^1]
	p.SetInner(&in, netip.AddrPortFrom(q.SrcAddr(), q.SrcPort), netip.AddrPortFrom(q.DstAddr(), q.DstPort))
	p.SetSrc(q.DstAddr(), 0)
	p.SetDst(q.SrcAddr(), 0)
	return Forward, OK
}
