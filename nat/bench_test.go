package nat

import (
	"encoding/binary"
	"net/netip"
	"testing"

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
			syn := pk{proto: ProtoTCP, src: tc.client, dst: tc.vip, sport: 40000, dport: 80, flags: "S"}.build(b)
			_, _, p := f.run(b, syn)
			f.run(b, pk{proto: ProtoTCP, src: tc.back, dst: p.Src, sport: 8080, dport: p.SrcPort, flags: "SA"}.build(b))
			tmpl := pk{proto: ProtoTCP, src: tc.client, dst: tc.vip, sport: 40000, dport: 80, flags: "A", payload: string(make([]byte, 1400))}.build(b)
			buf := make([]byte, len(tmpl))
			var pkt packet.Packet
			b.ReportAllocs()
			b.SetBytes(int64(len(tmpl)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				copy(buf[:60], tmpl) // headers only: the payload is never touched
				pkt.Parse(buf)
				if v, _ := f.tr.Translate(&pkt, f.rules, f.now, false); v != Forward {
					b.Fatal("not forwarded")
				}
			}
		})
	}
}

// BenchmarkNewFlow: lookup miss, backend choice (maglev), port allocation and insert.
func BenchmarkNewFlow(b *testing.B) {
	f := newFixture(b, true, "maglev", b1, b2)
	f.tr.CT = newTable(1 << 22)
	tmpl := pk{proto: ProtoTCP, src: client, dst: vip, sport: 40000, dport: 80, flags: "S"}.build(b)
	buf := make([]byte, len(tmpl))
	var pkt packet.Packet
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		copy(buf, tmpl)
		// A distinct client address per flow (checksums are not verified here).
		binary.BigEndian.PutUint32(buf[12:], 0xc6120000+uint32(i))
		pkt.Parse(buf)
		if v, why := f.tr.Translate(&pkt, f.rules, f.now, false); v != Forward {
			b.Fatalf("flow %d: %v %v", i, v, why)
		}
		if f.tr.CT.Len() >= 1<<15 { // well below the 2 x 64512 reply tuples per masquerade address
			b.StopTimer()
			f.tr.CT = newTable(1 << 22)
			b.StartTimer()
		}
	}
}
