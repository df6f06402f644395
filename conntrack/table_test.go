package conntrack

import (
	"time"

	"github.com/edgegate/edgegate/packet"

	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"
)

func TestEntrySize(t *testing.T) {
	// One allocation of the 176-byte size class per flow; growing past it costs 16+ bytes.
	if s := unsafe.Sizeof(Entry{}); s > 176 {
		t.Fatalf("sizeof(Entry) = %d, want <= 176", s)
	}
	// The cache layout: what an Original lookup reads in line 0, Tuple[Reply] and its link
	// in line 1.
	var e Entry
	off := func(p unsafe.Pointer) uintptr { return uintptr(p) - uintptr(unsafe.Pointer(&e)) }
	t0end := off(unsafe.Pointer(&e.Tuple[Original])) + unsafe.Sizeof(Tuple{})
	if t0end > 64 || off(unsafe.Pointer(&e.word)) >= 64 || off(unsafe.Pointer(&e.next0)) >= 64 ||
		off(unsafe.Pointer(&e.Tuple[Reply])) < 64 || off(unsafe.Pointer(&e.next1)) < 64 {
		t.Fatalf("Entry layout does not split Original/Reply data over the two cache lines")
	}
}

func TestTupleHelpers(t *testing.T) {
	k := MakeTuple(packet.ProtoTCP, client, vip, 1234, 80)
	if k.SrcAddr() != client || k.DstAddr() != vip {
		t.Fatalf("addresses %v %v", k.SrcAddr(), k.DstAddr())
	}
	r := k.Reverse()
	if r.SrcAddr() != vip || r.DstAddr() != client || r.SrcPort != 80 || r.DstPort != 1234 || r.Reverse() != k {
		t.Fatalf("Reverse = %v", r)
	}
	if got := k.String(); got != "tcp 198.51.100.10:1234->203.0.113.5:80" {
		t.Fatalf("String = %q", got)
	}
	k6 := MakeTuple(packet.ProtoUDP, client6, vip6, 1, 2)
	if k6.SrcAddr() != client6 || k6 == MakeTuple(packet.ProtoUDP, client, vip, 1, 2) {
		t.Fatal("IPv6 tuple")
	}
	p := udpPkt(client6, vip6, 1, 2)
	if TupleOf(p) != k6 {
		t.Fatal("TupleOf differs from MakeTuple")
	}
	if k.Hash(1) != k.Hash(1) || k.Hash(1) == k.Hash(2) || k.Hash(1) == r.Hash(1) {
		t.Fatal("Hash: want deterministic, seeded and direction-sensitive")
	}
	// Echo request and its reply: the reversed request tuple is the reply's tuple.
	if TupleOf(echoPkt(false, 9)).Reverse() != TupleOf(echoPkt(true, 9)) {
		t.Fatal("echo reply tuple is not the reversed request tuple")
	}
}

