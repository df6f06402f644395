package flowsync

import (
	"testing"

	"github.com/edgegate/edgegate/conntrack"
)

// TestEventAllocs: the packet path's hook allocates nothing (queued or dropped when full).
func TestEventAllocs(t *testing.T) {
	n := &Node{q: newQueue()}
	e := &conntrack.Entry{Kind: 1}
	if a := testing.AllocsPerRun(QueueLen+1000, func() { n.Event(e, conntrack.EventState) }); a != 0 {
		t.Fatalf("Event allocates %v per call", a)
	}
	if n.stats.queueDrops.Load() == 0 {
		t.Fatal("a full queue dropped nothing")
	}
}

// BenchmarkEvent is the cost the packet path pays per flow event (a lock-free queue push; the
// sender drains concurrently).
func BenchmarkEvent(b *testing.B) {
	n := &Node{q: newQueue()}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			default:
				n.q.pop()
			}
		}
	}()
	defer close(done)
	e := &conntrack.Entry{Kind: 1}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n.Event(e, conntrack.EventInserted)
		}
	})
}

// BenchmarkEncodeDecode is one full datagram's HMAC and (de)serialisation.
func BenchmarkEncodeDecode(b *testing.B) {
	recs := make([]Record, MaxRecords)
	for i := range recs {
		recs[i] = testRecord(i)
	}
	enc, dec := NewEncoder(testKey), NewDecoder(testKey)
	out := make([]Record, MaxRecords)
	b.ReportAllocs()
	b.SetBytes(MaxDatagram)
	for b.Loop() {
		dg := enc.Encode(Header{Node: 1, Epoch: 1, Seq: 1}, recs)
		if _, err := dec.Decode(dg, out); err != nil {
			b.Fatal(err)
		}
	}
}
