package conntrack

import (
	"github.com/edgegate/edgegate/packet"

	"testing"
)

// FuzzStateMachine feeds random packet sequences to one flow: data[0] picks the protocol
// (TCP, UDP, ICMP echo, TCP picked up in mid-stream), every further byte is a packet: bit 7 the direction, the rest TCP
// flags (for ICMP: bit 0 echo reply instead of request, bit 1 an ICMP error). Nothing may
// panic, an INVALID packet must leave the entry untouched, and the state, flags and expiry
// must stay consistent with the protocol.
func FuzzStateMachine(f *testing.F) {
	f.Add([]byte{0, 0x02, 0x92, 0x10, 0x11, 0x90, 0x91, 0x10}) // handshake, client closes
	f.Add([]byte{0, 0x02, 0x94})                               // refused
	f.Add([]byte{0, 0x02, 0x82, 0x12, 0x92, 0x10})             // simultaneous open
	f.Add([]byte{0, 0x02, 0x92, 0x10, 0x04, 0x02, 0x92, 0x10}) // RST, re-open
	f.Add([]byte{1, 0x00, 0x80, 0x00})                         // UDP
	f.Add([]byte{2, 0x00, 0x81, 0x02})                         // ICMP echo, reply, error
	f.Add([]byte{0, 0x03, 0x00, 0xff, 0x7f})                   // garbage flags
	f.Add([]byte{3, 0x18, 0x90, 0x10, 0x11, 0x91})             // picked up, confirmed, closed
	f.Add([]byte{4, 0x02, 0x92, 0x10, 0x18, 0x04, 0x02, 0x14}) // varied sequence numbers, RSTs
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		var first = tcpPkt(fSYN)
		switch data[0] % 4 {
		case 1:
			first = udpPkt(client, vip, 40000, 53)
		case 2:
			first = echoPkt(false, 40000)
		case 3:
			first = tcpPkt(fACK) // picked up in mid-stream
		}
		proto := first.Proto
		tb := New(Config{MaxEntries: 4})
		e := natEntry(first, 50000, t0)
		if data[0]%4 == 3 {
			e.InitPickUp(Original, first, t0)
		}
		mustInsert(t, tb, e, t0)
		now := t0
		for i, b := range data[1:] {
			now += sec
			d := Dir(b >> 7)
			p := *first
			if d == Reply {
				p.Src, p.Dst, p.SrcPort, p.DstPort = backend, masq, 8080, 50000
			}
			switch proto {
			case packet.ProtoTCP:
				p.TCPFlags = packet.TCPFlags(b & 0x7f)
				if data[0]&4 != 0 {
					// Sequence numbers from the data too: small steps stay in the window,
					// large ones leave it.
					p.Seq = uint32(i) * uint32(b) * 4099
					p.Ack = uint32(i) * uint32(b>>1) * 257
					p.Window, p.PayloadLen = uint16(b)<<6, int(b&0x0f)*100
				}
			case packet.ProtoICMP:
				if b&1 != 0 {
					p.ICMPType = 0
				}
				p.IsICMPError = b&2 != 0
			}
			before := e.word.Load()
			v := e.Track(d, &p, now)
			ok := v == Accept
			w := e.word.Load()
			if !ok && w != before {
				t.Fatalf("packet %d: %v but the entry changed %#x -> %#x", i, v, before, w)
			}
			if v == OutOfWindow && p.TCPFlags&packet.TCPRst == 0 {
				t.Fatalf("packet %d: flags %#x dropped as out of window: only RSTs are", i, p.TCPFlags)
			}
			st := e.State()
			switch proto {
			case packet.ProtoTCP:
				if st < StateSynSent || st > StateSynSent2 {
					t.Fatalf("packet %d: TCP state %v", i, st)
				}
			default:
				if st != StateUnreplied && st != StateReplied {
					t.Fatalf("packet %d: state %v", i, st)
				}
				if (st == StateReplied) != e.SeenReply() {
					t.Fatalf("packet %d: state %v but seen reply %v", i, st, e.SeenReply())
				}
			}
			if e.Assured() && !e.SeenReply() {
				t.Fatalf("packet %d: assured without a reply", i)
			}
			if proto == packet.ProtoICMP && e.Assured() {
				t.Fatalf("packet %d: ICMP flow assured", i)
			}
			if exp := e.Expires(); exp > now+int64(DefaultTimeouts().TCPEstablished) {
				t.Fatalf("packet %d: expiry %d beyond the longest timeout", i, exp)
			}
			if ok && w != before {
				// A written update's expiry is now + the new state's timeout (or now: killed).
				want := now + e.sh.timeoutOf(proto, st, e.word.Load())
				if exp := e.Expires(); exp != want&^wLowMask && exp != now&^wLowMask {
					t.Fatalf("packet %d: state %v expires %d, want %d", i, st, exp, want)
				}
			}
			if got, _ := tb.Lookup(&e.Tuple[d], now); got != nil && got != e {
				t.Fatalf("packet %d: Lookup found another entry", i)
			}
		}
	})
}