func TestInsertLookupDelete(t *testing.T) {
	var deleted []*Entry
	tb := New(Config{MaxEntries: 64, OnDelete: func(e *Entry) { deleted = append(deleted, e) }})
	var load atomic.Int64
	p := tcpPkt(fSYN)
	e := natEntry(p, 50000, t0)
	e.Load = &load
	mustInsert(t, tb, e, t0)
	load.Add(1)

	k := TupleOf(p)
	if got, d := tb.Lookup(&k, t0); got != e || d != Original {
		t.Fatalf("Lookup(original) = %p %v", got, d)
	}
	rk := MakeTuple(packet.ProtoTCP, backend, masq, 8080, 50000)
	if got, d := tb.Lookup(&rk, t0); got != e || d != Reply {
		t.Fatalf("Lookup(reply) = %p %v", got, d)
	}
	other := k.Reverse() // the un-NATed reverse is not tracked
	if got, _ := tb.Lookup(&other, t0); got != nil {
		t.Fatal("Lookup found an untracked tuple")
	}
	if tb.Len() != 1 {
		t.Fatalf("Len = %d", tb.Len())
	}

	// Same original tuple: the existing entry wins.
	dup := natEntry(p, 50001, t0)
	if got, err := tb.Insert(dup, t0); got != e || !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate Insert = %p, %v", got, err)
	}
	// Other client, same reply tuple: refused so NAT picks another port.
	p2 := tcpPkt(fSYN)
	p2.SrcPort = 40001
	taken := natEntry(p2, 50000, t0)
	if got, err := tb.Insert(taken, t0); got != nil || !errors.Is(err, ErrReplyTaken) {
		t.Fatalf("reply-taken Insert = %p, %v", got, err)
	}
	taken.Tuple[Reply].DstPort = 50002
	mustInsert(t, tb, taken, t0)

	if !tb.Delete(e) || tb.Delete(e) {
		t.Fatal("Delete: want true once, then false")
	}
	if got, _ := tb.Lookup(&k, t0); got != nil || !e.Removed() {
		t.Fatal("deleted entry still found")
	}
	if len(deleted) != 1 || deleted[0] != e || load.Load() != 0 {
		t.Fatalf("OnDelete calls %d, load %d; want 1, 0", len(deleted), load.Load())
	}
	if _, err := tb.Insert(e, t0); !errors.Is(err, ErrReused) {
		t.Fatalf("re-Insert of a removed entry: %v, want ErrReused", err)
	}
	if _, err := tb.Insert(&Entry{Tuple: [2]Tuple{k, rk}}, t0); !errors.Is(err, ErrNotInit) {
		t.Fatalf("Insert without Init: %v, want ErrNotInit", err)
	}
	bad := &Entry{Tuple: [2]Tuple{k, rk}}
	bad.Init(tcpPkt(fACK), t0)
	if _, err := tb.Insert(bad, t0); !errors.Is(err, ErrNotInit) {
		t.Fatalf("Insert of an entry initialised by an ACK: %v, want ErrNotInit", err)
	}
	if tb.Delete(&Entry{}) {
		t.Fatal("Delete of a foreign entry returned true")
	}
	st := tb.Stats()
	if st.Inserted != 2 || st.Deleted != 1 || st.InsertRaces != 1 || st.ReplyTaken != 1 || tb.Len() != 1 {
		t.Fatalf("stats %+v len %d", st, tb.Len())
	}
}

