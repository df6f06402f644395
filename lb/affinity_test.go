package lb

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestAffinityTableTornReads hammers one bucket (capacity 4) from writers storing many keys
// while readers look them up: a reader must never accept a slot whose words come from
// different writes, i.e. a hit must return the backend that belongs to the key.
func TestAffinityTableTornReads(t *testing.T) {
	tab := newAffinityTable(affWays)
	backendOf := func(key uint64) uint64 { return mix(key, p2) }
	var done atomic.Bool
	var writers, readers sync.WaitGroup
	var bad, hits atomic.Int64
	for w := range 2 {
		writers.Go(func() {
			for i := range 200_000 {
				key := uint64(w*1000+i%37)*2 + 1
				tab.put(key, backendOf(key), int64(1+i))
			}
		})
	}
	for range 2 {
		readers.Go(func() {
			for i := 0; !done.Load(); i++ {
				key := uint64(i%2037)*2 + 1
				if b, _, ok := tab.get(key, 0); ok {
					hits.Add(1)
					if b != backendOf(key) {
						bad.Add(1)
					}
				}
			}
		})
	}
	writers.Wait()
	done.Store(true)
	readers.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d of %d hits returned another key's backend", bad.Load(), hits.Load())
	}
	if hits.Load() == 0 {
		t.Error("readers never hit: the test exercised nothing")
	}
}

func TestAffinityTableExpiryAndEviction(t *testing.T) {
	tab := newAffinityTable(affWays) // one bucket
	for k := uint64(1); k <= affWays; k++ {
		tab.put(k, 100+k, int64(10*k))
	}
	for k := uint64(1); k <= affWays; k++ {
		if b, e, ok := tab.get(k, 5); !ok || b != 100+k || e != int64(10*k) {
			t.Fatalf("key %d: %d %d %v", k, b, e, ok)
		}
	}
	if _, _, ok := tab.get(1, 10); ok {
		t.Error("entry alive at its expiry time")
	}
	// A fifth key evicts the entry expiring first (key 1), nothing else.
	tab.put(99, 7, 1000)
	if _, _, ok := tab.get(1, 0); ok {
		t.Error("the entry expiring first was not evicted")
	}
	for _, k := range []uint64{2, 3, 4, 99} {
		if _, _, ok := tab.get(k, 0); !ok {
			t.Errorf("key %d evicted", k)
		}
	}
	// Updating a key reuses its slot.
	tab.put(3, 55, 2000)
	if b, _, ok := tab.get(3, 1500); !ok || b != 55 {
		t.Errorf("update lost: %d %v", b, ok)
	}
	if _, _, ok := tab.get(2, 0); !ok {
		t.Error("updating key 3 evicted key 2")
	}
}

// TestAffinitySaveRestore: the entries of one Set, restored into a Set built afresh (another
// process), give every client the backend it had; entries of a backend the new Set lacks, and
// expired ones, are skipped.
func TestAffinitySaveRestore(t *testing.T) {
	spec := Spec{Scheduler: "round_robin", Affinity: time.Minute, Backends: []Backend{
		{Addr: netip.MustParseAddr("192.0.2.1"), Weight: 1}, {Addr: netip.MustParseAddr("192.0.2.2"), Weight: 1}, {Addr: netip.MustParseAddr("192.0.2.3"), Weight: 1}}}
	old, err := Build(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixNano()
	had := map[netip.Addr]netip.Addr{}
	for i := range 300 {
		c := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		if i >= 256 {
			c = netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
		}
		b, _ := old.Pick(c, uint64(i), now)
		had[c] = b.Addr
	}
	saved := old.SaveAffinity(now)
	if len(saved) < 250 { // 4-way buckets of a 64k table: collisions are rare
		t.Fatalf("saved %d of 300 entries", len(saved))
	}
	spec.Backends = spec.Backends[:2] // 192.0.2.3 is gone in the new process
	fresh, err := Build(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	stale := AffinityEntry{Client: 12345, Backend: spec.Backends[0].Addr, Expires: now - 1}
	n := fresh.RestoreAffinity(append(saved, stale), now)
	kept := 0
	for _, e := range saved {
		if e.Backend != netip.MustParseAddr("192.0.2.3") {
			kept++
		}
	}
	if n != kept {
		t.Fatalf("restored %d, want the %d entries of remaining backends", n, kept)
	}
	moved := 0
	for c, b := range had {
		got, _ := fresh.Pick(c, 0, now+1)
		if b != netip.MustParseAddr("192.0.2.3") && got.Addr != b {
			moved++
		}
	}
	if moved > 300-len(saved) {
		t.Fatalf("%d clients of remaining backends changed backend after the restore", moved)
	}
	if (&Set{}).SaveAffinity(now) != nil || (&Set{}).RestoreAffinity(saved, now) != 0 {
		t.Fatal("a Set without affinity saved or restored entries")
	}
}
