package nat

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/edgegate/edgegate/internal/pkttest"
	"github.com/edgegate/edgegate/packet"
)

// BenchmarkEstablished: parse, lookup and translate one packet of an established flow.
func BenchmarkEstablished(b *testing.B) {
	for _, tc := range []struct {
		name              string
		client, vip, back netip.Addr
	}{{"v4", client, vip, b1}, {"v6", client6, vip6, b6}} {
		b.Run(tc.name, func(b *testing.B) {
			f := newFixture(b, true, "maglev", b1, b6)
			syn := pkttest.P{Proto: packet.ProtoTCP, Src: tc.client, Dst: tc.vip, Sport: 40000, Dport: 80, Flags: "S"}.Build(b)
			_, _, p := f.run(b, syn)
			f.run(b, pkttest.P{Proto: packet.ProtoTCP, Src: tc.back, Dst: p.Src, Sport: 8080, Dport: p.SrcPort, Flags: "SA"}.Build(b))
			tmpl := pkttest.P{Proto: packet.ProtoTCP, Src: tc.client, Dst: tc.vip, Sport: 40000, Dport: 80, Flags: "A", Payload: string(make([]byte, 1400))}.Build(b)
			buf := make([]byte, len(tmpl))
			var pkt packet.Packet
			b.ReportAllocs()
			b.SetBytes(int64(len(tmpl)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				copy(buf[:60], tmpl) // headers only: the payload is never touched
				pkt.Parse(buf)
				if v, _ := f.tr.Translate(&pkt, f.rules, f.now); v != Forward {
					b.Fatal("not forwarded")
				}
			}
		})
	}
}

// BenchmarkNewFlow: lookup miss, backend choice (maglev), port allocation and insert.
func BenchmarkNewFlow(b *testing.B) {
	f := newFixture(b, true, "maglev", b1, b2)
	f.tr.CT = newTable(1 << 16)
	tmpl := pkttest.P{Proto: packet.ProtoTCP, Src: client, Dst: vip, Sport: 40000, Dport: 80, Flags: "S"}.Build(b)
	buf := make([]byte, len(tmpl))
	var pkt packet.Packet
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		copy(buf, tmpl)
		// A distinct client address per flow (checksums are not verified here).
		binary.BigEndian.PutUint32(buf[12:], 0xc6120000+uint32(i))
		pkt.Parse(buf)
		if v, why := f.tr.Translate(&pkt, f.rules, f.now); v != Forward {
			b.Fatalf("flow %d: %v %v", i, v, why)
		}
		if f.tr.CT.Len() >= 1<<15 { // well below the 2 x 64512 reply tuples per masquerade address
			b.StopTimer()
			f.tr.CT = newTable(1 << 16)
			b.StartTimer()
		}
	}
}