func TestExpiryAndSweep(t *testing.T) {
	var deleted atomic.Int64
	tb := New(Config{MaxEntries: 64, OnDelete: func(*Entry) { deleted.Add(1) }})
	var load atomic.Int64
	var es []*Entry
	for i := range 10 {
		e := natEntry(udpPkt(client, vip, uint16(1000+i), 53), uint16(50000+i), t0)
		e.Load = &load
		mustInsert(t, tb, e, t0)
		load.Add(1)
		es = append(es, e)
	}
	// Keep half alive as streams (stream timeout 120 s).
	for _, e := range es[:5] {
		assureUDP(t, e, t0, t0+10*sec)
	}
	k := es[9].Tuple[Original]
	if got, _ := tb.Lookup(&k, t0+30*sec-1); got == nil {
		t.Fatal("entry expired early")
	}
	if got, _ := tb.Lookup(&k, t0+30*sec); got != nil {
		t.Fatal("expired entry found by Lookup")
	}
	if n := tb.Sweep(t0 + 29*sec); n != 0 {
		t.Fatalf("early Sweep removed %d", n)
	}
	if n := tb.Sweep(t0 + 31*sec); n != 5 || tb.Len() != 5 || deleted.Load() != 5 || load.Load() != 5 {
		t.Fatalf("Sweep removed %d, len %d, OnDelete %d, load %d; want 5 each", n, tb.Len(), deleted.Load(), load.Load())
	}
	if n := tb.Sweep(t0 + 31*sec); n != 0 {
		t.Fatalf("second Sweep removed %d", n)
	}
	for _, e := range es[5:] {
		if !e.Removed() {
			t.Fatal("expired entry not marked removed")
		}
	}
	// SweepPart covers the whole table in parts calls.
	tb3 := New(Config{MaxEntries: 256})
	for i := range 200 {
		mustInsert(t, tb3, natEntry(udpPkt(client, vip, uint16(1000+i), 53), uint16(50000+i), t0), t0)
	}
	swept := 0
	for range 7 {
		swept += tb3.SweepPart(t0+31*sec, 7)
	}
	if swept != 200 || tb3.Len() != 0 {
		t.Fatalf("7 x SweepPart(7) removed %d of 200, len %d", swept, tb3.Len())
	}
	// An expired but unswept entry does not block a new flow with the same tuple.
	tb2 := New(Config{MaxEntries: 8})
	old := natEntry(udpPkt(client, vip, 1, 53), 50000, t0)
	mustInsert(t, tb2, old, t0)
	fresh := natEntry(udpPkt(client, vip, 1, 53), 50000, t0+31*sec)
	mustInsert(t, tb2, fresh, t0+31*sec)
	if !old.Removed() || tb2.Len() != 1 || tb2.Stats().Expired != 1 {
		t.Fatalf("stale entry: removed=%v len=%d stats=%+v", old.Removed(), tb2.Len(), tb2.Stats())
	}
	if st := tb.Stats(); st.Expired != 5 || st.Sweeps != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTableFullAndEarlyDrop(t *testing.T) {
	const max = 8
	var dropped []*Entry
	tb := New(Config{MaxEntries: max, OnDelete: func(e *Entry) { dropped = append(dropped, e) }})
	var es []*Entry
	for i := range max {
		e := natEntry(udpPkt(client, vip, uint16(1000+i), 53), uint16(50000+i), t0)
		mustInsert(t, tb, e, t0)
		es = append(es, e)
	}
	// Assure all but one: that one is the only eviction candidate.
	t1 := t0
	for _, e := range es[1:] {
		t1 = assureUDP(t, e, t0, t0)
	}
	e := natEntry(udpPkt(client, vip, 2000, 53), 51000, t1)
	mustInsert(t, tb, e, t1)
	if len(dropped) != 1 || dropped[0] != es[0] || tb.Len() != max || tb.Stats().EarlyDrops != 1 {
		t.Fatalf("early drop: dropped %d (first is es[0]: %v), len %d, stats %+v",
			len(dropped), len(dropped) > 0 && dropped[0] == es[0], tb.Len(), tb.Stats())
	}
	t2 := assureUDP(t, e, t1, t1)
	// Everything assured: refuse.
	f := natEntry(udpPkt(client, vip, 2001, 53), 51001, t2)
	if got, err := tb.Insert(f, t2); got != nil || !errors.Is(err, ErrTableFull) {
		t.Fatalf("Insert into a full assured table = %p, %v", got, err)
	}
	if st := tb.Stats(); st.TableFull != 1 || tb.Len() != max || len(dropped) != 1 {
		t.Fatalf("stats %+v len %d", st, tb.Len())
	}
	// Expired assured entries make room (counted as expired, not early drops).
	g := natEntry(udpPkt(client, vip, 2002, 53), 51002, t0+200*sec)
	mustInsert(t, tb, g, t0+200*sec)
	if st := tb.Stats(); st.Expired != 1 || st.EarlyDrops != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestInsertRace(t *testing.T) {
	const goroutines, rounds = 64, 50
	var deleted atomic.Int64
	tb := New(Config{MaxEntries: 1024, OnDelete: func(*Entry) { deleted.Add(1) }})
	for round := range rounds {
		p := udpPkt(client, vip, uint16(round+1), 53)
		var (
			start         sync.WaitGroup
			done          sync.WaitGroup
			winners, lost atomic.Int64
			winner        atomic.Pointer[Entry]
			results       [goroutines]*Entry
		)
		start.Add(1)
		for g := range goroutines {
			done.Add(1)
			go func() {
				defer done.Done()
				e := natEntry(p, uint16(10000+round*goroutines+g), t0) // distinct reply tuples
				start.Wait()
				got, err := tb.Insert(e, t0)
				switch {
				case err == nil && got == e:
					winners.Add(1)
					winner.Store(e)
				case errors.Is(err, ErrExists):
					lost.Add(1)
				default:
					t.Errorf("Insert: %v", err)
				}
				results[g] = got
			}()
		}
		start.Done()
		done.Wait()
		if winners.Load() != 1 || lost.Load() != goroutines-1 {
			t.Fatalf("round %d: %d winners, %d losers", round, winners.Load(), lost.Load())
		}
		for g, got := range results {
			if got != winner.Load() {
				t.Fatalf("round %d: goroutine %d got %p, not the winner %p", round, g, got, winner.Load())
			}
		}
		k := TupleOf(p)
		if got, _ := tb.Lookup(&k, t0); got != winner.Load() {
			t.Fatalf("round %d: Lookup does not find the winner", round)
		}
	}
	if tb.Len() != rounds || tb.Stats().InsertRaces != rounds*(goroutines-1) || deleted.Load() != 0 {
		t.Fatalf("len %d stats %+v", tb.Len(), tb.Stats())
	}
}

// TestConcurrentReadersWriters runs lock-free lookups against inserts, deletes, sweeps,
// filters and Range; a stable set of entries must never be missed (run under -race).
func TestConcurrentReadersWriters(t *testing.T) {
	tb := New(Config{MaxEntries: 4096})
	var stable []*Entry
	for i := range 500 {
		e := natEntry(udpPkt(client, vip, uint16(i+1), 53), uint16(20000+i), t0)
		mustInsert(t, tb, e, t0)
		assureUDP(t, e, t0, t0)
		stable = append(stable, e)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var missed atomic.Int64
	for range 2 { // readers
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				e := stable[n%len(stable)]
				d := Dir(n & 1)
				if got, gd := tb.Lookup(&e.Tuple[d], t0+sec); got != e || gd != d {
					missed.Add(1)
				}
			}
		})
	}
	other := netip.MustParseAddr("198.51.100.99")
	var writers sync.WaitGroup
	for w := range 2 { // churn writers
		writers.Go(func() {
			for i := range 2000 {
				port := uint16(i%1000 + 1)
				e := natEntry(udpPkt(other, vip, port, uint16(100+w)), uint16(30000+w*5000+i%1000), t0)
				if _, err := tb.Insert(e, t0); err == nil && i%3 == 0 {
					tb.Delete(e)
				}
			}
		})
	}
	writers.Go(func() { // filters, sweeps, listing
		for range 20 {
			tb.DeleteMatching(Filter{Addr: other, Port: 7})
			tb.Sweep(t0 + sec)
			n := 0
			tb.Range(func(*Entry) bool { n++; return true })
			if n < len(stable) {
				t.Errorf("Range saw %d entries, fewer than the %d stable ones", n, len(stable))
			}
		}
	})
	writers.Wait()
	close(stop)
	wg.Wait()
	if missed.Load() != 0 {
		t.Fatalf("%d lookups missed a stable entry", missed.Load())
	}
	n := tb.DeleteMatching(Filter{Addr: other})
	if tb.Len() != len(stable) {
		t.Fatalf("after deleting the churn (%d), len %d, want %d", n, tb.Len(), len(stable))
	}
}

