package conntrack

import (
	"sync"
	"testing"
	"time"

	"github.com/edgegate/edgegate/packet"
)

type step struct {
	d       Dir
	flags   packet.TCPFlags
	ok      bool  // Update's verdict
	state   State // state after the packet
	assured bool
}

func TestTCPStateMachine(t *testing.T) {
	o, r := Original, Reply
	handshake := []step{
		{r, fSYNACK, true, StateSynRecv, false},
		{o, fACK, true, StateEstablished, true},
	}
	seq := func(parts ...[]step) []step {
		var s []step
		for _, p := range parts {
			s = append(s, p...)
		}
		return s
	}
	tests := []struct {
		name  string
		steps []step // after the initial SYN (Init: SYN_SENT)
	}{
		{"handshake", seq(handshake, []step{{r, fPSHACK, true, StateEstablished, true}, {o, fPSHACK, true, StateEstablished, true}})},
		{"client closes first", seq(handshake, []step{
			{o, fFINACK, true, StateFinWait, true},
			{r, fACK, true, StateCloseWait, true},
			{r, fFINACK, true, StateLastAck, true},
			{o, fACK, true, StateTimeWait, true},
			{o, fACK, true, StateTimeWait, true}, // retransmitted last ACK
		})},
		{"server closes first", seq(handshake, []step{
			{r, fFINACK, true, StateFinWait, true},
			{o, fACK, true, StateCloseWait, true},
			{o, fFINACK, true, StateLastAck, true},
			{r, fACK, true, StateTimeWait, true},
		})},
		{"simultaneous close", seq(handshake, []step{
			{o, fFINACK, true, StateFinWait, true},
			{r, fFINACK, true, StateLastAck, true},
			{o, fACK, true, StateTimeWait, true},
		})},
		{"rst from client when established", seq(handshake, []step{{o, fRST, true, StateClose, true}})},
		{"rst+ack from server when established", seq(handshake, []step{{r, fRST | fACK, true, StateClose, true}})},
		{"rst from server refuses the syn", []step{{r, fRST | fACK, true, StateClose, false}}},
		{"syn retransmitted", []step{{o, fSYN, true, StateSynSent, false}, {r, fSYNACK, true, StateSynRecv, false}}},
		{"simultaneous open", []step{
			{r, fSYN, true, StateSynSent2, false},
			{o, fSYNACK, true, StateSynRecv, false},
			{r, fSYNACK, true, StateSynRecv, false}, // ignored
			{o, fACK, true, StateEstablished, true},
		}},
		{"ack from reply side before syn-ack is ignored", []step{{r, fACK, true, StateSynSent, false}}},
		{"ack from client before syn-ack is invalid", []step{{o, fACK, false, StateSynSent, false}}},
		{"fin before syn-ack is invalid", []step{{o, fFINACK, false, StateSynSent, false}}},
		{"syn-ack from the client is invalid", []step{{o, fSYNACK, false, StateSynSent, false}}},
		{"syn+fin is invalid", seq(handshake, []step{{o, packet.TCPSyn | packet.TCPFin, false, StateEstablished, true}})},
		{"no flags is invalid", seq(handshake, []step{{o, 0, false, StateEstablished, true}})},
		{"fin without ack is invalid", seq(handshake, []step{{r, packet.TCPFin, false, StateEstablished, true}})},
		{"syn+rst is invalid", []step{{r, packet.TCPSyn | packet.TCPRst, false, StateSynSent, false}}},
		{"syn from server when established is invalid", seq(handshake, []step{{r, fSYN, false, StateEstablished, true}})},
		{"syn from client when established is ignored", seq(handshake, []step{{o, fSYN, true, StateEstablished, true}})},
		{"late syn-ack when established is ignored", seq(handshake, []step{{r, fSYNACK, true, StateEstablished, true}})},
		{"syn re-opens time_wait", seq(handshake, []step{
			{o, fFINACK, true, StateFinWait, true},
			{r, fFINACK, true, StateLastAck, true},
			{o, fACK, true, StateTimeWait, true},
			{o, fSYN, true, StateSynSent, false},
			{r, fSYNACK, true, StateSynRecv, false},
			{o, fACK, true, StateEstablished, true},
		})},
		{"syn re-opens close", seq(handshake, []step{
			{o, fRST, true, StateClose, true},
			{o, fSYN, true, StateSynSent, false},
		})},
		{"reply syn on time_wait is invalid", seq(handshake, []step{
			{o, fFINACK, true, StateFinWait, true},
			{r, fFINACK, true, StateLastAck, true},
			{o, fACK, true, StateTimeWait, true},
			{r, fSYN, false, StateTimeWait, true},
		})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := natEntry(tcpPkt(fSYN), 50000, t0)
			if got := e.State(); got != StateSynSent {
				t.Fatalf("after Init: state %v, want syn_sent", got)
			}
			now := t0
			for i, s := range tc.steps {
				now += sec
				before := e.word.Load()
				ok := e.Update(s.d, tcpDirPkt(s.d, s.flags), now)
				if ok != s.ok || e.State() != s.state || e.Assured() != s.assured {
					t.Fatalf("step %d (%v flags %#x): ok=%v state=%v assured=%v; want %v %v %v",
						i, s.d, s.flags, ok, e.State(), e.Assured(), s.ok, s.state, s.assured)
				}
				if !ok && e.word.Load() != before {
					t.Fatalf("step %d: INVALID packet changed the entry", i)
				}
			}
		})
	}
}

