package conntrack

import (
	"github.com/edgegate/edgegate/packet"

	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/puzpuzpuz/xsync/v4"
)

// benchFlows makes n distinct UDP flow entries (client i -> vip:53, masqueraded), initialised.
func benchFlows(n int, base uint32) []*Entry {
	p := udpPkt(client, vip, 1, 53)
	es := make([]*Entry, n)
	for i := range es {
		v := base + uint32(i)
		src := netip.AddrFrom4([4]byte{198, 18, byte(v >> 16), byte(v >> 8)})
		o := MakeTuple(packet.ProtoUDP, src, vip, uint16(v), 53)
		r := MakeTuple(packet.ProtoUDP, backend, masq, 8080, uint16(v))
		r.Dst[13] = byte(v >> 16) // spread masquerade addresses so reply tuples stay unique
		r.Dst[14] = byte(v >> 8)
		e := &Entry{Tuple: [2]Tuple{o, r}}
		e.Init(p, t0)
		es[i] = e
	}
	return es
}

func BenchmarkLookup(b *testing.B) {
	const n = 100_000
	tb := New(Config{MaxEntries: 2 * n})
	es := benchFlows(n, 0)
	for _, e := range es {
		mustInsert(b, tb, e, t0)
	}
	keys := make([]Tuple, 0, 2*n)
	for _, e := range es {
		keys = append(keys, e.Tuple[Original], e.Tuple[Reply])
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if e, _ := tb.Lookup(&keys[i], t0); e == nil {
			b.Fatal("miss")
		}
		i += 7919 // a stride that leaves the cache, like real traffic
		if i >= len(keys) {
			i -= len(keys)
		}
	}
}

// BenchmarkUpdate is the per-packet state update of a known flow: "batch" is packets sharing
// one batch timestamp (the expiry is current, nothing is written), "refresh" moves the clock a
// second per packet (one CAS each), "tcp" an ESTABLISHED flow's ACKs with refreshes.
func BenchmarkUpdate(b *testing.B) {
	e := benchFlows(1, 0)[0]
	p := udpPkt(backend, masq, 8080, e.Tuple[Reply].DstPort)
	b.Run("batch", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e.Update(Reply, p, t0)
		}
	})
	b.Run("refresh", func(b *testing.B) {
		b.ReportAllocs()
		now := t0
		for b.Loop() {
			now += sec
			e.Update(Reply, p, now)
		}
	})
	b.Run("tcp", func(b *testing.B) {
		te := natEntry(tcpPkt(fSYN), 50000, t0)
		te.Update(Reply, tcpDirPkt(Reply, fSYNACK), t0)
		te.Update(Original, tcpDirPkt(Original, fACK), t0)
		ack := tcpDirPkt(Original, fPSHACK)
		b.ReportAllocs()
		now := t0
		for b.Loop() {
			now += sec
			if !te.Update(Original, ack, now) {
				b.Fatal("ACK refused")
			}
		}
	})
}

// flowTable is what BenchmarkFlowTableParallel compares: a two-key (both directions) flow
// index with lookup, insert and delete by original tuple. Like Table.Lookup, the map
// variants' lookups treat an expired entry as absent (a conntrack must; it also reads the
// entry, which the data path does next anyway).
type flowTable interface {
	lookup(k *Tuple) *Entry
	insert(e *Entry)
	delete(k *Tuple)
}

type edgegateTable struct{ t *Table }

func (m edgegateTable) lookup(k *Tuple) *Entry { e, _ := m.t.Lookup(k, t0); return e }
func (m edgegateTable) insert(e *Entry)        { m.t.Insert(e, t0) }
func (m edgegateTable) delete(k *Tuple) {
	if e, _ := m.t.Lookup(k, t0); e != nil {
		m.t.Delete(e)
	}
}

type syncMapTable struct{ m *sync.Map }

func (m syncMapTable) lookup(k *Tuple) *Entry {
	if v, ok := m.m.Load(*k); ok {
		return live(v.(*Entry))
	}
	return nil
}
func (m syncMapTable) insert(e *Entry) {
	if _, loaded := m.m.LoadOrStore(e.Tuple[Original], e); !loaded {
		m.m.Store(e.Tuple[Reply], e)
	}
}
func (m syncMapTable) delete(k *Tuple) {
	if v, ok := m.m.LoadAndDelete(*k); ok {
		m.m.Delete(v.(*Entry).Tuple[Reply])
	}
}

type mutexMapTable struct {
	mu *sync.RWMutex
	m  map[Tuple]*Entry
}

func (m mutexMapTable) lookup(k *Tuple) *Entry {
	m.mu.RLock()
	e := m.m[*k]
	m.mu.RUnlock()
	return live(e)
}
func (m mutexMapTable) insert(e *Entry) {
	m.mu.Lock()
	if m.m[e.Tuple[Original]] == nil {
		m.m[e.Tuple[Original]] = e
		m.m[e.Tuple[Reply]] = e
	}
	m.mu.Unlock()
}
func (m mutexMapTable) delete(k *Tuple) {
	m.mu.Lock()
	if e := m.m[*k]; e != nil {
		delete(m.m, e.Tuple[Original])
		delete(m.m, e.Tuple[Reply])
	}
	m.mu.Unlock()
}

