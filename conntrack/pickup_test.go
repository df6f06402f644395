package conntrack

import (
	"testing"
	"time"

	"github.com/edgegate/edgegate/packet"
)

func TestPickUpOK(t *testing.T) {
	tests := []struct {
		name string
		p    *packet.Packet
		want bool
	}{
		{"ack", tcpPkt(fACK), true},
		{"psh ack", tcpPkt(fPSHACK), true},
		{"ack+ecn", tcpPkt(fACK | packet.TCPEce), true},
		{"syn", tcpPkt(fSYN), false},
		{"syn-ack", tcpPkt(fSYNACK), false},
		{"fin-ack", tcpPkt(fFINACK), false},
		{"rst", tcpPkt(fRST), false},
		{"rst-ack", tcpPkt(fRST | fACK), false},
		{"no flags", tcpPkt(0), false},
		{"udp", udpPkt(client, vip, 1, 2), false},
		{"echo", echoPkt(false, 1), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := PickUpOK(tc.p); got != tc.want {
				t.Fatalf("PickUpOK = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestPickUpLifecycle: a flow picked up in mid-stream (either side first) is ESTABLISHED with
// the short unconfirmed timeout, assured once both sides spoke (from the client, one more packet),
// then on tcp_established; it closes like any flow.
func TestPickUpLifecycle(t *testing.T) {
	d := DefaultTimeouts()
	for _, first := range []Dir{Original, Reply} {
		t.Run(first.String(), func(t *testing.T) {
			tb := New(Config{MaxEntries: 16, Timeouts: Timeouts{TCPEstablished: time.Hour}})
			p := tcpDirPkt(first, fPSHACK)
			e := &Entry{Tuple: [2]Tuple{TupleOf(tcpDirPkt(Original, fACK)), TupleOf(tcpDirPkt(Reply, fACK))}}
			e.InitPickUp(first, p, t0)
			mustInsert(t, tb, e, t0)
			check := func(now int64, st State, assured bool, want time.Duration) {
				t.Helper()
				if e.State() != st || e.Assured() != assured {
					t.Fatalf("state %v assured %v, want %v %v", e.State(), e.Assured(), st, assured)
				}
				if got, w := e.Expires(), (now+int64(want))&^wLowMask; got != w {
					t.Fatalf("expires now+%v, want now+%v", time.Duration(got-now), want)
				}
			}
			check(t0, StateEstablished, false, d.TCPSynRecv)
			if e.SeenReply() != (first == Reply) {
				t.Fatalf("seen reply %v after a first packet %v", e.SeenReply(), first)
			}
			// Picked up from a reply, the flow is proven by the client's packet; picked up from
			// the client, by the first packet after the reply (netfilter's rule).
			byClient, byClientT := first == Reply, d.TCPSynRecv
			if byClient {
				byClientT = time.Hour
			}
			now := t0
			for _, s := range []struct {
				d       Dir
				flags   packet.TCPFlags
				st      State
				assured bool
				want    time.Duration
			}{
				{first, fACK, StateEstablished, false, d.TCPSynRecv},     // the same side again: unproven
				{first ^ 1, fACK, StateEstablished, byClient, byClientT}, // the other side answers
				{first, fPSHACK, StateEstablished, true, time.Hour},      // and the flow continues
				{Original, fFINACK, StateFinWait, true, d.TCPFinWait},
			} {
				now += sec
				if !e.Update(s.d, tcpDirPkt(s.d, s.flags), now) {
					t.Fatalf("%v %#x refused in %v", s.d, s.flags, e.State())
				}
				check(now, s.st, s.assured, s.want)
			}
		})
	}
}

// TestPickUpRefused: a segment that cannot be picked up leaves the entry uninitialised, and the
// table refuses it.
func TestPickUpRefused(t *testing.T) {
	tb := New(Config{MaxEntries: 4})
	for _, f := range []packet.TCPFlags{fSYN, fRST, fFINACK, 0} {
		e := &Entry{Tuple: [2]Tuple{TupleOf(tcpPkt(f)), TupleOf(tcpDirPkt(Reply, f))}}
		e.InitPickUp(Original, tcpPkt(f), t0)
		if _, err := tb.Insert(e, t0); err != ErrNotInit {
			t.Fatalf("flags %#x: Insert = %v, want ErrNotInit", f, err)
		}
	}
}
