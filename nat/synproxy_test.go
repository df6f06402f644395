package nat

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/internal/pkttest"
	"github.com/edgegate/edgegate/packet"
	"github.com/edgegate/edgegate/synproxy"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// tcpSeg is a TCP segment for the SYN proxy tests, serialised into a buffer with room behind it
// (as the gateway's buffers have).
type tcpSeg struct {
	src, dst     netip.AddrPort
	seq, ack     uint32
	flags        string
	win          uint16
	mss          uint16 // 0: no MSS option
	ws           int    // -1: no window scale
	sackOK       bool
	ts           bool
	tsval, tsecr uint32
	sack         [2]uint32 // one SACK block when sack[1] != 0
	payload      int
}

func (s tcpSeg) build(t testing.TB) []byte {
	t.Helper()
	tcp := &layers.TCP{SrcPort: layers.TCPPort(s.src.Port()), DstPort: layers.TCPPort(s.dst.Port()), Seq: s.seq, Ack: s.ack, Window: s.win}
	for _, c := range s.flags {
		switch c {
		case 'S':
			tcp.SYN = true
		case 'A':
			tcp.ACK = true
		case 'R':
			tcp.RST = true
		case 'F':
			tcp.FIN = true
		}
	}
	be := binary.BigEndian
	if s.mss != 0 {
		tcp.Options = append(tcp.Options, layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: be.AppendUint16(nil, s.mss)})
	}
	if s.sackOK {
		tcp.Options = append(tcp.Options, layers.TCPOption{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2})
	}
	if s.ts {
		tcp.Options = append(tcp.Options, layers.TCPOption{OptionType: layers.TCPOptionKindNop}, layers.TCPOption{OptionType: layers.TCPOptionKindNop},
			layers.TCPOption{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: be.AppendUint32(be.AppendUint32(nil, s.tsval), s.tsecr)})
	}
	if s.sack[1] != 0 {
		tcp.Options = append(tcp.Options, layers.TCPOption{OptionType: layers.TCPOptionKindNop}, layers.TCPOption{OptionType: layers.TCPOptionKindNop},
			layers.TCPOption{OptionType: layers.TCPOptionKindSACK, OptionLength: 10, OptionData: be.AppendUint32(be.AppendUint32(nil, s.sack[0]), s.sack[1])})
	}
	if s.ws >= 0 {
		tcp.Options = append(tcp.Options, layers.TCPOption{OptionType: layers.TCPOptionKindNop}, layers.TCPOption{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{byte(s.ws)}})
	}
	ip := pkttest.IPLayer(s.src.Addr(), s.dst.Addr(), layers.IPProtocolTCP)
	tcp.SetNetworkLayerForChecksum(ip.(gopacket.NetworkLayer))
	b := pkttest.Serialize(t, ip, tcp, gopacket.Payload(make([]byte, s.payload)))
	return append(make([]byte, 0, 2048), b...)
}

// proxyFixture is a fixture with the SYN proxy in mode.
func proxyFixture(t *testing.T, mode synproxy.Mode) *fixture {
	f := newFixture(t, true, "round_robin", b1, b6)
	f.tr.Proxy = synproxy.SecretFrom([32]byte{7})
	f.tr.CT = conntrack.New(conntrack.Config{MaxEntries: 1 << 16, OnDelete: f.tr.FlowRemoved})
	f.rules.proxy = mode
	return f
}

func tsOf(t *testing.T, p *packet.Packet) (val, ecr uint32) {
	t.Helper()
	o, ok := synproxy.ParseOptions(p.TCP())
	if !ok || !o.TS {
		t.Fatalf("no timestamps in %v", p.TCP()[:p.TCP().DataOffset()])
	}
	return o.TSVal, o.TSEcr
}