func TestTCPTimeouts(t *testing.T) {
	tb := New(Config{MaxEntries: 16, Timeouts: Timeouts{TCPEstablished: time.Hour, TCPTimeWait: 5 * time.Second}})
	e := natEntry(tcpPkt(fSYN), 50000, t0)
	mustInsert(t, tb, e, t0)
	d := DefaultTimeouts()
	check := func(now int64, want time.Duration) {
		t.Helper()
		if got, w := e.Expires(), (now+int64(want))&^wLowMask; got != w {
			t.Fatalf("state %v: expires %d, want %d (now+%v)", e.State(), got, w, want)
		}
	}
	check(t0, d.TCPSynSent)
	steps := []struct {
		d     Dir
		flags packet.TCPFlags
		want  time.Duration
	}{
		{Reply, fSYNACK, d.TCPSynRecv},
		{Original, fACK, time.Hour}, // configured
		{Original, fFINACK, d.TCPFinWait},
		{Reply, fACK, d.TCPCloseWait},
		{Reply, fFINACK, d.TCPLastAck},
		{Original, fACK, 5 * time.Second}, // configured
		{Original, fSYN, d.TCPSynSent},    // re-open
		{Reply, fSYNACK, d.TCPSynRecv},
		{Original, fRST, d.TCPClose}, // reply seen: CLOSE keeps its timeout
	}
	now := t0
	for _, s := range steps {
		now += 10 * sec
		if !e.Update(s.d, tcpDirPkt(s.d, s.flags), now) {
			t.Fatalf("%v flags %#x refused in %v", s.d, s.flags, e.State())
		}
		check(now, s.want)
	}

	// An ignored packet neither moves the state nor refreshes the timeout.
	syn2 := tcpPkt(fSYN)
	syn2.SrcPort++
	e2 := natEntry(syn2, 50001, t0)
	mustInsert(t, tb, e2, t0)
	exp := e2.Expires()
	if !e2.Update(Reply, tcpDirPkt(Reply, fACK), t0+50*sec) || e2.Expires() != exp {
		t.Fatalf("ignored ACK: expires %d, want unchanged %d", e2.Expires(), exp)
	}

	// A RST before any reply kills the flow at once (connection refused).
	syn3 := tcpPkt(fSYN)
	syn3.SrcPort += 2
	e3 := natEntry(syn3, 50002, t0)
	mustInsert(t, tb, e3, t0)
	rst := tcpDirPkt(Reply, fRST|fACK)
	rst.DstPort = 50002
	if !e3.Update(Reply, rst, t0+sec) {
		t.Fatal("RST refused")
	}
	if got, _ := tb.Lookup(&e3.Tuple[Original], t0+sec); got != nil {
		t.Fatal("refused flow still found")
	}
}

