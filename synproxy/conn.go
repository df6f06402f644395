package synproxy

import (
	"encoding/binary"
	"sync/atomic"

	"github.com/edgegate/edgegate/packet"
)

// States of a Conn.
const (
	statePending     = iota // backend SYN sent, its SYN-ACK awaited
	stateSplicing           // one worker is completing the handshake
	stateEstablished        // offsets known: every segment is adjusted
)

// Conn is one connection opened through the proxy: what the cookie proved about the client,
// and, once the backend answered, the offsets between the two sides' sequence and timestamp
// spaces. The fields are written by CheckACK (before the flow becomes visible) and by
// ServerSYNACK (before state turns established); Adjust only reads them.
type Conn struct {
	state atomic.Uint32
	Proof

	// Set when the backend answered.
	seqOff    uint32 // backend -> client sequence numbers: add; client -> backend acks: subtract
	tsOff     uint32 // backend -> client TSval: add; client -> backend TSecr: subtract
	tsAdj     bool   // both sides use timestamps
	origShift uint8  // client -> backend windows: shift left (the backend does not scale, the client does)
	replyFrom uint8  // backend -> client windows: the backend's scale ...
	replyTo   uint8  // ... and the one the client applies
}

// Proof is what a valid cookie ACK tells about its client.
type Proof struct {
	clientISN, cookieISS uint32
	clientTS, cookieTS   uint32 // the client's TSval in its ACK; our TSval it echoed
	mss                  uint16 // from the cookie's MSS index
	clientWin            uint16 // window field of the client's ACK (scaled by clientWS)
	clientWS             int8   // the client's window scale; noWScale: no scaling with the client
	sack, ecn, ts        bool
}

// NewConn starts the proxied connection a cookie proved (pending until the backend answers).
func NewConn(pr Proof) *Conn { return &Conn{Proof: pr} }

// CheckACK validates a client's ACK (p: TCP with ACK and none of SYN, RST, FIN; parsed) that
// has no flow as the answer to a cookie SYN-ACK and returns what it proves. false: no valid
// cookie.
func (s *Secret) CheckACK(p *packet.Packet, now int64) (c Proof, valid bool) {
	h := p.TCP()
	o, ok := ParseOptions(h)
	if !ok {
		return c, false
	}
	t := TupleOf(p)
	isn, cookie := h.Seq()-1, h.Ack()-1
	data, ok := s.Check(&t, isn, cookie, now)
	if !ok {
		return c, false
	}
	c = Proof{clientISN: isn, cookieISS: cookie, mss: mssTable(p.Version)[data], clientWin: h.Window(), clientWS: noWScale}
	if o.TS && o.TSEcr != 0 {
		bits := o.TSEcr & tsMask
		if ws := bits & tsWScale; ws != tsWScale {
			if ws > maxWScale {
				return c, false // not a value AnswerSYN encodes
			}
			c.clientWS = int8(ws)
		}
		c.sack, c.ecn, c.ts = bits&tsSACK != 0, bits&tsECN != 0, true
		c.clientTS, c.cookieTS = o.TSVal, o.TSEcr
	}
	return c, true
}

// BackendSYN turns a client's segment (its cookie ACK, or a later one while the backend has
// not answered: a lost SYN is re-sent that way) into the SYN the client would have sent the
// backend, in place: same addresses and ports (the caller translates them), the client's
// initial sequence number and the options the cookie recorded. false: no room.
func (c *Conn) BackendSYN(p *packet.Packet) bool {
	tsval := c.clientTS
	if o, ok := ParseOptions(p.TCP()); ok && o.TS {
		tsval = o.TSVal
	}
	win := uint32(c.clientWin) << max(c.clientWS, 0)
	flags := packet.TCPSyn
	if c.ecn {
		flags |= packet.TCPEce | packet.TCPCwr
	}
	var ob [maxSYNOptions]byte
	n := writeSYNOptions(ob[:], c.mss, c.sack, c.ts, tsval, 0, c.clientWS)
	seg := segment{sport: p.SrcPort, dport: p.DstPort, seq: c.clientISN, flags: flags, win: uint16(min(win, 0xffff))}
	if !reshape(p, packet.TCPMinLen+n, false) {
		return false
	}
	writeTCP(p, seg, ob[:n])
	return true
}

