package synproxy

import (
	"testing"

	"github.com/edgegate/edgegate/packet"
)

func FuzzParseOptions(f *testing.F) {
	f.Add(append(make([]byte, 12), 0xa0, 0x02, 0, 0, 0, 0, 0, 0, 2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7))
	f.Add(append(make([]byte, 12), 0x80, 0x10, 0, 0, 0, 0, 0, 0, 1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, ok := ParseOptions(packet.TCP(b))
		if !ok {
			return
		}
		end := packet.TCP(b).DataOffset()
		if o.TS && (o.tsAt < packet.TCPMinLen || o.tsAt+8 > end) || o.sackN > 0 && o.sackAt+8*o.sackN > end || o.WScale > maxWScale {
			t.Fatalf("options out of the header: %+v (header %d bytes)", o, end)
		}
	})
}

// seedPackets are valid segments of every kind the proxy handles.
func seedPackets() [][]byte {
	var out [][]byte
	for _, hs := range handshakes {
		out = append(out, hs.clientSYN(1, 2))
	}
	cl, sv := ap("198.51.100.7:1"), ap("203.0.113.10:80")
	out = append(out,
		seg{src: cl, dst: sv, seq: 2, ack: 3, flags: packet.TCPAck, opts: tsOpt(4, 5)}.build(),
		seg{src: sv, dst: cl, seq: 2, ack: 3, flags: packet.TCPAck, opts: append(tsOpt(4, 5), optNOP, optNOP, optSACK, 10, 0, 0, 0, 1, 0, 0, 0, 2)}.build(),
		seg{src: sv, dst: cl, seq: 9, ack: 2, flags: packet.TCPSyn | packet.TCPAck, opts: synOpts(1460, 3, 7, true)}.build())
	return out
}

// FuzzAnswerSYN: whatever arrives, an answer is a well-formed SYN-ACK with valid checksums.
func FuzzAnswerSYN(f *testing.F) {
	for _, b := range seedPackets() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p packet.Packet
		buf := append(make([]byte, 0, len(b)+64), b...)
		if p.Parse(buf) != packet.OK || p.Proto != packet.ProtoTCP || !p.TCPFlags.Attempt() {
			return
		}
		if !testSecret.AnswerSYN(&p, t0, 1460) {
			return
		}
		var q packet.Packet
		if r := q.Parse(p.B); r != packet.OK || !checksumsOK(&q) || q.TCPFlags&^packet.TCPEce != packet.TCPSyn|packet.TCPAck {
			t.Fatalf("answer: parse %v, flags %#x", r, q.TCPFlags)
		}
		if _, ok := ParseOptions(q.TCP()); !ok {
			t.Fatal("answer's options do not parse")
		}
	})
}

// FuzzAdjust: adjusting any segment keeps a valid checksum valid; the cookie ACK check and the
// splice never panic on arbitrary input.
func FuzzAdjust(f *testing.F) {
	for _, b := range seedPackets() {
		f.Add(b, uint32(12345), uint32(99), true, uint8(3))
	}
	f.Fuzz(func(t *testing.T, b []byte, seqOff, tsOff uint32, fromClient bool, shifts uint8) {
		var p packet.Packet
		buf := append(make([]byte, 0, len(b)+64), b...)
		if p.Parse(buf) != packet.OK || p.Proto != packet.ProtoTCP || p.IsFragment {
			return
		}
		pr, _ := testSecret.CheckACK(&p, t0)
		NewConn(pr).ServerSYNACK(&p, make([]byte, 2*ExtraRoom))
		if p.Parse(buf) != packet.OK {
			return
		}
		valid := checksumsOK(&p)
		c := Conn{seqOff: seqOff, tsOff: tsOff, tsAdj: true, origShift: shifts & 3, replyFrom: shifts >> 2 & 15, replyTo: AdvertisedWScale}
		c.state.Store(stateEstablished)
		c.Adjust(&p, fromClient)
		if valid && !checksumsOK(&p) {
			t.Fatal("Adjust broke the checksum")
		}
	})
}