type xsyncTable struct{ m *xsync.Map[Tuple, *Entry] }

func (m xsyncTable) lookup(k *Tuple) *Entry { e, _ := m.m.Load(*k); return live(e) }

// live is the map variants' expiry check.
func live(e *Entry) *Entry {
	if e == nil || e.Expires() <= t0 {
		return nil
	}
	return e
}
func (m xsyncTable) insert(e *Entry) {
	if _, loaded := m.m.LoadOrStore(e.Tuple[Original], e); !loaded {
		m.m.Store(e.Tuple[Reply], e)
	}
}
func (m xsyncTable) delete(k *Tuple) {
	if e, ok := m.m.LoadAndDelete(*k); ok {
		m.m.Delete(e.Tuple[Reply])
	}
}

// BenchmarkFlowTableParallel compares the table with general concurrent maps on the same
// keys in the same run: 100k flows preloaded (both directions indexed), all goroutines doing
// 98% lookups of random preloaded tuples (either direction), 1% inserts and 1% deletes of
// flows from a separate churn set. Inserts allocate a fresh Entry in every variant.
func BenchmarkFlowTableParallel(b *testing.B) {
	const n, churn = 100_000, 10_000
	flows := benchFlows(n, 0)
	keys := make([]Tuple, 0, 2*n)
	for _, e := range flows {
		keys = append(keys, e.Tuple[Original], e.Tuple[Reply])
	}
	churnTuples := benchFlows(churn, 1<<20)
	p := udpPkt(client, vip, 1, 53)
	variants := []struct {
		name string
		make func() flowTable
	}{
		{"edgegate", func() flowTable { return edgegateTable{New(Config{MaxEntries: 2 * n})} }},
		{"syncmap", func() flowTable { return syncMapTable{new(sync.Map)} }},
		{"mutexmap", func() flowTable {
			return mutexMapTable{new(sync.RWMutex), make(map[Tuple]*Entry, 2*(n+churn))}
		}},
		{"xsync", func() flowTable {
			return xsyncTable{xsync.NewMap[Tuple, *Entry](xsync.WithPresize(2 * (n + churn)))}
		}},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			ft := v.make()
			for _, e := range benchFlows(n, 0) { // fresh entries: a table owns its entries
				ft.insert(e)
			}
			var seed atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				x := seed.Add(0x9e3779b97f4a7c15) | 1
				for pb.Next() {
					x ^= x << 13 // xorshift64
					x ^= x >> 7
					x ^= x << 17
					switch r := x >> 32; r % 100 {
					case 0:
						c := &churnTuples[(r>>8)%churn].Tuple
						e := &Entry{Tuple: *c}
						e.Init(p, t0)
						ft.insert(e)
					case 1:
						ft.delete(&churnTuples[(r>>8)%churn].Tuple[Original])
					default:
						if ft.lookup(&keys[(r>>8)%uint64(len(keys))]) == nil {
							b.Error("miss")
							return
						}
					}
				}
			})
		})
	}
}

// bytesPerFlow inserts n flows into a table sized for them and returns the heap growth per
// flow, bucket array included.
func bytesPerFlow(tb testing.TB, n int) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	t := New(Config{MaxEntries: n})
	p := udpPkt(client, vip, 1, 53)
	for i := range n {
		v := uint32(i)
		o := MakeTuple(packet.ProtoUDP, netip.AddrFrom4([4]byte{10, byte(v >> 16), byte(v >> 8), byte(v)}), vip, 1000, 53)
		r := MakeTuple(packet.ProtoUDP, backend, masq, 8080, 1000)
		r.Dst[13], r.Dst[14], r.Dst[15] = byte(v>>16), byte(v>>8), byte(v)
		e := &Entry{Tuple: [2]Tuple{o, r}}
		e.Init(p, t0)
		if _, err := t.Insert(e, t0); err != nil {
			tb.Fatalf("insert %d: %v", i, err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if t.Len() != n {
		tb.Fatalf("len %d, want %d", t.Len(), n)
	}
	runtime.KeepAlive(t)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// BenchmarkBytesPerFlow reports the memory cost of 1M tracked flows (target <= 256 B/flow;
// netfilter uses about 300).
func BenchmarkBytesPerFlow(b *testing.B) {
	var bpf float64
	for b.Loop() {
		bpf = bytesPerFlow(b, 1<<20)
	}
	b.ReportMetric(bpf, "bytes/flow")
}

func TestBytesPerFlow(t *testing.T) {
	if testing.Short() {
		t.Skip("inserts 64k flows")
	}
	if bpf := bytesPerFlow(t, 1<<16); bpf > 256 {
		t.Fatalf("%.1f bytes per flow, want <= 256", bpf)
	} else {
		t.Logf("%.1f bytes per flow", bpf)
	}
}

// BenchmarkSweep is one background Sweep pass over a table of 1M live flows (nothing expired):
// the per-second cost of expiry.
func BenchmarkSweep(b *testing.B) {
	const n = 1 << 20
	tb := New(Config{MaxEntries: n})
	for _, e := range benchFlows(n, 0) {
		mustInsert(b, tb, e, t0)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if got := tb.Sweep(t0); got != 0 {
			b.Fatalf("swept %d live flows", got)
		}
	}
}
