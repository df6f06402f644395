package packet_test

import (
	"net/netip"
	"testing"

	"github.com/edgegate/edgegate/internal/pkttest"
	"github.com/edgegate/edgegate/packet"
	"github.com/google/gopacket/layers"
)

var (
	cli4, svc4 = netip.MustParseAddr("198.18.1.2"), netip.MustParseAddr("198.18.200.10")
	cli6, svc6 = netip.MustParseAddr("2001:db8:1::2"), netip.MustParseAddr("2001:db8:200::10")
)

func TestMakeTCPReset(t *testing.T) {
	for _, tc := range []struct {
		name             string
		in               pkttest.P
		wantSeq, wantAck uint32
		wantFlags        packet.TCPFlags
	}{
		{"SYN v4", pkttest.P{Proto: 6, Src: cli4, Dst: svc4, Sport: 40000, Dport: 80, Flags: "S"}, 0, 1001, packet.TCPRst | packet.TCPAck},
		{"SYN with data v6", pkttest.P{Proto: 6, Src: cli6, Dst: svc6, Sport: 40000, Dport: 80, Flags: "S", Payload: "hello"}, 0, 1006, packet.TCPRst | packet.TCPAck},
		{"ACK v4", pkttest.P{Proto: 6, Src: cli4, Dst: svc4, Sport: 40000, Dport: 80, Flags: "A", Payload: "x"}, 1, 0, packet.TCPRst},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := make([]byte, 0, 2048)
			b = append(b, tc.in.Build(t)...)
			var p packet.Packet
			if r := p.Parse(b); r != packet.OK {
				t.Fatal(r)
			}
			if !p.MakeTCPReset() {
				t.Fatal("MakeTCPReset refused a TCP segment")
			}
			pk := pkttest.Verify(t, p.B)
			tcp := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if p.Src != tc.in.Dst || p.Dst != tc.in.Src || uint16(tcp.SrcPort) != tc.in.Dport || uint16(tcp.DstPort) != tc.in.Sport {
				t.Fatalf("reset %v:%d -> %v:%d", p.Src, tcp.SrcPort, p.Dst, tcp.DstPort)
			}
			if tcp.Seq != tc.wantSeq || tcp.Ack != tc.wantAck || p.TCPFlags != tc.wantFlags || len(tcp.Payload) != 0 {
				t.Fatalf("seq %d ack %d flags %#x payload %d, want %d %d %#x 0", tcp.Seq, tcp.Ack, p.TCPFlags, len(tcp.Payload), tc.wantSeq, tc.wantAck, tc.wantFlags)
			}
		})
	}
	var p packet.Packet
	b := pkttest.P{Proto: 17, Src: cli4, Dst: svc4, Sport: 1, Dport: 53}.Build(t)
	p.Parse(b)
	if p.MakeTCPReset() {
		t.Fatal("MakeTCPReset accepted UDP")
	}
}

func TestMakePortUnreachable(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    pkttest.P
		quote int
	}{
		{"v4 small", pkttest.P{Proto: 17, Src: cli4, Dst: svc4, Sport: 5353, Dport: 53, Payload: "query"}, 33},
		{"v4 big quoted to 576", pkttest.P{Proto: 17, Src: cli4, Dst: svc4, Sport: 5353, Dport: 53, Payload: string(make([]byte, 1400))}, 576 - 28},
		{"v6", pkttest.P{Proto: 17, Src: cli6, Dst: svc6, Sport: 5353, Dport: 53, Payload: string(make([]byte, 1400))}, 1280 - 48},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := tc.in.Build(t)
			b := make([]byte, 0, 4096)
			b = append(b, orig...)
			var p packet.Packet
			p.Parse(b)
			if !p.MakePortUnreachable() {
				t.Fatal("refused")
			}
			pkttest.Verify(t, p.B)
			if p.Src != tc.in.Dst || p.Dst != tc.in.Src || !p.IsICMPError {
				t.Fatalf("answer %v -> %v error %v", p.Src, p.Dst, p.IsICMPError)
			}
			in, r := p.Inner()
			if r != packet.OK || in.Src != tc.in.Src || in.SrcPort != tc.in.Sport || in.DstPort != tc.in.Dport {
				t.Fatalf("quoted %v:%d -> :%d (%v)", in.Src, in.SrcPort, in.DstPort, r)
			}
			if got := len(p.B) - p.L4Off - packet.ICMPLen; got != tc.quote {
				t.Fatalf("quoted %d bytes, want %d", got, tc.quote)
			}
		})
	}
	// No room behind the packet: nothing changes.
	orig := pkttest.P{Proto: 17, Src: cli4, Dst: svc4, Sport: 1, Dport: 53}.Build(t)
	b := append([]byte(nil), orig...)[:len(orig):len(orig)]
	var p packet.Packet
	p.Parse(b)
	if p.MakePortUnreachable() || string(b) != string(orig) {
		t.Fatal("answer built without room")
	}
}