func TestFilters(t *testing.T) {
	tb := New(Config{MaxEntries: 64})
	b2 := netip.MustParseAddr("198.18.0.21")
	mk := func(proto packet.Proto, sport uint16, be netip.Addr, svc uint32) *Entry {
		var p = udpPkt(client, vip, sport, 53)
		if proto == packet.ProtoTCP {
			p = tcpPkt(fSYN)
			p.SrcPort = sport
		}
		o := TupleOf(p)
		e := &Entry{Tuple: [2]Tuple{o, MakeTuple(proto, be, masq, 8080, sport+10000)}, Service: svc, Kind: uint8(svc)}
		e.Init(p, t0)
		mustInsert(t, tb, e, t0)
		return e
	}
	mk(packet.ProtoUDP, 1, backend, 1)
	mk(packet.ProtoUDP, 2, b2, 1)
	est := mk(packet.ProtoTCP, 3, backend, 2)
	est.Update(Reply, pkt(packet.ProtoTCP, backend, masq, 8080, 10003), t0) // flags 0: invalid, no change
	mk(packet.ProtoTCP, 4, b2, 0)
	tests := []struct {
		name string
		f    Filter
		want int
	}{
		{"proto", Filter{Proto: packet.ProtoTCP}, 2},
		{"backend", Filter{Backend: b2}, 2},
		{"addr matches any tuple address", Filter{Addr: masq}, 4},
		{"addr client", Filter{Addr: client}, 4},
		{"addr none", Filter{Addr: netip.MustParseAddr("192.0.2.1")}, 0},
		{"port original src", Filter{Port: 2}, 1},
		{"port reply dst", Filter{Port: 10004}, 1},
		{"service", Filter{Service: 1, MatchService: true}, 2},
		{"service zero", Filter{Service: 0, MatchService: true}, 1},
		{"kind", Filter{Kind: 2, MatchKind: true}, 1},
		{"state", Filter{State: StateSynSent}, 2},
		{"combined", Filter{Proto: packet.ProtoUDP, Backend: backend}, 1},
		{"everything", Filter{}, 4},
	}
	for _, tc := range tests {
		n := 0
		tb.Range(func(e *Entry) bool {
			if tc.f.Match(e) {
				n++
			}
			return true
		})
		if n != tc.want {
			t.Errorf("%s: %d matches, want %d", tc.name, n, tc.want)
		}
	}
	if n := tb.DeleteMatching(Filter{Backend: b2}); n != 2 || tb.Len() != 2 {
		t.Fatalf("DeleteMatching(backend) = %d, len %d", n, tb.Len())
	}
	seen := 0
	tb.Range(func(*Entry) bool { seen++; return false })
	if seen != 1 {
		t.Fatalf("Range did not stop when fn returned false (%d calls)", seen)
	}
	if st := tb.Stats(); st.Deleted != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTupleEqual(t *testing.T) {
	a := MakeTuple(packet.ProtoTCP, client6, vip6, 1234, 80)
	b := a
	if !a.equal(&b) {
		t.Fatal("equal tuples differ")
	}
	// Flip every bit of every field, one at a time: equal must agree with ==.
	mut := []func(*Tuple, int){
		func(k *Tuple, i int) { k.Src[i/8] ^= 1 << (i % 8) },
		func(k *Tuple, i int) { k.Dst[i/8] ^= 1 << (i % 8) },
		func(k *Tuple, i int) { k.SrcPort ^= 1 << (i % 16) },
		func(k *Tuple, i int) { k.DstPort ^= 1 << (i % 16) },
		func(k *Tuple, i int) { k.Proto ^= 1 << (i % 8) },
	}
	for mi, m := range mut {
		for i := range 128 {
			c := a
			m(&c, i)
			if c.equal(&a) || a.equal(&c) || c == a {
				t.Fatalf("mutation %d bit %d: equal reports a match", mi, i)
			}
			// Two changes that cancel in a XOR-based compare must still differ.
			d := c
			mut[(mi+1)%len(mut)](&d, i)
			if d.equal(&a) != (d == a) {
				t.Fatalf("mutations %d+%d bit %d: equal %v, == %v", mi, (mi+1)%len(mut), i, d.equal(&a), d == a)
			}
		}
	}
}

// TestUDPExchangesDoNotPinTable: a table filled by single query/answer exchanges (the DNS
// pattern, or a flood of them) still admits new flows: those exchanges stay unassured and are
// early-dropped, where one reply used to assure them and refuse every new flow.
func TestUDPExchangesDoNotPinTable(t *testing.T) {
	const max = 64
	tb := New(Config{MaxEntries: max})
	now := t0
	for i := range max {
		e := natEntry(udpPkt(client, vip, uint16(1000+i), 53), uint16(50000+i), now)
		mustInsert(t, tb, e, now)
		if !e.Update(Reply, udpPkt(backend, masq, 8080, uint16(50000+i)), now+sec/100) {
			t.Fatal("answer refused")
		}
		now += sec / 50 // 50 exchanges a second: the table fills in about 1.3 s
	}
	if tb.Len() != max {
		t.Fatalf("len %d, want a full table of %d", tb.Len(), max)
	}
	other := netip.MustParseAddr("198.51.100.77")
	for i := range max {
		e := natEntry(udpPkt(other, vip, uint16(3000+i), 53), uint16(60000+i), now)
		if _, err := tb.Insert(e, now); err != nil {
			t.Fatalf("new flow %d into a table of single exchanges: %v (stats %+v)", i, err, tb.Stats())
		}
	}
	if st := tb.Stats(); st.EarlyDrops != max || st.TableFull != 0 {
		t.Fatalf("stats %+v, want %d early drops and no refusal", st, max)
	}
}

// TestDeleteStaleHandshakes: only TCP entries still in their handshake and idle for the given
// time go; completed handshakes, recent attempts, other protocols and non-matching entries stay.
func TestDeleteStaleHandshakes(t *testing.T) {
	tb := New(Config{MaxEntries: 64})
	syn := func(sport uint16, at int64) *Entry {
		p := pkt(packet.ProtoTCP, client, vip, sport, 80)
		p.TCPFlags = fSYN
		e := natEntry(p, sport, at)
		mustInsert(t, tb, e, at)
		return e
	}
	reply := func(e *Entry, flags packet.TCPFlags, at int64) {
		p := pkt(packet.ProtoTCP, backend, masq, 8080, e.Tuple[Reply].DstPort)
		p.TCPFlags = flags
		e.Update(Reply, p, at)
	}
	oldSent := syn(1001, t0)          // SYN_SENT, idle 5 s: goes
	oldRecv := syn(1002, t0)          // SYN_RECV after the backend's SYN-ACK at t0+1s: goes
	reply(oldRecv, fSYNACK, t0+1*sec) //
	recent := syn(1003, t0+4*sec)     // SYN_SENT, idle 1 s: stays
	done := syn(1004, t0)             // established: stays
	reply(done, fSYNACK, t0)          //
	ack := pkt(packet.ProtoTCP, client, vip, 1004, 80)
	ack.TCPFlags = fACK
	done.Update(Original, ack, t0)
	other := natEntry(udpPkt(client, vip, 1005, 53), 1005, t0) // UDP: stays
	mustInsert(t, tb, other, t0)
	otherSvc := syn(1006, t0) // another service: stays with the filter below
	otherSvc.Service = 9

	now := t0 + 5*sec
	n := tb.DeleteStaleHandshakes(Filter{Service: 7, MatchService: true}, 3*time.Second, now)
	if n != 2 || !oldSent.Removed() || !oldRecv.Removed() {
		t.Fatalf("removed %d (syn_sent %v, syn_recv %v), want the 2 idle handshakes", n, oldSent.Removed(), oldRecv.Removed())
	}
	for name, e := range map[string]*Entry{"recent": recent, "established": done, "udp": other, "other service": otherSvc} {
		if e.Removed() {
			t.Errorf("%s entry (state %v) removed", name, e.State())
		}
	}
	if st := tb.Stats(); st.Deleted != 2 {
		t.Errorf("stats %+v, want 2 deleted", st)
	}
}
