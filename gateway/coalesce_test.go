package gateway

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/gateway/tun"
	"github.com/edgegate/edgegate/internal/pkttest"
	"github.com/edgegate/edgegate/lb"
	"github.com/edgegate/edgegate/nat"
	"github.com/edgegate/edgegate/packet"
)

// segmentUDP splits a GSO_UDP_L4 super-packet as the kernel does and finishes each segment's
// checksum from the partial sum, so the test sees the datagrams the backend would receive.
func segmentUDP(t *testing.T, w []byte) [][]byte {
	t.Helper()
	h := tun.VnetHdr(w[:tun.VnetHdrLen])
	b := w[tun.VnetHdrLen:]
	if h.GSOType() == tun.GSONone {
		return [][]byte{b}
	}
	if h.GSOType() != tun.GSOUDPL4 || !h.PartialCsum() {
		t.Fatalf("super-packet header: gso %d flags %d", h.GSOType(), h.Flags())
	}
	l4, seg := int(h.CsumStart()), int(h.GSOSize())
	if int(h.HdrLen()) != l4+8 || h.CsumOffset() != 6 {
		t.Fatalf("hdr_len %d csum_offset %d", h.HdrLen(), h.CsumOffset())
	}
	var out [][]byte
	for off := l4 + 8; off < len(b); off += seg {
		end := min(off+seg, len(b))
		d := append(append([]byte(nil), b[:l4+8]...), b[off:end]...)
		n := len(d)
		if l4 == 20 {
			binary.BigEndian.PutUint16(d[2:], uint16(n))
			binary.BigEndian.PutUint16(d[10:], 0)
			binary.BigEndian.PutUint16(d[10:], ^packet.Checksum(d[:20], 0))
		} else {
			binary.BigEndian.PutUint16(d[4:], uint16(n-40))
		}
		binary.BigEndian.PutUint16(d[l4+4:], uint16(n-l4))
		var p packet.Packet
		p.Parse(append([]byte(nil), d...))
		binary.BigEndian.PutUint16(d[l4+6:], 0)
		c := ^packet.Checksum(d[l4:], packet.PseudoHeaderSum(packet.ProtoUDP, p.Src, p.Dst, n-l4))
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(d[l4+6:], c)
		out = append(out, d)
	}
	return out
}