// TestSYNProxyFlow: a connection opened through the proxy, IPv4 and IPv6: no entry for the SYN,
// the cookie ACK opens the backend connection, the backend's SYN-ACK is consumed, data flows
// with shifted sequence numbers, timestamps and SACK blocks both ways.
func TestSYNProxyFlow(t *testing.T) {
	for _, tc := range []struct {
		name         string
		client, vip  netip.Addr
		back, masqAt netip.Addr
	}{{"ipv4", client, vip, b1, masq}, {"ipv6", client6, vip6, b6, masq6}} {
		t.Run(tc.name, func(t *testing.T) {
			f := proxyFixture(t, synproxy.On)
			cl, sv := netip.AddrPortFrom(tc.client, 40000), netip.AddrPortFrom(tc.vip, 80)
			const isn, iss = 1000, 900000
			v, why, p := f.run(t, tcpSeg{src: cl, dst: sv, seq: isn, flags: "S", win: 64240, mss: 1460, ws: 7, sackOK: true, ts: true, tsval: 50}.build(t))
			if v != Cookie || f.tr.CT.Len() != 0 || !pkttest.ChecksumsValid(p.B) {
				t.Fatalf("SYN: %v %v, %d entries", v, why, f.tr.CT.Len())
			}
			cookie := p.TCP().Seq()
			_, ecr := tsOf(t, p)
			ourTS, _ := tsOf(t, p)
			if p.Src != tc.vip || p.Dst != tc.client || ecr != 50 {
				t.Fatalf("SYN-ACK %v -> %v echoes %d", p.Src, p.Dst, ecr)
			}
			v, why, p = f.run(t, tcpSeg{src: cl, dst: sv, seq: isn + 1, ack: cookie + 1, flags: "A", win: 502, ws: -1, ts: true, tsval: 51, tsecr: ourTS}.build(t))
			if v != ProxyOpen || f.tr.CT.Len() != 1 || f.tr.ProxiedFlows() != 1 || !pkttest.ChecksumsValid(p.B) {
				t.Fatalf("cookie ACK: %v %v, %d entries", v, why, f.tr.CT.Len())
			}
			if p.TCPFlags != packet.TCPSyn || p.Dst != tc.back || p.DstPort != 8080 || p.Src != tc.masqAt || p.TCP().Seq() != isn {
				t.Fatalf("backend SYN: flags %#x %v:%d -> %v:%d seq %d", p.TCPFlags, p.Src, p.SrcPort, p.Dst, p.DstPort, p.TCP().Seq())
			}
			bside := netip.AddrPortFrom(p.Src, p.SrcPort)
			bk := netip.AddrPortFrom(tc.back, 8080)
			// A client probe before the backend answered re-sends the SYN.
			if v, why, q := f.run(t, tcpSeg{src: cl, dst: sv, seq: isn, ack: cookie + 1, flags: "A", ws: -1}.build(t)); v != ProxyResend || q.TCPFlags != packet.TCPSyn || q.Dst != tc.back {
				t.Fatalf("probe while pending: %v %v", v, why)
			}
			b := tcpSeg{src: bk, dst: bside, seq: iss, ack: isn + 1, flags: "SA", win: 65160, mss: 1460, ws: 9, sackOK: true, ts: true, tsval: 7000, tsecr: 51}.build(t)
			v, why, p = f.run(t, b)
			if v != ProxySplice || p.TCPFlags != packet.TCPAck || p.Dst != tc.back || p.Src != tc.masqAt || p.TCP().Seq() != isn+1 || p.TCP().Ack() != iss+1 || !pkttest.ChecksumsValid(p.B) {
				t.Fatalf("SYN-ACK splice: %v %v, ACK %v -> %v seq %d ack %d", v, why, p.Src, p.Dst, p.TCP().Seq(), p.TCP().Ack())
			}
			var q packet.Packet
			if r := q.Parse(b[ExtraOff:cap(b)]); r != packet.OK || q.Src != tc.vip || q.Dst != tc.client || q.DstPort != 40000 || q.TCP().Seq() != cookie+1 || q.TCP().Ack() != isn+1 || !pkttest.ChecksumsValid(q.B) {
				t.Fatalf("window opening: %v %v -> %v seq %d", r, q.Src, q.Dst, q.TCP().Seq())
			}
			if e, _ := f.tr.CT.Lookup(ptr(conntrack.MakeTuple(packet.ProtoTCP, tc.client, tc.vip, 40000, 80)), f.now); e == nil || e.State() != conntrack.StateEstablished || !e.Assured() {
				t.Fatal("flow not established and assured after the splice")
			}
			// Backend data reaches the client in its sequence space.
			v, _, p = f.run(t, tcpSeg{src: bk, dst: bside, seq: iss + 1, ack: isn + 1, flags: "A", win: 100, ws: -1, ts: true, tsval: 7010, tsecr: 51, payload: 100}.build(t))
			if tv, _ := tsOf(t, p); v != Forward || p.Dst != tc.client || p.TCP().Seq() != cookie+1 || tv != ourTS+10 || !pkttest.ChecksumsValid(p.B) {
				t.Fatalf("backend data: %v seq %d (want %d) tsval %d (want %d)", v, p.TCP().Seq(), cookie+1, tv, ourTS+10)
			}
			// The client's ACK and SACK reach the backend in its space.
			v, _, p = f.run(t, tcpSeg{src: cl, dst: sv, seq: isn + 1, ack: cookie + 101, flags: "A", win: 500, ws: -1, ts: true, tsval: 52, tsecr: ourTS + 10, sack: [2]uint32{cookie + 201, cookie + 301}}.build(t))
			o, _ := synproxy.ParseOptions(p.TCP())
			if v != Forward || p.Dst != tc.back || p.TCP().Ack() != iss+101 || o.TSEcr != 7010 || !pkttest.ChecksumsValid(p.B) {
				t.Fatalf("client ACK: %v ack %d (want %d) tsecr %d", v, p.TCP().Ack(), iss+101, o.TSEcr)
			}
			h := p.TCP()
			opts := h[packet.TCPMinLen:h.DataOffset()]
			if i := indexSACK(opts); i < 0 || binary.BigEndian.Uint32(opts[i+2:]) != iss+201 || binary.BigEndian.Uint32(opts[i+6:]) != iss+301 {
				t.Fatalf("SACK block not moved to the backend's space: %x", opts)
			}
			// The proxied connection is forgotten with its flow.
			e, _ := f.tr.CT.Lookup(ptr(conntrack.MakeTuple(packet.ProtoTCP, tc.client, tc.vip, 40000, 80)), f.now)
			if !f.tr.CT.Delete(e) || f.tr.ProxiedFlows() != 0 {
				t.Fatalf("%d proxied flows after the flow's deletion", f.tr.ProxiedFlows())
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func indexSACK(opts []byte) int {
	for i := 0; i < len(opts); {
		switch opts[i] {
		case 0:
			return -1
		case 1:
			i++
		case 5:
			return i
		default:
			if i+1 >= len(opts) || opts[i+1] < 2 {
				return -1
			}
			i += int(opts[i+1])
		}
	}
	return -1
}

// TestSYNProxyModes: on answers every SYN to a TCP service port and drops bad cookies; off
// forwards SYNs; auto forwards until the attempts exceed the rate's burst, then answers.
func TestSYNProxyModes(t *testing.T) {
	cl, sv := netip.AddrPortFrom(client, 40000), netip.AddrPortFrom(vip, 80)
	f := proxyFixture(t, synproxy.On)
	if v, why, _ := f.run(t, tcpSeg{src: cl, dst: sv, seq: 1, ack: 12345, flags: "A", ws: -1}.build(t)); v != Drop || why != BadCookie {
		t.Errorf("forged cookie ACK in mode on: %v %v", v, why)
	}
	f = proxyFixture(t, synproxy.Off)
	if v, _, _ := f.run(t, tcpSeg{src: cl, dst: sv, seq: 1, flags: "S", ws: -1}.build(t)); v != Forward {
		t.Errorf("SYN in mode off: %v", v)
	}
	if v, why, _ := f.run(t, tcpSeg{src: cl, dst: netip.AddrPortFrom(vip, 81), seq: 1, ack: 12345, flags: "A", ws: -1}.build(t)); v != Drop || why != Invalid {
		t.Errorf("stray ACK in mode off: %v %v", v, why)
	}
	f = proxyFixture(t, synproxy.Auto)
	forwarded := 0
	for i := range synproxy.AutoBurst + 50 {
		v, _, _ := f.run(t, tcpSeg{src: netip.AddrPortFrom(client, uint16(2000+i)), dst: sv, seq: 1, flags: "S", ws: -1}.build(t))
		switch v {
		case Forward:
			forwarded++
		case Cookie:
		default:
			t.Fatalf("SYN %d in mode auto: %v", i, v)
		}
	}
	if forwarded != synproxy.AutoBurst || !f.tr.SYNProxyEngaged(f.now) {
		t.Errorf("mode auto forwarded %d SYNs of a burst (want %d) and engaged: %v", forwarded, synproxy.AutoBurst, f.tr.SYNProxyEngaged(f.now))
	}
}

// TestSYNProxyNoPort: a valid cookie ACK that gets no flow (here: the one masquerade port is
// taken by an established flow) is answered with a RST the client accepts (at the cookie's next
// sequence number) instead of leaving it on a closed window.
func TestSYNProxyNoPort(t *testing.T) {
	f := proxyFixture(t, synproxy.On)
	f.rules.portLo, f.rules.portHi = 5000, 5000
	sv := netip.AddrPortFrom(vip, 80)
	var cookies [2]uint32
	for i := range cookies {
		_, _, p := f.run(t, tcpSeg{src: netip.AddrPortFrom(client, uint16(40000+i)), dst: sv, seq: 1, flags: "S", ws: -1}.build(t))
		cookies[i] = p.TCP().Seq()
	}
	if v, why, _ := f.run(t, tcpSeg{src: netip.AddrPortFrom(client, 40000), dst: sv, seq: 2, ack: cookies[0] + 1, flags: "A", ws: -1}.build(t)); v != ProxyOpen {
		t.Fatalf("first cookie ACK: %v %v", v, why)
	}
	bside := netip.AddrPortFrom(masq, 5000)
	if v, why, _ := f.run(t, tcpSeg{src: netip.AddrPortFrom(b1, 8080), dst: bside, seq: 77, ack: 2, flags: "SA", ws: -1}.build(t)); v != ProxySplice {
		t.Fatalf("first splice: %v %v", v, why)
	}
	v, why, p := f.run(t, tcpSeg{src: netip.AddrPortFrom(client, 40001), dst: sv, seq: 2, ack: cookies[1] + 1, flags: "A", ws: -1}.build(t))
	if v != Local || why != PortExhausted || p.TCPFlags&packet.TCPRst == 0 || p.Dst != client || p.DstPort != 40001 || p.TCP().Seq() != cookies[1]+1 || !pkttest.ChecksumsValid(p.B) {
		t.Fatalf("cookie ACK without a port: %v %v, flags %#x seq %d (want RST at %d)", v, why, p.TCPFlags, p.TCP().Seq(), cookies[1]+1)
	}
	if f.tr.ProxiedFlows() != 1 {
		t.Errorf("%d proxied flows, want 1", f.tr.ProxiedFlows())
	}
}
