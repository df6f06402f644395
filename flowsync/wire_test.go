package flowsync

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/edgegate/edgegate/conntrack"
)

var testKey = bytes.Repeat([]byte("k"), MinKeyLen)

func testRecord(i int) Record {
	c := netip.AddrFrom4([4]byte{198, 18, 1, byte(i)})
	return Record{Op: OpUpsert, Kind: 1, Origin: 2,
		Saved: conntrack.Saved{State: conntrack.StateEstablished, Assured: true, SeenReply: true},
		Tuple: [2]conntrack.Tuple{
			conntrack.MakeTuple(6, c, netip.MustParseAddr("198.18.200.1"), uint16(40000+i), 80),
			conntrack.MakeTuple(6, netip.MustParseAddr("198.19.1.2"), netip.MustParseAddr("198.18.250.1"), 8080, uint16(40000+i)),
		}}
}

func TestWireRoundTrip(t *testing.T) {
	recs := make([]Record, MaxRecords)
	for i := range recs {
		recs[i] = testRecord(i)
	}
	recs[3].Op = OpDelete
	recs[5].Saved = conntrack.Saved{State: conntrack.StateReplied, NoOrig: true}
	recs[5].Tuple[0].Proto, recs[5].Tuple[1].Proto = 17, 17
	h := Header{Node: 3, Epoch: 1234567, Seq: 42}
	dg := NewEncoder(testKey).Encode(h, recs)
	if len(dg) != MaxDatagram {
		t.Fatalf("datagram of %d bytes, want %d", len(dg), MaxDatagram)
	}
	out := make([]Record, MaxRecords)
	got, err := NewDecoder(testKey).Decode(dg, out)
	h.Count = MaxRecords
	if err != nil || got != h {
		t.Fatalf("header %+v, %v", got, err)
	}
	for i := range recs {
		if out[i] != recs[i] {
			t.Fatalf("record %d: %+v, want %+v", i, out[i], recs[i])
		}
	}
	// Every single-bit change anywhere is refused; so is another key.
	dec := NewDecoder(testKey)
	for i := range dg {
		bad := bytes.Clone(dg)
		bad[i] ^= 0x10
		if _, err := dec.Decode(bad, out); err == nil {
			t.Fatalf("byte %d flipped: accepted", i)
		}
	}
	if _, err := NewDecoder(bytes.Repeat([]byte("x"), MinKeyLen)).Decode(dg, out); !errors.Is(err, ErrMAC) {
		t.Fatalf("other key: %v", err)
	}
}

// TestWireRefusals: authentic datagrams whose content is wrong are refused with their reason.
func TestWireRefusals(t *testing.T) {
	enc, dec := NewEncoder(testKey), NewDecoder(testKey)
	out := make([]Record, MaxRecords)
	mod := func(f func(r *Record)) []Record {
		r := testRecord(1)
		f(&r)
		return []Record{r}
	}
	for _, tt := range []struct {
		name string
		dg   []byte
		want error
	}{
		{"empty", nil, ErrLength},
		{"short", make([]byte, headerLen+macLen-1), ErrLength},
		{"partial record", append(bytes.Clone(enc.Encode(Header{Node: 1, Epoch: 1, Seq: 1}, mod(func(*Record) {}))), 0), ErrLength},
		{"too long", make([]byte, MaxDatagram+recordLen), ErrLength},
		{"magic", make([]byte, headerLen+macLen), ErrMagic},
		{"seq 0", bytes.Clone(enc.Encode(Header{Node: 1, Epoch: 1, Seq: 0}, nil)), ErrRecord},
		{"epoch 0", bytes.Clone(enc.Encode(Header{Node: 1, Epoch: 0, Seq: 1}, nil)), ErrRecord},
		{"op", bytes.Clone(enc.Encode(Header{Node: 1, Epoch: 1, Seq: 1}, mod(func(r *Record) { r.Op = 9 }))), ErrRecord},
		{"kind 0", bytes.Clone(enc.Encode(Header{Node: 1, Epoch: 1, Seq: 1}, mod(func(r *Record) { r.Kind = 0 }))), ErrRecord},
		{"state", bytes.Clone(enc.Encode(Header{Node: 1, Epoch: 1, Seq: 1}, mod(func(r *Record) { r.Saved.State = 99 }))), ErrRecord},
		{"udp tcp state", bytes.Clone(enc.Encode(Header{Node: 1, Epoch: 1, Seq: 1}, mod(func(r *Record) { r.Tuple[0].Proto, r.Tuple[1].Proto = 17, 17 }))), ErrRecord},
		{"proto", bytes.Clone(enc.Encode(Header{Node: 1, Epoch: 1, Seq: 1}, mod(func(r *Record) { r.Tuple[0].Proto = 47 }))), ErrRecord},
		{"mixed family", bytes.Clone(enc.Encode(Header{Node: 1, Epoch: 1, Seq: 1}, mod(func(r *Record) {
			r.Tuple[1].Src = netip.MustParseAddr("2001:db8::1").As16()
		}))), ErrRecord},
		{"loopback", bytes.Clone(enc.Encode(Header{Node: 1, Epoch: 1, Seq: 1}, mod(func(r *Record) {
			r.Tuple[0].Dst = netip.MustParseAddr("127.0.0.1").As16()
		}))), ErrRecord},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := dec.Decode(tt.dg, out); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestReplayWindow(t *testing.T) {
	var r replay
	steps := []struct {
		epoch, seq   uint64
		ok, newEpoch bool
	}{
		{10, 1, true, true},
		{10, 1, false, false}, // replay
		{10, 3, true, false},
		{10, 2, true, false}, // late, inside the window
		{10, 2, false, false},
		{10, 3 + ReplayWindow, true, false},
		{10, 3, false, false},     // fell out of the window
		{10, 4, true, false},      // at the window's edge, unseen
		{9, 100000, false, false}, // older epoch
		{10, 0, false, false},
		{11, 1, true, true}, // the peer restarted
		{11, 5000, true, false},
		{11, 3000, false, false},
		{11, 4999, true, false},
		{11, 4999, false, false},
	}
	for i, s := range steps {
		if ok, ne := r.check(s.epoch, s.seq); ok != s.ok || ne != s.newEpoch {
			t.Fatalf("step %d (%d, %d): ok=%v new=%v, want %v %v", i, s.epoch, s.seq, ok, ne, s.ok, s.newEpoch)
		}
	}
}

func FuzzDecode(f *testing.F) {
	enc := NewEncoder(testKey)
	f.Add(bytes.Clone(enc.Encode(Header{Node: 1, Epoch: 1, Seq: 1}, []Record{testRecord(1), testRecord(2)})))
	f.Add(bytes.Clone(enc.Encode(Header{Node: 1, Epoch: 1, Seq: 1}, nil)))
	f.Add([]byte("EGFS"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out := make([]Record, MaxRecords)
		for _, key := range [][]byte{testKey, bytes.Repeat([]byte("y"), MinKeyLen)} {
			h, err := NewDecoder(key).Decode(b, out)
			if err != nil {
				continue
			}
			// An accepted datagram re-encodes to itself.
			if again := NewEncoder(key).Encode(h, out[:h.Count]); !bytes.Equal(again, b) {
				t.Fatalf("accepted datagram does not re-encode to itself")
			}
		}
	})
}
