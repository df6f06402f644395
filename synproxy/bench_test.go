package synproxy

import (
	"testing"

	"github.com/edgegate/edgegate/packet"
)

func BenchmarkAnswerSYN(b *testing.B) {
	syn := handshakes[0].clientSYN(1, 2)
	buf := make([]byte, len(syn), len(syn)+64)
	var p packet.Packet
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, syn)
		p.Parse(buf[:len(syn)])
		if !testSecret.AnswerSYN(&p, t0, 1460) {
			b.Fatal("refused")
		}
	}
}

func BenchmarkCheckACK(b *testing.B) {
	hs := handshakes[0]
	p := parse(b, hs.clientSYN(1, 2))
	testSecret.AnswerSYN(p, t0, 1460)
	o, _ := ParseOptions(p.TCP())
	ack := seg{src: hs.client, dst: hs.service, seq: 2, ack: p.TCP().Seq() + 1, flags: packet.TCPAck, opts: tsOpt(3, o.TSVal)}.build()
	q := parse(b, ack)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := testSecret.CheckACK(q, t0); !ok {
			b.Fatal("invalid")
		}
	}
}

// BenchmarkAdjust: one data segment with timestamps each way.
func BenchmarkAdjust(b *testing.B) {
	cl, sv := ap("198.51.100.7:1"), ap("203.0.113.10:80")
	data := parse(b, seg{src: sv, dst: cl, seq: 2, ack: 3, flags: packet.TCPAck, opts: tsOpt(4, 5), payload: make([]byte, 1400)}.build())
	ack := parse(b, seg{src: cl, dst: sv, seq: 2, ack: 3, flags: packet.TCPAck, opts: tsOpt(4, 5)}.build())
	c := &Conn{seqOff: 77, tsOff: 5, tsAdj: true, replyFrom: 9, replyTo: 7}
	c.state.Store(stateEstablished)
	b.ReportAllocs()
	for b.Loop() {
		c.Adjust(data, false)
		c.Adjust(ack, true)
	}
}
