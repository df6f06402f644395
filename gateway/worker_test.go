package gateway

import (
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/gateway/tun"
	"github.com/edgegate/edgegate/internal/pkttest"
	"github.com/edgegate/edgegate/lb"
	"github.com/edgegate/edgegate/nat"
	"github.com/edgegate/edgegate/packet"
)

var (
	tClient = netip.MustParseAddr("198.18.1.2")
	tVIP    = netip.MustParseAddr("198.18.200.10")
	tMasq   = netip.MustParseAddr("198.18.250.1")
	tBack   = netip.MustParseAddr("198.19.1.2")
)

func testRules(t testing.TB) *atomic.Pointer[nat.Rules] {
	t.Helper()
	set, err := lb.Build(lb.Spec{Scheduler: "maglev", Backends: []lb.Backend{{Addr: tBack, Weight: 1}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := nat.NewRules(nat.Spec{
		Services:   []nat.Service{{ID: 1, Name: "web", Addrs: []netip.Addr{tVIP}, Masquerade: true, Set4: set, Ports: []nat.Port{{Proto: packet.ProtoTCP, Port: 80, TargetPort: 8080}}}},
		Masquerade: []netip.Addr{tMasq}, PortLo: 1024, PortHi: 65535,
	})
	p := new(atomic.Pointer[nat.Rules])
	p.Store(r)
	return p
}

func TestWorkerTranslatesBatches(t *testing.T) {
	for _, partial := range []bool{false, true} {
		ct := conntrack.New(conntrack.Config{MaxEntries: 1024})
		tr := &nat.Translator{CT: ct}
		syn := pkttest.P{Proto: 6, Src: tClient, Dst: tVIP, Sport: 40000, Dport: 80, Flags: "S", Payload: "hello"}.Build(t)
		bad := []byte{0x45, 0, 0, 10} // truncated
		dev := tun.NewMem([][]byte{tun.MemFrame(syn, partial), tun.MemFrame(bad, false)}, true, 2)
		dev.Keep = true
		w := NewWorker(dev, tr, testRules(t), nil)
		if err := w.Step(); err != nil {
			t.Fatal(err)
		}
		if !errors.Is(w.Step(), tun.ErrClosed) {
			t.Fatal("device budget not exhausted")
		}
		if dev.Written != 1 || w.C.Forwarded.Load() != 1 {
			t.Fatalf("written %d forwarded %d, want 1", dev.Written, w.C.Forwarded.Load())
		}
		var malformed uint64
		for i := range w.C.Malformed {
			malformed += w.C.Malformed[i].Load()
		}
		if malformed != 1 {
			t.Fatalf("malformed %d, want 1", malformed)
		}
		segs, err := tun.MemSegments(dev.Kept[0])
		if err != nil || len(segs) != 1 {
			t.Fatalf("written frame: %v, %d packets", err, len(segs))
		}
		out := segs[0]
		pkttest.Verify(t, out)
		var p packet.Packet
		p.Parse(out)
		if p.Dst != tBack || p.DstPort != 8080 || p.Src != tMasq {
			t.Fatalf("partial=%v: translated to %v -> %v:%d", partial, p.Src, p.Dst, p.DstPort)
		}
	}
}

// BenchmarkWorker drives the whole worker loop (read batch, parse, lookup, translate, write batch)
// over an in-memory device with packets of established flows.
func BenchmarkWorker(b *testing.B) {
	ct := conntrack.New(conntrack.Config{MaxEntries: 1 << 16})
	tr := &nat.Translator{CT: ct}
	rules := testRules(b)
	var pkts [][]byte
	for i := 0; i < 64; i++ {
		syn := pkttest.P{Proto: 6, Src: tClient, Dst: tVIP, Sport: uint16(30000 + i), Dport: 80, Flags: "S"}.Build(b)
		now := time.Now().UnixNano()
		var p packet.Packet
		p.Parse(syn)
		if v, why := tr.Translate(&p, rules.Load(), now); v != nat.Forward {
			b.Fatal(v, why)
		}
		synack := pkttest.P{Proto: 6, Src: tBack, Dst: tMasq, Sport: 8080, Dport: p.SrcPort, Flags: "SA"}.Build(b)
		p.Parse(synack)
		if v, why := tr.Translate(&p, rules.Load(), now); v != nat.Forward {
			b.Fatal(v, why)
		}
		pkts = append(pkts, pkttest.P{Proto: 6, Src: tClient, Dst: tVIP, Sport: uint16(30000 + i), Dport: 80, Flags: "A", Payload: string(make([]byte, 1400))}.Build(b))
	}
	dev := tun.NewMem(pkts, false, -1)
	w := NewWorker(dev, tr, rules, nil)
	w.Step() // warm up
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += BatchSize {
		if err := w.Step(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if w.C.Forwarded.Load() == 0 {
		b.Fatal("nothing forwarded")
	}
}
