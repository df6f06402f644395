package synproxy

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"
)

// Mode says when new TCP connections to services go through the proxy (tun.syn_proxy).
type Mode uint8

const (
	// Auto: the proxy answers SYNs while Auto says the gateway is under pressure.
	Auto Mode = iota
	// On: every connection to a TCP service port is proxied.
	On
	// Off: SYNs are translated and forwarded; cookie ACKs left from an earlier mode still open
	// their connections.
	Off
)

// ParseMode reads "auto", "on" or "off".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "auto", "":
		return Auto, nil
	case "on":
		return On, nil
	case "off":
		return Off, nil
	}
	return Auto, fmt.Errorf("syn_proxy %q: want auto, on or off", s)
}

func (m Mode) String() string { return [...]string{"auto", "on", "off"}[m] }

// Limits of mode auto.
const (
	// AutoRate is the rate of connection attempts (SYNs to service ports that would open a flow)
	// per second the gateway forwards unproxied; beyond it, after AutoBurst attempts above the
	// rate, the proxy engages. Legitimate clients stay well below it on most edges, and a
	// proxied connection costs them nothing but a handshake relayed by the gateway.
	AutoRate = 1000
	// AutoBurst is how many attempts above AutoRate pass before the proxy engages (so at most
	// this many flood SYNs get a flow entry before it does).
	AutoBurst = 200
	// AutoTableFill engages the proxy while the flow table is at least this full (percent).
	AutoTableFill = 50
	// AutoHold is how long the proxy stays engaged after the last sign of pressure.
	AutoHold = 10 * time.Second
	// EngagedHandshakeIdle: while the proxy is engaged, a TCP service flow still in its
	// handshake (SYN_SENT, SYN_RECV: opened before the proxy engaged) that saw no packet for
	// this long is removed: its client did not answer the backend's SYN-ACK, as a spoofed
	// source never does (netfilter keeps such flows 120 s and 60 s). A real client completes the
	// handshake within its round trip; the backend's first SYN-ACK retransmission comes after 1 s.
	EngagedHandshakeIdle = 3 * time.Second
)

// Gauge decides, in mode auto, whether a SYN is proxied: a token bucket of AutoBurst attempts
// refilled at AutoRate, the table's fill and port exhaustion (Engage). Safe for concurrent use;
// approximate under contention, which only moves the point of engagement by a few SYNs.
type Gauge struct {
	tokens atomic.Int64
	last   atomic.Int64 // time the bucket was last refilled up to (Unix ns)
	until  atomic.Int64 // engaged until (Unix ns)
}

// SYN accounts one connection attempt at now with the flow table fill percent and reports
// whether it is to be proxied. Attempts keep being counted while the proxy is engaged: each one
// beyond the rate restarts the hold, so a flood longer than AutoHold keeps it engaged and lets
// no second burst through.
func (g *Gauge) SYN(now int64, fillPercent int) bool {
	if fillPercent >= AutoTableFill {
		g.Engage(now)
		return true
	}
	if !g.take(now) {
		g.Engage(now)
		return true
	}
	return now < g.until.Load()
}

// take refills the bucket up to now (AutoRate per second, at most AutoBurst) and takes one
// attempt from it; false when it is empty.
func (g *Gauge) take(now int64) bool {
	last := g.last.Load()
	el := now - last
	add, nl := int64(0), last
	switch {
	case el >= int64(time.Second)*AutoBurst/AutoRate:
		add, nl = AutoBurst, now
	case el > 0:
		add = el * AutoRate / int64(time.Second)
		nl = last + add*int64(time.Second)/AutoRate
	}
	if add > 0 && g.last.CompareAndSwap(last, nl) {
		g.tokens.Store(min(g.tokens.Load()+add, AutoBurst))
	}
	if g.tokens.Add(-1) >= 0 {
		return true
	}
	g.tokens.Store(0)
	return false
}

// Engage turns the proxy on for AutoHold from now (e.g. when no source port was free).
func (g *Gauge) Engage(now int64) { g.until.Store(now + int64(AutoHold)) }

// Recently reports whether the proxy was engaged at now or so recently that cookies it sent may
// still come back (MaxCookieAge periods).
func (g *Gauge) Recently(now int64) bool {
	return now < g.until.Load()+MaxCookieAge*int64(CookiePeriod)
}

// Engaged reports whether the proxy is engaged at now.
func (g *Gauge) Engaged(now int64) bool { return now < g.until.Load() }

// AdjustQuote puts the TCP header quoted in an ICMP error back into the form its sender wrote
// (RFC 5508 section 4 asks a NAT to translate the quote; the sender matches it to its own
// sequence numbers, e.g. for path MTU discovery). msg is the ICMP message (its checksum at
// bytes 2-3), tcp the quoted TCP header inside it (at least 8 bytes), toClient whether the quoted
// segment went to the client (then it carries the client's view of the backend's sequence
// number). The quoted TCP checksum, when quoted, and the ICMP checksum are kept consistent.
func (c *Conn) AdjustQuote(msg []byte, tcpOff int, toClient bool) {
	if c.state.Load() != stateEstablished || tcpOff+8 > len(msg) || len(msg) < 4 {
		return
	}
	q := msg[tcpOff:]
	var d uint32
	if toClient {
		put32(q, 4, binary.BigEndian.Uint32(q[4:])-c.seqOff, &d)
	} else if len(q) >= 12 {
		put32(q, 8, binary.BigEndian.Uint32(q[8:])+c.seqOff, &d)
	}
	outer := d
	if len(q) >= 18 {
		old := binary.BigEndian.Uint16(q[16:])
		nw := applyDelta(old, d)
		binary.BigEndian.PutUint16(q[16:], nw)
		outer += uint32(^old) + uint32(nw)
	}
	binary.BigEndian.PutUint16(msg[2:], applyDelta(binary.BigEndian.Uint16(msg[2:]), outer))
}