// ExtraRoom is how much buffer ServerSYNACK needs for the second segment it builds.
const ExtraRoom = packet.IPv6Len + packet.TCPMinLen + 12

// ServerSYNACK completes the handshake when the backend's SYN-ACK p (backend -> client side,
// untranslated) arrives: it records the offsets, turns p in place into the ACK the client side
// sends the backend (addresses swapped: already in the backend's form), and writes into extra
// (at least ExtraRoom bytes) the acknowledgement the backend side sends the client, still in
// the backend's form (the caller adjusts and translates it like any backend segment): it opens
// the window the cookie SYN-ACK kept closed. It returns the length of that second packet, or
// 0 when p is not the answer to our SYN (wrong ack, malformed) or another worker already
// handles it.
func (c *Conn) ServerSYNACK(p *packet.Packet, extra []byte) int {
	h := p.TCP()
	if p.TCPFlags&packet.TCPConnFlags != packet.TCPSyn|packet.TCPAck ||
		h.Ack() != c.clientISN+1 || len(extra) < max(ExtraRoom, p.L4Off+packet.TCPMinLen) {
		return 0
	}
	o, ok := ParseOptions(h)
	if !ok || !c.state.CompareAndSwap(statePending, stateSplicing) {
		return 0
	}
	iss, synWin := h.Seq(), h.Window()
	c.setOffsets(iss, &o)
	// The backend's acknowledgement to the client, in the backend's form.
	copy(extra, p.B[:p.L4Off+packet.TCPMinLen])
	q := packet.Packet{B: extra[:p.L4Off+packet.TCPMinLen], Version: p.Version, Proto: packet.ProtoTCP, L4Off: p.L4Off, Src: p.Src, Dst: p.Dst}
	var ob [12]byte
	n := 0
	if c.tsAdj {
		n = writeTSOption(ob[:], o.TSVal, o.TSEcr)
	}
	reshape(&q, packet.TCPMinLen+n, false)
	writeTCP(&q, segment{sport: p.SrcPort, dport: p.DstPort, seq: iss + 1, ack: c.clientISN + 1, flags: packet.TCPAck, win: synWin >> c.replyFrom}, ob[:n])
	// The client side's ACK to the backend.
	if c.tsAdj {
		n = writeTSOption(ob[:], o.TSEcr, o.TSVal)
	}
	win := min(uint32(c.clientWin)<<c.origShift, 0xffff)
	seg := segment{sport: p.DstPort, dport: p.SrcPort, seq: c.clientISN + 1, ack: iss + 1, flags: packet.TCPAck, win: uint16(win)}
	if !reshape(p, packet.TCPMinLen+n, true) {
		c.state.Store(statePending)
		return 0
	}
	writeTCP(p, seg, ob[:n])
	c.state.Store(stateEstablished)
	return len(q.B)
}

// setOffsets derives the per-direction adjustments from the backend's ISS and SYN-ACK options.
func (c *Conn) setOffsets(iss uint32, o *Options) {
	c.seqOff = c.cookieISS - iss
	c.tsAdj = c.ts && o.TS
	if c.tsAdj {
		c.tsOff = c.cookieTS - o.TSVal
	}
	if c.clientWS < 0 {
		return // no scaling with the client, so none with the backend either (it saw no option)
	}
	c.replyTo = AdvertisedWScale
	if o.WScale >= 0 {
		c.replyFrom = uint8(o.WScale)
	} else {
		c.origShift = uint8(c.clientWS) // the backend reads the client's windows unscaled
	}
}

// Established reports whether the backend answered and segments flow adjusted.
func (c *Conn) Established() bool { return c.state.Load() == stateEstablished }

// Action says what the caller does with a segment after Adjust.
type Action uint8

const (
	// Pass: translate and forward (adjusted in place when the connection is established).
	Pass Action = iota
	// Drop: the segment cannot be delivered yet (the backend has not answered).
	Drop
	// ResendSYN: a client segment while the backend has not answered: turn it into the SYN
	// again (BackendSYN) and forward that.
	ResendSYN
)