func TestUDPAndICMPStates(t *testing.T) {
	tb := New(Config{MaxEntries: 16})
	p := udpPkt(client, vip, 5353, 53)
	e := natEntry(p, 50000, t0)
	mustInsert(t, tb, e, t0)
	if e.State() != StateUnreplied || e.Assured() || e.Expires() != (t0+30*sec)&^wLowMask {
		t.Fatalf("new UDP: %v assured=%v expires=%d", e.State(), e.Assured(), e.Expires())
	}
	if !e.Update(Original, p, t0+10*sec) || e.State() != StateUnreplied || e.Expires() != (t0+40*sec)&^wLowMask {
		t.Fatalf("UDP resend: %v expires=%d", e.State(), e.Expires())
	}
	rp := udpPkt(backend, masq, 8080, 50000)
	// The first reply is not enough (netfilter: traffic must go on after the stream delay).
	if !e.Update(Reply, rp, t0+11*sec) || e.State() != StateReplied || e.Assured() || !e.SeenReply() ||
		e.Expires() != (t0+41*sec)&^wLowMask {
		t.Fatalf("UDP reply: %v assured=%v expires=%d", e.State(), e.Assured(), e.Expires())
	}
	if !e.Update(Original, p, t0+20*sec) || !e.Assured() || e.Expires() != (t0+140*sec)&^wLowMask {
		t.Fatalf("UDP after reply: assured=%v expires=%d, want stream timeout", e.Assured(), e.Expires())
	}
	// A TCP packet cannot belong to a UDP flow.
	if e.Update(Original, tcpPkt(fACK), t0+21*sec) {
		t.Fatal("TCP packet accepted for a UDP flow")
	}

	ping := echoPkt(false, 77)
	ie := natEntry(ping, 50001, t0)
	mustInsert(t, tb, ie, t0)
	if ie.State() != StateUnreplied || ie.Expires() != (t0+30*sec)&^wLowMask {
		t.Fatalf("new echo: %v expires=%d", ie.State(), ie.Expires())
	}
	if ie.Update(Original, echoPkt(true, 77), t0+sec) {
		t.Fatal("echo reply accepted in the original direction")
	}
	pong := pkt(packet.ProtoICMP, backend, masq, 0, 50001)
	if !ie.Update(Reply, pong, t0+2*sec) || ie.State() != StateReplied || ie.Assured() {
		t.Fatalf("echo reply: %v assured=%v", ie.State(), ie.Assured())
	}
	icmpErr := pkt(packet.ProtoICMP, backend, masq, 0, 0)
	icmpErr.ICMPType, icmpErr.IsICMPError = 3, true
	before := e.word.Load()
	if !e.Update(Reply, icmpErr, t0+30*sec) || e.word.Load() != before {
		t.Fatal("ICMP error quoting the flow must be accepted without a state change")
	}
	if st := tb.Stats(); st.Invalid != 2 {
		t.Fatalf("Invalid = %d, want 2", st.Invalid)
	}
}

