package conntrack

import (
	"testing"

	"github.com/edgegate/edgegate/packet"
)

// seg is a TCP segment of the test flow in direction d with explicit sequence numbers,
// window and payload length.
func seg(d Dir, flags packet.TCPFlags, seq, ack uint32, win uint16, n int) *packet.Packet {
	p := tcpDirPkt(d, flags)
	p.Seq, p.Ack, p.Window, p.PayloadLen = seq, ack, win, n
	return p
}

// withWScale gives p a TCP header carrying the window scale option (B is the header alone).
func withWScale(p *packet.Packet, shift uint8) *packet.Packet {
	h := make([]byte, packet.TCPMinLen+4)
	h[12] = byte(len(h)/4) << 4
	copy(h[packet.TCPMinLen:], []byte{packet.TCPOptNOP, packet.TCPOptWindowScale, 3, shift})
	p.B, p.L4Off = h, 0
	return p
}

// Sequence numbers of the test connection: the server's ISN makes its numbers wrap.
const (
	cISN = uint32(1_000_000)
	sISN = uint32(0xffff_f000)
)

// establishedFlow is a tracked connection after a handshake with window scaling (shift 7 both
// ways), 1000 bytes from the client, 2000 from the server and the client's ACK of them.
func establishedFlow(t *testing.T) (*Table, *Entry, int64) {
	t.Helper()
	tb := New(Config{MaxEntries: 16})
	e := natEntry(withWScale(seg(Original, fSYN, cISN, 0, 64240, 0), 7), 50000, t0)
	mustInsert(t, tb, e, t0)
	now := t0
	for i, p := range []*packet.Packet{
		withWScale(seg(Reply, fSYNACK, sISN, cISN+1, 65160, 0), 7),
		seg(Original, fACK, cISN+1, sISN+1, 502, 0),
		seg(Original, fPSHACK, cISN+1, sISN+1, 502, 1000),
		seg(Reply, fACK, sISN+1, cISN+1001, 509, 2000),
		seg(Original, fACK, cISN+1001, sISN+2001, 502, 0),
	} {
		now += sec
		if v := e.Track(dirOf(p), p, now); v != Accept {
			t.Fatalf("handshake step %d: %v", i, v)
		}
	}
	if e.State() != StateEstablished || !e.Assured() || tb.Stats().InvalidWindow != 0 {
		t.Fatalf("after setup: %v assured=%v stats %+v", e.State(), e.Assured(), tb.Stats())
	}
	return tb, e, now
}

func TestWindowTracking(t *testing.T) {
	cNext, sNext := cISN+1001, sISN+2001
	type in struct {
		d        Dir
		flags    packet.TCPFlags
		seq, ack uint32
		win      uint16
		n        int
		verdict  Verdict
		state    State
		counted  uint64 // InvalidWindow after this segment
	}
	for _, tc := range []struct {
		name string
		segs []in
	}{
		{"blind rst far out of window is dropped", []in{{Original, fRST, cNext + 10_000_000, 0, 0, 0, OutOfWindow, StateEstablished, 1}}},
		{"blind rst from the server side is dropped", []in{{Reply, fRST, sNext + 3_000_000, 0, 0, 0, OutOfWindow, StateEstablished, 1}}},
		{"rst below acknowledged data is dropped", []in{{Original, fRST, cNext - 500, 0, 0, 0, OutOfWindow, StateEstablished, 1}}},
		{"rst+ack acknowledging unsent data is dropped", []in{{Reply, fRST | fACK, sNext, cNext + 500_000, 0, 0, OutOfWindow, StateEstablished, 1}}},
		{"in-window inexact rst keeps the flow (challenge ack)", []in{{Original, fRST, cNext + 100, 0, 0, 0, Accept, StateEstablished, 0}}},
		{"exact rst closes", []in{{Original, fRST, cNext, 0, 0, 0, Accept, StateClose, 0}}},
		{"exact rst+ack from the server closes", []in{{Reply, fRST | fACK, sNext, cNext, 0, 0, Accept, StateClose, 0}}},
		{"rst right after data closes", []in{
			{Original, fPSHACK, cNext, sNext, 502, 500, Accept, StateEstablished, 0},
			{Original, fRST, cNext + 500, 0, 0, 0, Accept, StateClose, 0},
		}},
		{"retransmit passes uncounted", []in{{Original, fPSHACK, cISN + 1, sISN + 1, 502, 1000, Accept, StateEstablished, 0}}},
		{"data within the scaled window passes", []in{{Original, fPSHACK, cNext + 60_000, sNext, 502, 1000, Accept, StateEstablished, 0}}},
		{"data beyond the window is counted and forwarded", []in{{Original, fPSHACK, cNext + 200_000, sNext, 502, 100, Accept, StateEstablished, 1}}},
		{"out-of-window fin moves nothing", []in{{Original, fFINACK, cNext + 5_000_000, sNext, 502, 0, Accept, StateEstablished, 1}}},
		{"syn on established is forwarded, state kept", []in{{Original, fSYN, cISN + 77777, 0, 64240, 0, Accept, StateEstablished, 0}}},
		{"spoofed syn after a blind rst", []in{
			{Original, fRST, cNext + 10_000_000, 0, 0, 0, OutOfWindow, StateEstablished, 1},
			{Original, fSYN, cISN + 77777, 0, 64240, 0, Accept, StateEstablished, 1},
		}},
		{"in-window fin closes normally", []in{
			{Original, fFINACK, cNext, sNext, 502, 0, Accept, StateFinWait, 0},
			{Reply, fFINACK, sNext, cNext + 1, 509, 0, Accept, StateLastAck, 0},
			{Original, fACK, cNext + 1, sNext + 1, 502, 0, Accept, StateTimeWait, 0},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb, e, now := establishedFlow(t)
			for i, s := range tc.segs {
				now += sec
				p := seg(s.d, s.flags, s.seq, s.ack, s.win, s.n)
				if v := e.Track(s.d, p, now); v != s.verdict || e.State() != s.state || tb.Stats().InvalidWindow != s.counted {
					t.Fatalf("segment %d: %v, state %v, invalid_window %d; want %v, %v, %d",
						i, v, e.State(), tb.Stats().InvalidWindow, s.verdict, s.state, s.counted)
				}
			}
		})
	}
}

