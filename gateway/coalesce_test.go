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

// segments is what the kernel forwards for the frames a test device kept.
func segments(t *testing.T, kept [][]byte) [][]byte {
	t.Helper()
	var out [][]byte
	for _, f := range kept {
		segs, err := tun.MemSegments(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, segs...)
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
				return tun.MemFrame(pkttest.P{Proto: 17, Src: fam.client, Dst: fam.vip, Sport: sport, Dport: 7000, Payload: payload}.Build(t), false)
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
			for _, d := range segments(t, dev.Kept) {
				pk := pkttest.Verify(t, d)
				var p packet.Packet
				p.Parse(d)
				if p.Dst != fam.back || p.Src != fam.masq || p.DstPort != 7000 {
					t.Fatalf("segment %v:%d -> %v:%d", p.Src, p.SrcPort, p.Dst, p.DstPort)
				}
				got = append(got, string(pk.ApplicationLayer().Payload()))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("datagrams after segmentation:\n%q\nwant\n%q", got, want)
			}
			if w.C.TxPackets.Load() != 7 || w.C.Coalesced.Load() != 6 {
				t.Fatalf("tx packets %d, coalesced %d, want 7 datagrams, 6 coalesced", w.C.TxPackets.Load(), w.C.Coalesced.Load())
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
		return tun.MemFrame(b, false)
	}
	in := [][]byte{dgram("XXXX"), dgram(""), dgram("")}
	dev := tun.NewMem(in, true, len(in))
	dev.UDPSeg, dev.Keep = true, true
	w := NewWorker(dev, tr, &rp, nil)
	if err := w.Step(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range segments(t, dev.Kept) {
		var p packet.Packet
		if r := p.Parse(d); r != packet.OK {
			t.Fatalf("segment: %v", r)
		}
		got = append(got, string(p.Payload()))
	}
	if fmt.Sprint(got) != "[0123456789 0123456789 0123456789]" || len(dev.Kept) != 2 {
		t.Fatalf("%d writes, datagrams %q; want the padded one alone and three exact payloads", len(dev.Kept), got)
	}
}
