package synproxy

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/edgegate/edgegate/packet"
)

func TestParseMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Mode
		ok   bool
	}{{"", Auto, true}, {"auto", Auto, true}, {"on", On, true}, {"off", Off, true}, {"yes", Auto, false}} {
		m, err := ParseMode(tc.in)
		if (err == nil) != tc.ok || tc.ok && m != tc.want {
			t.Errorf("ParseMode(%q) = %v, %v", tc.in, m, err)
		}
		if tc.ok && tc.in != "" && m.String() != tc.in {
			t.Errorf("%v.String() = %q", m, m.String())
		}
	}
}

// TestGauge: AutoBurst attempts pass, the next engages the proxy for AutoHold; the bucket refills
// at AutoRate; a half-full table engages at once.
func TestGauge(t *testing.T) {
	var g Gauge
	now := t0
	for i := range AutoBurst {
		if g.SYN(now, 0) {
			t.Fatalf("attempt %d of the burst engaged the proxy", i)
		}
	}
	if !g.SYN(now, 0) || !g.Engaged(now+int64(AutoHold)-1) || g.Engaged(now+int64(AutoHold)) {
		t.Fatal("the attempt past the burst did not engage the proxy for AutoHold")
	}
	if !g.Recently(now+int64(AutoHold)+int64(CookiePeriod)) || g.Recently(now+int64(AutoHold)+MaxCookieAge*int64(CookiePeriod)) {
		t.Error("Recently does not cover the cookies' lifetime after the hold")
	}
	// After the hold, attempts at the rate pass: one per 1/AutoRate.
	now += int64(AutoHold) + int64(time.Second) // a full bucket again
	step := int64(time.Second) / AutoRate
	for i := range 10 * AutoRate {
		if g.SYN(now+int64(i)*step, 0) {
			t.Fatalf("attempt %d at the rate engaged the proxy", i)
		}
	}
	var h Gauge
	if !h.SYN(t0, AutoTableFill) {
		t.Error("a table at AutoTableFill did not engage the proxy")
	}
}

// TestAdjustQuote: an ICMP error quoting a segment sent to the client gets the backend's sequence
// number back, one quoting a client segment the client's acknowledgement number; the quoted TCP
// checksum and the ICMP checksum stay consistent.
// TestGaugeLongFlood: a flood longer than AutoHold keeps the proxy engaged (each attempt beyond
// the rate restarts the hold), so only the first burst and the bucket's refill while it drains
// pass unproxied; the hold ends AutoHold after the flood's last attempt.
func TestGaugeLongFlood(t *testing.T) {
	for _, c := range []struct {
		rate int64 // attempts per second
		d    time.Duration
	}{{100000, 3 * AutoHold}, {20000, 2 * AutoHold}, {4 * AutoRate, 2 * AutoHold}} {
		var g Gauge
		step := int64(time.Second) / c.rate
		passed := 0
		var now int64
		for i := range c.rate * int64(c.d/time.Second) {
			now = t0 + i*step
			if !g.SYN(now, 0) {
				passed++
			}
		}
		// Draining AutoBurst at rate-AutoRate takes AutoBurst/(rate-AutoRate) s, during which the
		// bucket refills by AutoRate per second.
		want := AutoBurst + int(AutoBurst*AutoRate/(c.rate-AutoRate)) + 1
		if passed > want {
			t.Errorf("%d/s for %v: %d attempts passed unproxied, want at most %d", c.rate, c.d, passed, want)
		}
		if !g.Engaged(now+int64(AutoHold)-1) || g.Engaged(now+int64(AutoHold)) {
			t.Errorf("%d/s: the hold does not end AutoHold after the last attempt", c.rate)
		}
	}
}

func TestAdjustQuote(t *testing.T) {
	c := NewConn(Proof{})
	c.seqOff = 1000
	c.state.Store(stateEstablished)
	for _, toClient := range []bool{true, false} {
		msg := make([]byte, 8+20+20)
		msg[0] = 3 // destination unreachable
		q := msg[8+20:]
		binary.BigEndian.PutUint32(q[4:], 5000)
		binary.BigEndian.PutUint32(q[8:], 7000)
		binary.BigEndian.PutUint16(q[16:], 0x1234)
		binary.BigEndian.PutUint16(msg[2:], ^packet.Checksum(msg, 0))
		qsum := packet.Checksum(q, 0)
		c.AdjustQuote(msg, 8+20, toClient)
		wantSeq, wantAck := uint32(5000), uint32(7000)
		if toClient {
			wantSeq -= 1000
		} else {
			wantAck += 1000
		}
		if s, a := binary.BigEndian.Uint32(q[4:]), binary.BigEndian.Uint32(q[8:]); s != wantSeq || a != wantAck {
			t.Errorf("toClient %v: seq %d ack %d, want %d %d", toClient, s, a, wantSeq, wantAck)
		}
		if packet.Checksum(msg, 0) != 0xffff {
			t.Errorf("toClient %v: ICMP checksum broken", toClient)
		}
		if packet.Checksum(q, 0) != qsum {
			t.Errorf("toClient %v: quoted TCP checksum not updated with the change", toClient)
		}
	}
}