func TestWorkerCoalescesUDP(t *testing.T) {
	for _, fam := range []struct {
		name              string
		client, vip, back netip.Addr
		masq              netip.Addr
	}{
		{"v4", tClient, tVIP, tBack, tMasq},
		{"v6", netip.MustParseAddr("2001:db8:1::2"), netip.MustParseAddr("2001:db8:200::10"), netip.MustParseAddr("2001:db8:19::2"), netip.MustParseAddr("2001:db8:250::1")},
	} {
		t.Run(fam.name, func(t *testing.T) {
			set, _ := lb.Build(lb.Spec{Scheduler: "round_robin", Backends: []lb.Backend{{Addr: fam.back, Weight: 1}}}, nil)
			svc := nat.Service{ID: 1, Name: "dns", Addrs: []netip.Addr{fam.vip}, Masquerade: true, Ports: []nat.Port{{Proto: packet.ProtoUDP, Port: 7000, TargetPort: 7000}}}
			if fam.back.Is4() {
				svc.Set4 = set
			} else {
				svc.Set6 = set
			}
			rules := nat.NewRules(nat.Spec{Services: []nat.Service{svc}, Masquerade: []netip.Addr{fam.masq}, PortLo: 1024, PortHi: 65535})
			var rp atomic.Pointer[nat.Rules]
			rp.Store(rules)
			tr := &nat.Translator{CT: conntrack.New(conntrack.Config{MaxEntries: 1024})}
			dgram := func(sport uint16, payload string) []byte {
				return withVnet(pkttest.P{Proto: 17, Src: fam.client, Dst: fam.vip, Sport: sport, Dport: 7000, Payload: payload}.Build(t), false)
			}
			// Five equal datagrams of one flow, a shorter one (ends the train), one of another flow.
			var in [][]byte
			var want []string
			for i := 0; i < 5; i++ {
				p := fmt.Sprintf("datagram-%02d-of-one-flow", i)
				in, want = append(in, dgram(4000, p)), append(want, p)
			}
			in, want = append(in, dgram(4000, "short")), append(want, "short")
			in, want = append(in, dgram(4001, "other flow")), append(want, "other flow")
			dev := tun.NewMem(in, true, len(in))
			dev.UDPSeg, dev.Keep = true, true
			w := NewWorker(dev, tr, &rp, nil)
			if err := w.Step(); err != nil {
				t.Fatal(err)
			}
			if len(dev.Kept) != 2 {
				t.Fatalf("%d writes, want 2 (one super-packet of 6 datagrams, one single)", len(dev.Kept))
			}
			var got []string
			for _, wpkt := range dev.Kept {
				for _, d := range segmentUDP(t, wpkt) {
					pk := pkttest.Verify(t, d)
					var p packet.Packet
					p.Parse(d)
					if p.Dst != fam.back || p.Src != fam.masq || p.DstPort != 7000 {
						t.Fatalf("segment %v:%d -> %v:%d", p.Src, p.SrcPort, p.Dst, p.DstPort)
					}
					got = append(got, string(pk.ApplicationLayer().Payload()))
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("datagrams after segmentation:\n%q\nwant\n%q", got, want)
			}
			if w.C.TxPackets.Load() != 7 {
				t.Fatalf("tx packets %d, want 7 datagrams", w.C.TxPackets.Load())
			}
		})
	}
}

// A datagram whose IP payload runs past its UDP length (trailing bytes) is never coalesced: the
// kernel would segment the super-packet by size and hand the trailer to the backend as data.
func TestCoalesceSkipsUDPLengthMismatch(t *testing.T) {
	set, _ := lb.Build(lb.Spec{Scheduler: "round_robin", Backends: []lb.Backend{{Addr: tBack, Weight: 1}}}, nil)
	svc := nat.Service{ID: 1, Name: "dns", Addrs: []netip.Addr{tVIP}, Masquerade: true, Set4: set,
		Ports: []nat.Port{{Proto: packet.ProtoUDP, Port: 7000, TargetPort: 7000}}}
	var rp atomic.Pointer[nat.Rules]
	rp.Store(nat.NewRules(nat.Spec{Services: []nat.Service{svc}, Masquerade: []netip.Addr{tMasq}, PortLo: 1024, PortHi: 65535}))
	tr := &nat.Translator{CT: conntrack.New(conntrack.Config{MaxEntries: 1024})}
	dgram := func(trailer string) []byte {
		b := pkttest.P{Proto: 17, Src: tClient, Dst: tVIP, Sport: 4000, Dport: 7000, Payload: "0123456789"}.Build(t)
		b = append(b, trailer...) // inside the IP packet, after the UDP datagram
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		binary.BigEndian.PutUint16(b[10:], 0)
		binary.BigEndian.PutUint16(b[10:], ^packet.Checksum(b[:20], 0))
		return withVnet(b, false)
	}
	in := [][]byte{dgram("XXXX"), dgram(""), dgram("")}
	dev := tun.NewMem(in, true, len(in))
	dev.UDPSeg, dev.Keep = true, true
	w := NewWorker(dev, tr, &rp, nil)
	if err := w.Step(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, wpkt := range dev.Kept {
		for _, d := range segmentUDP(t, wpkt) {
			var p packet.Packet
			if r := p.Parse(d); r != packet.OK {
				t.Fatalf("segment: %v", r)
			}
			got = append(got, string(p.Payload()))
		}
	}
	if fmt.Sprint(got) != "[0123456789 0123456789 0123456789]" || len(dev.Kept) != 2 {
		t.Fatalf("%d writes, datagrams %q; want the padded one alone and three exact payloads", len(dev.Kept), got)
	}
}
