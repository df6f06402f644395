package tun

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/edgegate/edgegate/internal/pkttest"
	"github.com/edgegate/edgegate/packet"
)

var (
	cli = netip.MustParseAddr("198.18.1.2")
	srv = netip.MustParseAddr("198.19.1.2")
)

// batchBuf puts pkt behind the headroom of a buffer of BufSize, as a worker's are.
func batchBuf(pkt []byte) []byte {
	b := make([]byte, BufSize)
	return b[:Offset+copy(b[Offset:], pkt)]
}

func dgram(t *testing.T, sport uint16, payload string) []byte {
	return pkttest.P{Proto: packet.ProtoUDP, Src: cli, Dst: srv, Sport: sport, Dport: 7000, Payload: payload}.Build(t)
}

// TestCoalesceRuns: which datagrams join a super-packet, and the counts Write reports with them.
func TestCoalesceRuns(t *testing.T) {
	long := func(i int) string { return fmt.Sprintf("datagram-%03d", i) }
	ttl := dgram(t, 4000, long(0))
	ttl[8]-- // another TTL: the kernel would copy the first one's to every segment
	packet.IPv4(ttl[:20]).SetHeaderChecksum()
	frag := dgram(t, 4000, long(0))
	frag[6] |= 0x20 // MF: a first fragment
	packet.IPv4(frag[:20]).SetHeaderChecksum()
	for _, tc := range []struct {
		name   string
		pkts   func() [][]byte
		counts []int
	}{
		{"one flow, shorter last", func() [][]byte {
			return [][]byte{dgram(t, 4000, long(1)), dgram(t, 4000, long(2)), dgram(t, 4000, "end")}
		}, []int{3}},
		{"longer one starts a new run", func() [][]byte {
			return [][]byte{dgram(t, 4000, "short"), dgram(t, 4000, long(1)), dgram(t, 4000, long(2))}
		}, []int{1, 2}},
		{"another flow", func() [][]byte {
			return [][]byte{dgram(t, 4000, long(1)), dgram(t, 4001, long(2)), dgram(t, 4001, long(3))}
		}, []int{1, 2}},
		{"another TTL", func() [][]byte { return [][]byte{dgram(t, 4000, long(1)), ttl} }, []int{1, 1}},
		{"fragment alone", func() [][]byte { return [][]byte{frag, dgram(t, 4000, long(1))} }, []int{1, 1}},
		{"train bound", func() [][]byte {
			var ps [][]byte
			for i := range maxTrain + 1 {
				ps = append(ps, dgram(t, 4000, long(i)))
			}
			return ps
		}, []int{maxTrain, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var bufs [][]byte
			for _, p := range tc.pkts() {
				bufs = append(bufs, batchBuf(p))
			}
			var c coalescer
			frames := c.coalesce(bufs)
			if fmt.Sprint(c.counts) != fmt.Sprint(tc.counts) || len(frames) != len(tc.counts) {
				t.Fatalf("frames of %v datagrams, want %v", c.counts, tc.counts)
			}
			var merged uint64
			for i, f := range frames {
				segs, err := MemSegments(f[Offset-vnetHdrLen:])
				if err != nil || len(segs) != c.counts[i] {
					t.Fatalf("frame %d: %v, %d segments, want %d", i, err, len(segs), c.counts[i])
				}
				for _, s := range segs {
					pkttest.Verify(t, s)
				}
				if c.counts[i] > 1 {
					merged += uint64(c.counts[i])
				}
			}
			if c.merged != merged {
				t.Fatalf("merged %d, want %d", c.merged, merged)
			}
		})
	}
}
