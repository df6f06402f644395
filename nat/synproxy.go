package nat

import (
	"sync"
	"sync/atomic"

	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/packet"
	"github.com/edgegate/edgegate/synproxy"
)

// proxyState is the Translator's SYN proxy state: the proxied connections by flow entry (their
// sequence offsets) and the gauge of mode auto. A side table rather than an entry field keeps
// the 128-byte entry layout; flows that are not proxied pay one atomic load.
type proxyState struct {
	conns sync.Map // *conntrack.Entry -> *synproxy.Conn
	n     atomic.Int64
	gauge synproxy.Gauge
}

// conn returns the proxied connection of e, or nil.
func (s *proxyState) conn(e *conntrack.Entry) *synproxy.Conn {
	if s.n.Load() == 0 {
		return nil
	}
	if c, ok := s.conns.Load(e); ok {
		return c.(*synproxy.Conn)
	}
	return nil
}

func (s *proxyState) attach(e *conntrack.Entry, c *synproxy.Conn) {
	s.n.Add(1)
	s.conns.Store(e, c)
}

// Forget drops the proxied connection of e, if any (e left the flow table).
func (s *proxyState) Forget(e *conntrack.Entry) {
	if s.n.Load() == 0 {
		return
	}
	if _, ok := s.conns.LoadAndDelete(e); ok {
		s.n.Add(-1)
	}
}

// FlowRemoved must be called for every entry that leaves the flow table (the table's OnDelete).
func (t *Translator) FlowRemoved(e *conntrack.Entry) { t.proxy.Forget(e) }

// ProxiedFlows is the number of live flows opened through the SYN proxy.
func (t *Translator) ProxiedFlows() int64 { return t.proxy.n.Load() }

// SYNProxyEngaged reports whether mode auto's gauge has the proxy engaged at now.
func (t *Translator) SYNProxyEngaged(now int64) bool { return t.proxy.gauge.Engaged(now) }

// synProxy handles a TCP segment without flow to a TCP service port: a SYN is answered with a
// cookie when the mode says so; an ACK whose cookie checks opens the proxied connection (its
// SYN to the backend). done is false for segments the proxy leaves to the normal path.
func (t *Translator) synProxy(p *packet.Packet, k *conntrack.Tuple, r *Rules, now int64) (v Verdict, why Reason, done bool) {
	flags := p.TCPFlags & packet.TCPConnFlags
	if flags != packet.TCPSyn && flags != packet.TCPAck {
		return Drop, OK, false
	}
	tg, ok := r.lookupService(packet.ProtoTCP, p.Dst, p.DstPort)
	if !ok {
		return Drop, OK, false
	}
	if flags == packet.TCPSyn {
		set := tg.Svc.Set4
		if p.Version == 6 {
			set = tg.Svc.Set6
		}
		if set == nil || !t.proxyEngaged(r, now) {
			return Drop, OK, false // no backend: the normal path refuses at once
		}
		mss := r.proxyMSS
		if p.Version == 6 {
			mss -= packet.IPv6Len - packet.IPv4MinLen
		}
		if !t.Proxy.AnswerSYN(p, now, mss) {
			return Drop, Invalid, true
		}
		return Cookie, OK, true
	}
	pr, valid := t.Proxy.CheckACK(p, now)
	if !valid {
		if r.proxy == synproxy.On || r.proxy == synproxy.Auto && t.proxy.gauge.Recently(now) {
			return Drop, BadCookie, true
		}
		return Drop, OK, false
	}
	c := synproxy.NewConn(pr)
	if !c.BackendSYN(p) || p.Parse(p.B) != packet.OK {
		return Drop, Invalid, true
	}
	v, why = t.newServiceFlow(p, k, r, tg, now, c)
	switch {
	case v == Forward:
		v = ProxyOpen
	case v == Drop && why != Invalid && p.MakeTCPReset():
		// No flow for a client the handshake already told it is connected (table full, no
		// port, no backend): reset it rather than leave it waiting on a closed window.
		v = Local
		fallthrough
	case v == Local: // a refusal: the client takes the RST at the cookie's next number
		c.Adjust(p, false)
	}
	return v, why, true
}

// proxyEngaged says whether a SYN to a service port at now is answered by the proxy.
func (t *Translator) proxyEngaged(r *Rules, now int64) bool {
	switch r.proxy {
	case synproxy.On:
		return true
	case synproxy.Auto:
		fill := 0
		if c := t.CT.Cap(); c > 0 {
			fill = t.CT.Len() * 100 / c
		}
		return t.proxy.gauge.SYN(now, fill)
	}
	return false
}

// translateProxied moves a segment of a proxied flow between the client's and the backend's
// sequence spaces around the usual state update and translation; conntrack sees the backend's
// numbers in both directions.
func (t *Translator) translateProxied(p *packet.Packet, e *conntrack.Entry, d conntrack.Dir, c *synproxy.Conn, now int64) (Verdict, Reason) {
	if p.Proto != packet.ProtoTCP {
		return Drop, Invalid
	}
	if d == conntrack.Reply {
		if !c.Established() && p.TCPFlags&packet.TCPConnFlags == packet.TCPSyn|packet.TCPAck {
			return t.splice(p, e, c, now)
		}
		if v, why := track(e, d, p, now); v != Forward {
			return v, why
		}
		if c.Adjust(p, false) == synproxy.Drop {
			return Drop, Invalid
		}
		apply(p, e, d)
		return Forward, OK
	}
	switch c.Adjust(p, true) {
	case synproxy.Drop:
		return Drop, Invalid
	case synproxy.ResendSYN:
		if !c.BackendSYN(p) || p.Parse(p.B) != packet.OK {
			return Drop, Invalid
		}
		if v, why := track(e, d, p, now); v != Forward {
			return v, why
		}
		apply(p, e, d)
		return ProxyResend, OK
	}
	if v, why := track(e, d, p, now); v != Forward {
		return v, why
	}
	apply(p, e, d)
	return Forward, OK
}

// splice completes a proxied handshake with the backend's SYN-ACK p: p becomes the ACK to the
// backend and the window opening to the client is built at ExtraOff behind it.
func (t *Translator) splice(p *packet.Packet, e *conntrack.Entry, c *synproxy.Conn, now int64) (Verdict, Reason) {
	room := p.B[:cap(p.B)]
	if len(p.B) > ExtraOff || len(room) < ExtraOff+synproxy.ExtraRoom {
		return Drop, Invalid
	}
	if v, why := track(e, conntrack.Reply, p, now); v != Forward {
		return v, why
	}
	n := c.ServerSYNACK(p, room[ExtraOff:ExtraOff+synproxy.ExtraRoom])
	if n == 0 {
		return Drop, Invalid
	}
	var q packet.Packet
	if q.Parse(room[ExtraOff:ExtraOff+n]) != packet.OK || p.Parse(p.B) != packet.OK {
		return Drop, Invalid
	}
	track(e, conntrack.Original, p, now) // our own ACK: accepted, moves the flow to ESTABLISHED
	c.Adjust(&q, false)
	apply(&q, e, conntrack.Reply)
	return ProxySplice, OK
}
