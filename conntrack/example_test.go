package conntrack_test

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/packet"
)

// The data path's use of the table: look the packet up; on a miss create the flow (if the
// packet may start one) with its NAT reply tuple; then advance the state machine.
func Example() {
	tb := conntrack.New(conntrack.Config{MaxEntries: 1024})
	now := int64(1_700_000_000e9)

	client, vip := netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("203.0.113.5")
	backend, masq := netip.MustParseAddr("198.18.0.20"), netip.MustParseAddr("198.18.0.1")
	syn := &packet.Packet{Proto: packet.ProtoTCP, Src: client, Dst: vip, SrcPort: 40000, DstPort: 80, TCPFlags: 0x02}

	k := conntrack.TupleOf(syn)
	e, dir := tb.Lookup(&k, now)
	if e == nil && conntrack.NewFlowOK(syn) {
		e = &conntrack.Entry{Tuple: [2]conntrack.Tuple{k, conntrack.MakeTuple(packet.ProtoTCP, backend, masq, 8080, 50000)}}
		e.Init(syn, now)
		if winner, err := tb.Insert(e, now); errors.Is(err, conntrack.ErrExists) {
			e = winner // another worker created it first: use its translation
		}
		dir = conntrack.Original
	}
	synAck := &packet.Packet{Proto: packet.ProtoTCP, Src: backend, Dst: masq, SrcPort: 8080, DstPort: 50000, TCPFlags: 0x12}
	rk := conntrack.TupleOf(synAck)
	re, rdir := tb.Lookup(&rk, now)
	fmt.Println(dir, e.State(), re == e, rdir, re.Update(rdir, synAck, now), re.State())
	// Output: original syn_sent true reply true syn_recv
}