func TestNewFlowOK(t *testing.T) {
	echo6 := pkt(packet.ProtoICMPv6, client6, vip6, 9, 0)
	echo6.ICMPType = 128
	echoReply6 := pkt(packet.ProtoICMPv6, vip6, client6, 0, 9)
	echoReply6.ICMPType = 129
	unreach := echoPkt(false, 1)
	unreach.ICMPType, unreach.IsICMPError = 3, true
	tests := []struct {
		name string
		p    *packet.Packet
		want bool
	}{
		{"tcp syn", tcpPkt(fSYN), true},
		{"tcp syn+ecn", tcpPkt(fSYN | packet.TCPEce | packet.TCPCwr), true},
		{"tcp syn-ack", tcpPkt(fSYNACK), false},
		{"tcp ack", tcpPkt(fACK), false},
		{"tcp rst", tcpPkt(fRST), false},
		{"tcp syn+fin", tcpPkt(packet.TCPSyn | packet.TCPFin), false},
		{"tcp no flags", tcpPkt(0), false},
		{"udp", udpPkt(client, vip, 1, 2), true},
		{"echo request", echoPkt(false, 1), true},
		{"echo reply", echoPkt(true, 1), false},
		{"echo request v6", echo6, true},
		{"echo reply v6", echoReply6, false},
		{"icmp error", unreach, false},
		{"sctp", pkt(132, client, vip, 1, 2), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := NewFlowOK(tc.p); got != tc.want {
				t.Fatalf("NewFlowOK = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestStateString(t *testing.T) {
	for s := StateNone; s < numStates; s++ {
		if s.String() == "" || s.String() == "invalid" {
			t.Fatalf("state %d has no name", s)
		}
	}
	if State(200).String() != "invalid" || StateTimeWait.String() != "time_wait" {
		t.Fatal("unexpected state names")
	}
}

// TestConcurrentUpdate: workers updating one entry at once must not lose transitions (the
// state word is CAS-updated). Both FINs are applied amid ACKs from both sides, so the flow must
// end in LAST_ACK or TIME_WAIT, never stuck before the second FIN.
func TestConcurrentUpdate(t *testing.T) {
	for round := range 1000 {
		e := natEntry(tcpPkt(fSYN), 50000, t0)
		e.Update(Reply, tcpDirPkt(Reply, fSYNACK), t0)
		e.Update(Original, tcpDirPkt(Original, fACK), t0)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := range 4 {
			wg.Go(func() {
				d := Dir(g & 1)
				<-start
				for i := range 200 {
					flags := packet.TCPFlags(fACK)
					if g < 2 && i == 100 {
						flags = fFINACK
					}
					e.Update(d, tcpDirPkt(d, flags), t0+int64(i)*sec)
				}
			})
		}
		close(start)
		wg.Wait()
		if st := e.State(); st != StateLastAck && st != StateTimeWait {
			t.Fatalf("round %d: state %v after FINs from both sides", round, st)
		}
	}
}

// TestUDPStreamDelay: as netfilter, a UDP flow is assured only by traffic after UDPStreamDelay
// from its creation, a reply having been seen; a quick query/answer exchange is not.
func TestUDPStreamDelay(t *testing.T) {
	const ms = sec / 1000
	delay := int64(UDPStreamDelay)
	for _, tc := range []struct {
		name string
		pkts []struct {
			d  Dir
			at int64
		} // after creation at t0
		assured bool
	}{
		{"one exchange", []struct {
			d  Dir
			at int64
		}{{Reply, 5 * ms}}, false},
		{"chatty within the delay", []struct {
			d  Dir
			at int64
		}{{Reply, 5 * ms}, {Original, 900 * ms}, {Reply, 1900 * ms}}, false},
		{"late first reply", []struct {
			d  Dir
			at int64
		}{{Reply, delay + 500*ms}}, false},
		{"one way only after the delay", []struct {
			d  Dir
			at int64
		}{{Original, delay + 500*ms}, {Original, delay + 1500*ms}}, false},
		{"both ways, then traffic after the delay", []struct {
			d  Dir
			at int64
		}{{Reply, 5 * ms}, {Original, delay + 10*ms}}, true},
		{"reply after the delay, then more", []struct {
			d  Dir
			at int64
		}{{Reply, delay + 10*ms}, {Reply, delay + 20*ms}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := New(Config{MaxEntries: 16})
			p := udpPkt(client, vip, 5353, 53)
			e := natEntry(p, 50000, t0)
			mustInsert(t, tb, e, t0)
			last := t0
			for _, x := range tc.pkts {
				q := p
				if x.d == Reply {
					q = udpPkt(backend, masq, 8080, 50000)
				}
				last = t0 + x.at
				if !e.Update(x.d, q, last) {
					t.Fatalf("packet at +%d refused", x.at)
				}
			}
			timeout := 30 * sec
			if tc.assured {
				timeout = 120 * sec
			}
			if e.Assured() != tc.assured || e.Expires() != (last+timeout)&^wLowMask {
				t.Fatalf("assured=%v expires=+%v; want assured=%v, +%v", e.Assured(),
					time.Duration(e.Expires()-last), tc.assured, time.Duration(timeout))
			}
		})
	}
}
