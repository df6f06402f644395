package conntrack

import (
	"sync/atomic"

	"github.com/edgegate/edgegate/packet"
)

// TCP window tracking, after netfilter's tcp_in_window (nf_conntrack_proto_tcp.c): each
// direction remembers how far it sent (end), how far its peer allows it to send (maxEnd) and
// the largest window it advertised (maxWin). A segment is in window when
//
//	I.   seq   <= sender.maxEnd              (not beyond what the receiver allowed)
//	II.  end   >= sender.end - receiver.maxWin (not older than one window: retransmits pass)
//	III. ack   <= receiver.end               (acknowledges nothing not yet sent)
//	IV.  ack   >= receiver.end - max(sender.maxWin, maxAckWindowConst)
//
// (comparisons in sequence space, modulo 2^32). What the gateway does with the answer:
// an out-of-window RST is dropped (RFC 5961 §3: blind resets), any other out-of-window
// segment is counted and forwarded without moving the flow's state (retransmits, packets
// reordered across queues and window probes pass; the endpoints judge them). An in-window RST
// on an established flow closes it only when its sequence number is exactly the expected one;
// otherwise the flow stays established, the RST is forwarded and the endpoint answers it with
// a challenge ACK (RFC 5961 §3.2, as netfilter does since Linux 5.x).
//
// Differences from netfilter: no SACK blocks (the ACK number bounds III and IV), no
// retransmission counting (nf_conntrack_tcp_max_retrans).

// SeqWindow is what the tracker knows of one direction's sequence space (netfilter's struct
// ip_ct_tcp_state). The zero value means "nothing seen yet from this side": its first segment
// initialises it, from a SYN (window scale option included) or, picking up a connection in the
// middle, from whatever the segment carries. Fields are atomics because the two directions of
// a flow may be handled by two workers at once; each value only moves forward in sequence
// space (or grows), so a lost race costs precision, never a wrong rewrite.
type SeqWindow struct {
	end    atomic.Uint32 // td_end: highest seq+len this side sent
	maxEnd atomic.Uint32 // td_maxend: highest ack+window its peer granted (right edge for this side)
	maxWin atomic.Uint32 // td_maxwin: largest window this side advertised, scaled; 0: unseen
	maxAck atomic.Uint32 // td_maxack: highest ack this side sent (valid with winMaxAckSet)
	flags  atomic.Uint32 // window scale shift (winScaleMask) and the win* bits
}

// SeqWindow.flags bits.
const (
	winScaleMask = 0x0f // window scale shift applied to this side's windows
	winScaleSeen = 0x10 // this side's SYN carried the window scale option
	winMaxAckSet = 0x20 // maxAck holds an ack this side sent
	winLiberal   = 0x40 // picked up mid-stream: scale unknown, learn from every segment
)

// maxAckWindowConst is netfilter's MAXACKWINCONST: the smallest span below receiver.end an
// ACK may lag (check IV).
const maxAckWindowConst = 66000

// End is the highest sequence number plus length this side sent (td_end).
func (w *SeqWindow) End() uint32 { return w.end.Load() }

// MaxEnd is the right edge of what the peer allowed this side to send (td_maxend).
func (w *SeqWindow) MaxEnd() uint32 { return w.maxEnd.Load() }

// MaxWin is the largest scaled window this side advertised (td_maxwin); 0 until seen.
func (w *SeqWindow) MaxWin() uint32 { return w.maxWin.Load() }

// MaxAck is the highest acknowledgement number this side sent; ok is false before its first ACK.
func (w *SeqWindow) MaxAck() (ack uint32, ok bool) {
	return w.maxAck.Load(), w.flags.Load()&winMaxAckSet != 0
}

// Scale is the window scale shift of this side's segments (0 unless both SYNs offered it).
func (w *SeqWindow) Scale() uint8 { return uint8(w.flags.Load() & winScaleMask) }

// Seen reports whether a segment of this side initialised the window.
func (w *SeqWindow) Seen() bool { return w.maxWin.Load() != 0 }

// Window is the sequence state of direction d (what that side sent and may send).
func (e *Entry) Window(d Dir) *SeqWindow { return &e.win[d&1] }

