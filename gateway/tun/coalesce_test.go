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
		{"empty datagram alone", func() [][]byte {
			return [][]byte{dgram(t, 4000, long(1)), dgram(t, 4000, ""), dgram(t, 4000, "")}
		}, []int{1, 1, 1}},
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

// FuzzCoalesce: datagrams cut from one fuzzed template (its UDP payload resized by each byte of
// sizes, or, for an odd byte, the template as it is) go through the coalescer. Every packet is
// accounted for once, a packet written alone leaves unchanged, and a super-packet segments back
// into the payloads it was built from, in order.
func FuzzCoalesce(f *testing.F) {
	for _, p := range []pkttest.P{
		{Proto: packet.ProtoUDP, Src: cli, Dst: srv, Sport: 4000, Dport: 7000, Payload: "0123456789"},
		{Proto: packet.ProtoUDP, Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"), Sport: 4000, Dport: 7000, Payload: "0123456789"},
	} {
		f.Add(p.Build(f), []byte{10, 10, 10, 4, 10})
		f.Add(p.Build(f), []byte{2, 10, 11, 10})
	}
	f.Fuzz(func(t *testing.T, tmpl, sizes []byte) {
		if len(sizes) > 2*maxTrain || len(tmpl) > 2048 {
			return
		}
		var in, bufs [][]byte
		for _, s := range sizes {
			p := resized(tmpl, int(s))
			in = append(in, p)
			bufs = append(bufs, batchBuf(p))
		}
		var c coalescer
		frames := c.coalesce(bufs)
		next := 0
		for i, fr := range frames {
			n := c.counts[i]
			if n == 1 {
				if string(fr[Offset:]) != string(in[next]) {
					t.Fatalf("packet %d written alone but changed", next)
				}
				next++
				continue
			}
			segs, err := MemSegments(fr[Offset-vnetHdrLen:])
			if err != nil || len(segs) != n {
				t.Fatalf("frame %d of %d datagrams: %v, %d segments", i, n, err, len(segs))
			}
			l4 := udpL4(batchBuf(in[next]))
			for _, s := range segs {
				if string(s[l4+packet.UDPLen:]) != string(in[next][l4+packet.UDPLen:]) {
					t.Fatalf("datagram %d: payload changed by coalescing", next)
				}
				next++
			}
		}
		if next != len(in) {
			t.Fatalf("%d packets written, %d given", next, len(in))
		}
	})
}

// resized is tmpl with its UDP payload cut or padded to s bytes and its lengths fixed, when tmpl
// is a UDP datagram udpL4 accepts and s is even; otherwise tmpl unchanged.
func resized(tmpl []byte, s int) []byte {
	p := append([]byte(nil), tmpl...)
	l4 := udpL4(batchBuf(p))
	if l4 == 0 || s&1 == 1 {
		return p
	}
	p = append(p[:l4+packet.UDPLen], make([]byte, s)...)
	for i := range s {
		p[l4+packet.UDPLen+i] = byte(i)
	}
	if l4 == packet.IPv4MinLen {
		packet.IPv4(p[:l4]).SetTotalLen(uint16(len(p)))
	} else {
		packet.IPv6(p[:l4]).SetPayloadLen(uint16(len(p) - l4))
	}
	packet.UDP(p[l4:]).SetLength(uint16(len(p) - l4))
	return p
}