// Adjust moves segment p (parsed TCP, untranslated) of this connection into the other side's
// sequence and timestamp space in place: from the client (fromClient) its acknowledgement
// number, SACK blocks and echoed timestamp; from the backend its sequence number and
// timestamp; windows rescaled where the two sides' scales differ. Checksums are updated
// incrementally, or left alone when p.PartialCsum (the L4 checksum field holds only the
// pseudo-header sum and the kernel completes it).
func (c *Conn) Adjust(p *packet.Packet, fromClient bool) Action {
	if c.state.Load() != stateEstablished {
		return c.pending(p, fromClient)
	}
	h := p.TCP()
	o, ok := ParseOptions(h)
	if !ok {
		o = Options{} // unreadable options: adjust the fixed header only
	}
	var d uint32
	if fromClient {
		if h.Flags()&packet.TCPAck != 0 {
			put32(h, 8, h.Ack()-c.seqOff, &d)
		}
		for i := range o.sackN {
			at := o.sackAt + 8*i
			put32(h, at, binary.BigEndian.Uint32(h[at:])-c.seqOff, &d)
			put32(h, at+4, binary.BigEndian.Uint32(h[at+4:])-c.seqOff, &d)
		}
		if c.tsAdj && o.TS && o.TSEcr != 0 {
			put32(h, o.tsAt+4, o.TSEcr-c.tsOff, &d)
		}
		if c.origShift != 0 {
			put16(h, 14, uint16(min(uint32(h.Window())<<c.origShift, 0xffff)), &d)
		}
	} else {
		put32(h, 4, h.Seq()+c.seqOff, &d)
		if c.tsAdj && o.TS {
			put32(h, o.tsAt, o.TSVal+c.tsOff, &d)
		}
		if c.replyFrom != c.replyTo && p.TCPFlags&packet.TCPSyn == 0 {
			w := uint32(h.Window()) << c.replyFrom >> c.replyTo
			put16(h, 14, uint16(min(w, 0xffff)), &d)
		}
	}
	if !p.PartialCsum {
		binary.BigEndian.PutUint16(h[16:], applyDelta(h.Checksum(), d))
	}
	p.Seq, p.Ack, p.Window = h.Seq(), h.Ack(), h.Window()
	return Pass
}

// pending handles a segment before the backend's SYN-ACK was spliced.
func (c *Conn) pending(p *packet.Packet, fromClient bool) Action {
	rst := p.TCPFlags&packet.TCPRst != 0
	switch {
	case fromClient && rst:
		return Pass // the client gives up: the backend may drop its half-open connection
	case fromClient:
		return ResendSYN
	case rst:
		// The backend refused our SYN: its RST acknowledges the client's SYN and carries no
		// usable sequence number; the client accepts it at the cookie's next number.
		h := p.TCP()
		var d uint32
		put32(h, 4, c.cookieISS+1, &d)
		if !p.PartialCsum {
			binary.BigEndian.PutUint16(h[16:], applyDelta(h.Checksum(), d))
		}
		p.Seq = c.cookieISS + 1
		return Pass
	}
	return Drop
}

// put32 writes v at h[off:] (any alignment) and adds the change of the covered 16-bit words
// (aligned to the start of h, as the checksum sums them) to *d.
func put32(h []byte, off int, v uint32, d *uint32) {
	lo, hi := off&^1, (off+5)&^1
	old := packet.Checksum(h[lo:hi], 0)
	binary.BigEndian.PutUint32(h[off:], v)
	*d += uint32(^old) + uint32(packet.Checksum(h[lo:hi], 0))
}

// put16 is put32 for an even offset and a 16-bit value.
func put16(h []byte, off int, v uint16, d *uint32) {
	*d += uint32(^binary.BigEndian.Uint16(h[off:])) + uint32(v)
	binary.BigEndian.PutUint16(h[off:], v)
}

// applyDelta applies an accumulated ones'-complement word delta to a transmitted checksum
// (RFC 1624 equation 3).
func applyDelta(cs uint16, d uint32) uint16 {
	x := uint64(^cs) + uint64(d)
	for x > 0xffff {
		x = x&0xffff + x>>16
	}
	return ^uint16(x)
}
