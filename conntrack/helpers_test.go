package conntrack

import (
	"net/netip"
	"testing"

	"github.com/edgegate/edgegate/packet"
)

// Documentation-range addresses used by the tests.
var (
	client  = netip.MustParseAddr("198.51.100.10")
	vip     = netip.MustParseAddr("203.0.113.5")
	backend = netip.MustParseAddr("198.18.0.20")
	masq    = netip.MustParseAddr("198.18.0.1")
	client6 = netip.MustParseAddr("2001:db8:1::10")
	vip6    = netip.MustParseAddr("2001:db8:2::5")
)

const sec = int64(1e9)

// t0 is an arbitrary start time (unix ns) far from zero.
const t0 = 1_700_000_000 * sec

// Flag shorthands.
const (
	fSYN    = packet.TCPSyn
	fSYNACK = packet.TCPSyn | packet.TCPAck
	fACK    = packet.TCPAck
	fFINACK = packet.TCPFin | packet.TCPAck
	fRST    = packet.TCPRst
	fPSHACK = packet.TCPPsh | packet.TCPAck
)

// pkt fills a packet.Packet by hand, as the parser would for these headers.
func pkt(proto packet.Proto, src, dst netip.Addr, sport, dport uint16) *packet.Packet {
	v := uint8(4)
	if src.Is6() {
		v = 6
	}
	return &packet.Packet{Version: v, Proto: proto, Src: src, Dst: dst, SrcPort: sport, DstPort: dport}
}

func tcpPkt(flags packet.TCPFlags) *packet.Packet {
	p := pkt(packet.ProtoTCP, client, vip, 40000, 80)
	p.TCPFlags = flags
	return p
}

// tcpDirPkt is a TCP segment of the test flow in direction d (addresses as seen on the wire
// after NAT for replies).
func tcpDirPkt(d Dir, flags packet.TCPFlags) *packet.Packet {
	p := pkt(packet.ProtoTCP, client, vip, 40000, 80)
	if d == Reply {
		p = pkt(packet.ProtoTCP, backend, masq, 8080, 50000)
	}
	p.TCPFlags = flags
	return p
}

// dirOf is the direction of a test packet: Reply when it comes from the backend.
func dirOf(p *packet.Packet) Dir {
	if p.Src == backend {
		return Reply
	}
	return Original
}

func udpPkt(src, dst netip.Addr, sport, dport uint16) *packet.Packet {
	return pkt(packet.ProtoUDP, src, dst, sport, dport)
}

func echoPkt(reply bool, id uint16) *packet.Packet {
	if reply {
		p := pkt(packet.ProtoICMP, vip, client, 0, id)
		p.ICMPType = 0
		return p
	}
	p := pkt(packet.ProtoICMP, client, vip, id, 0)
	p.ICMPType = 8
	return p
}

// natEntry builds the entry of a client -> vip flow DNATed to backend and masqueraded to
// masq:mport, initialised from its first packet p.
func natEntry(p *packet.Packet, mport uint16, now int64) *Entry {
	o := TupleOf(p)
	e := &Entry{Tuple: [2]Tuple{o, MakeTuple(o.Proto, backend, masq, 8080, mport)}, Service: 7}
	if o.Proto == packet.ProtoICMP {
		e.Tuple[Reply] = MakeTuple(o.Proto, backend, masq, 0, mport)
	}
	e.Init(p, now)
	return e
}

// mustInsert inserts e or fails the test.
func mustInsert(t testing.TB, tb *Table, e *Entry, now int64) {
	t.Helper()
	if got, err := tb.Insert(e, now); err != nil || got != e {
		t.Fatalf("Insert(%v) = %p, %v; want %p, nil", e.Tuple[Original], got, err, e)
	}
}

// assureUDP makes UDP entry e assured as netfilter would: a reply at now, then traffic again
// once UDPStreamDelay has passed since its creation at created. It returns the time of the
// last packet.
func assureUDP(t testing.TB, e *Entry, created, now int64) int64 {
	t.Helper()
	e.Update(Reply, udpPkt(backend, masq, 8080, e.Tuple[Reply].DstPort), now)
	later := max(now, created+int64(UDPStreamDelay)+streamTickNs)
	o := e.Tuple[Original]
	e.Update(Original, udpPkt(o.SrcAddr(), o.DstAddr(), o.SrcPort, o.DstPort), later)
	if !e.Assured() {
		t.Fatalf("%v not assured after a reply and traffic at +%v", o, later-created)
	}
	return later
}

// streamTickNs is one tick of Entry.streamAt.
const streamTickNs = int64(1) << streamUnit