// A refused connection (RST+ACK answering the SYN) kills the flow only when it acknowledges
// the SYN.
func TestWindowRefusedConnection(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ack     uint32
		verdict Verdict
	}{{"genuine", cISN + 1, Accept}, {"spoofed", cISN + 400_000, OutOfWindow}} {
		t.Run(tc.name, func(t *testing.T) {
			tb := New(Config{MaxEntries: 16})
			e := natEntry(seg(Original, fSYN, cISN, 0, 64240, 0), 50000, t0)
			mustInsert(t, tb, e, t0)
			v := e.Track(Reply, seg(Reply, fRST|fACK, 0, tc.ack, 0, 0), t0+sec)
			killed := e.Expires() <= t0+sec
			if v != tc.verdict || killed != (v == Accept) {
				t.Fatalf("verdict %v killed %v", v, killed)
			}
		})
	}
}

// A flow whose windows were never seen (picked up mid-stream, e.g. after a restart) learns
// them from its packets: nothing is counted however far the numbers jump, but a blind RST
// is still dropped.
func TestWindowPickUp(t *testing.T) {
	tb, e, now := establishedFlow(t)
	e.win[Original].reset()
	e.win[Reply].reset()
	for i, p := range []*packet.Packet{
		seg(Original, fPSHACK, 123_456, 987_654, 300, 1000),
		seg(Reply, fACK, 987_654, 124_456, 300, 1400),
		seg(Original, fPSHACK, 124_456, 989_054, 300, 64000), // a super-packet far past the window
		seg(Reply, fACK, 989_054, 188_456, 3000, 0),
	} {
		now += sec
		if v := e.Track(dirOf(p), p, now); v != Accept {
			t.Fatalf("segment %d: %v", i, v)
		}
	}
	if n := tb.Stats().InvalidWindow; n != 0 {
		t.Fatalf("picked-up flow: %d segments counted out of window", n)
	}
	if v := e.Track(Original, seg(Original, fRST, 188_456+50_000_000, 0, 0, 0), now+sec); v != OutOfWindow {
		t.Fatalf("blind rst on a picked-up flow: %v", v)
	}
	if v := e.Track(Original, seg(Original, fRST, 188_456, 0, 0, 0), now+2*sec); v != Accept || e.State() != StateClose {
		t.Fatalf("exact rst on a picked-up flow: %v, %v", v, e.State())
	}
}

// A client retrying with a new ISN on the same ports while in SYN_SENT starts the window over.
func TestWindowSynRetryNewISN(t *testing.T) {
	e := natEntry(seg(Original, fSYN, cISN, 0, 64240, 0), 50000, t0)
	if v := e.Track(Original, seg(Original, fSYN, cISN+10_000_000, 0, 64240, 0), t0+sec); v != Accept {
		t.Fatalf("syn with new isn: %v", v)
	}
	if e.Window(Original).End() != cISN+10_000_001 {
		t.Fatalf("end %d after the new syn", e.Window(Original).End())
	}
	if v := e.Track(Reply, seg(Reply, fSYNACK, sISN, cISN+10_000_001, 65160, 0), t0+2*sec); v != Accept || e.State() != StateSynRecv {
		t.Fatalf("syn-ack for the new isn: %v %v", v, e.State())
	}
}

// RSTs for a flow already closed (stacks answering segments still in flight, with older numbers)
// are forwarded: the flow is over, nothing is left to protect.
func TestWindowRSTAfterClose(t *testing.T) {
	tb, e, now := establishedFlow(t)
	cNext := cISN + 1001
	if v := e.Track(Original, seg(Original, fRST, cNext, 0, 0, 0), now+sec); v != Accept || e.State() != StateClose {
		t.Fatalf("exact rst: %v %v", v, e.State())
	}
	if v := e.Track(Reply, seg(Reply, fRST, sISN, 0, 0, 0), now+2*sec); v != Accept || tb.Stats().InvalidWindow != 0 {
		t.Fatalf("late rst on a closed flow: %v, invalid_window %d", v, tb.Stats().InvalidWindow)
	}
}