func before(a, b uint32) bool { return int32(a-b) < 0 }
func after(a, b uint32) bool  { return int32(a-b) > 0 }

// advanceSeq moves a forward to v when v is after it.
func advanceSeq(a *atomic.Uint32, v uint32) {
	for o := a.Load(); after(v, o); o = a.Load() {
		if a.CompareAndSwap(o, v) {
			return
		}
	}
}

// growTo raises a to v.
func growTo(a *atomic.Uint32, v uint32) {
	for o := a.Load(); v > o; o = a.Load() {
		if a.CompareAndSwap(o, v) {
			return
		}
	}
}

// segment is what window tracking reads of a TCP segment. All fields are 32-bit and it is
// passed by pointer: a mixed-size struct copied by value costs store-forwarding stalls here.
type segment struct {
	seq, end, ack, win, flags uint32
}

// has reports whether any of flags f is set.
func (s *segment) has(f packet.TCPFlags) bool { return s.flags&uint32(f) != 0 }

func segmentOf(p *packet.Packet) segment {
	end := p.Seq + uint32(p.PayloadLen)
	if p.TCPFlags&packet.TCPSyn != 0 {
		end++
	}
	if p.TCPFlags&packet.TCPFin != 0 {
		end++
	}
	return segment{seq: p.Seq, end: end, ack: p.Ack, win: uint32(p.Window), flags: uint32(p.TCPFlags)}
}

// initSYN (re)starts w from a SYN or SYN-ACK (netfilter's tcp_init_sender).
func (w *SeqWindow) initSYN(s *segment, p *packet.Packet) {
	w.end.Store(s.end)
	w.maxEnd.Store(s.end)
	w.maxWin.Store(max(s.win, 1)) // a SYN's window is never scaled
	w.maxAck.Store(0)
	var f uint32
	if len(p.B) > p.L4Off {
		if shift, ok := p.TCP().WindowScale(); ok {
			f = uint32(shift) | winScaleSeen
		}
	}
	w.flags.Store(f)
}

// reset forgets everything (the zero value: unseen).
func (w *SeqWindow) reset() {
	w.end.Store(0)
	w.maxEnd.Store(0)
	w.maxWin.Store(0)
	w.maxAck.Store(0)
	w.flags.Store(0)
}

// agreeScale applies RFC 7323 §2.2 once both SYNs are known: scaling is on only when both
// sides offered it.
func agreeScale(a, b *SeqWindow) {
	if a.flags.Load()&b.flags.Load()&winScaleSeen == 0 {
		a.flags.And(^uint32(winScaleMask))
		b.flags.And(^uint32(winScaleMask))
	}
}

// pickUp initialises w from a segment in the middle of a connection (no SYN seen from this
// side): the window is learnt from the packet, and the peer's end from its ACK if unknown.
func (w *SeqWindow) pickUp(peer *SeqWindow, s *segment) {
	win := max(s.win, 1)
	w.end.Store(s.end)
	w.maxWin.Store(win)
	w.maxEnd.Store(s.end + win)
	w.flags.Or(winLiberal)
	if !peer.Seen() {
		peer.end.Store(s.ack)
		peer.maxEnd.Store(s.ack)
		peer.flags.Or(winLiberal)
	} else if s.ack == peer.end.Load()+1 {
		peer.end.Add(1) // answer to a keep-alive
	}
}

