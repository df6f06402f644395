package lb

import (
	"sync"
	"sync/atomic"
	"testing"
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