// inWindow checks segment s of the side owning sender against both windows (checks I-IV
// above) and, when it passes, advances them. A flow picked up mid-stream (window scale
// unknown) is liberal, as in netfilter: every segment but an RST passes and teaches the
// windows.
func inWindow(sender, receiver *SeqWindow, s *segment) bool {
	// One load of each field; the updates below write only what moves.
	sf := sender.flags.Load()
	sEnd, sMaxEnd, sMaxWin := sender.end.Load(), sender.maxEnd.Load(), sender.maxWin.Load()
	rEnd, rMaxEnd, rMaxWin := receiver.end.Load(), receiver.maxEnd.Load(), receiver.maxWin.Load()
	ack, sack := s.has(packet.TCPAck), s.ack
	if !ack || (s.has(packet.TCPRst) && sack == 0) {
		sack = rEnd // no ACK (or a broken RST's zero ACK): pretend it is right
	}
	ok := before(s.seq, sMaxEnd+1) &&
		after(s.end, sEnd-rMaxWin-1) &&
		before(sack, rEnd+1) &&
		after(sack, rEnd-max(sMaxWin, maxAckWindowConst)-1)
	if !ok && (s.has(packet.TCPRst) || (sf|receiver.flags.Load())&winLiberal == 0) {
		return false
	}
	win := s.win
	if !s.has(packet.TCPSyn) {
		win <<= sf & winScaleMask
	}
	if win > sMaxWin {
		growTo(&sender.maxWin, win)
	}
	if rMaxWin != 0 && after(s.end, sMaxEnd) {
		receiver.maxWin.Add(s.end - sMaxEnd) // the receiver accepted more than it announced
	}
	if after(s.end, sEnd) {
		advanceSeq(&sender.end, s.end)
	}
	if ack {
		if sf&winMaxAckSet == 0 {
			sender.maxAck.Store(sack)
			sender.flags.Or(winMaxAckSet)
		} else if after(sack, sender.maxAck.Load()) {
			advanceSeq(&sender.maxAck, sack)
		}
	}
	right := sack + win
	if win == 0 {
		right++
	}
	if after(right, rMaxEnd) {
		advanceSeq(&receiver.maxEnd, right)
	}
	return true
}

// window runs window tracking for TCP segment p of direction d on a flow in state old.
// It returns Accept, OutOfWindow (drop: an RST outside the window) or outOfWindowPass (count,
// forward, leave the state alone); keep says an in-window RST must not close the flow.
func (e *Entry) window(d Dir, p *packet.Packet, old State, assured bool) (v Verdict, keep bool) {
	sender, receiver := &e.win[d&1], &e.win[(d^1)&1]
	s := segmentOf(p)
	if s.has(packet.TCPSyn|packet.TCPRst) || !sender.Seen() {
		return windowSlow(sender, receiver, &s, p, old, assured)
	}
	if inWindow(sender, receiver, &s) {
		return Accept, false
	}
	return outOfWindowPass, false
}

// windowSlow is window for SYNs, RSTs and a side's first segment.
func windowSlow(sender, receiver *SeqWindow, s *segment, p *packet.Packet, old State, assured bool) (v Verdict, keep bool) {
	syn, ack, rst := s.has(packet.TCPSyn), s.has(packet.TCPAck), s.has(packet.TCPRst)
	switch {
	case !sender.Seen() && syn:
		sender.initSYN(s, p)
		if !ack {
			return Accept, false // simultaneous open: nothing to check yet
		}
		agreeScale(sender, receiver)
	case !sender.Seen():
		sender.pickUp(receiver, s)
	case syn && !ack && old == StateSynSent && after(s.end, sender.end.Load()):
		// The client gave up and retried with a new ISN on the same ports (RFC 793: a
		// restarted TCP uses larger sequence numbers): start over.
		sender.initSYN(s, p)
		receiver.reset()
		return Accept, false
	}
	if rst && (old == StateClose || old == StateTimeWait) {
		// The connection is over (an earlier RST or both FINs went through): the RSTs a
		// stack sends for segments still in flight carry older numbers and cannot break
		// anything more; forward them, as a reset of a closed flow is no attack.
		return Accept, false
	}
	if rst {
		if ma, ok := receiver.MaxAck(); ok {
			if before(s.seq, ma) {
				return OutOfWindow, false // below what the receiver already acknowledged
			}
			// RFC 5961 §3.2: only the exact next sequence number resets an established
			// connection; any other in-window RST gets a challenge ACK from the endpoint.
			keep = old == StateEstablished && assured && s.seq != ma && s.seq != sender.end.Load()
		}
		if s.seq == 0 && old == StateSynSent {
			s.seq = sender.end.Load() // RST answering a SYN, from a stack that sends seq 0
			s.end = s.seq
		}
	}
	if !inWindow(sender, receiver, s) {
		if rst {
			return OutOfWindow, false
		}
		return outOfWindowPass, false
	}
	return Accept, keep
}
