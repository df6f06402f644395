package gateway

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/nat"
	"github.com/edgegate/edgegate/packet"
)

func clusterGateway(t *testing.T) *Gateway {
	t.Helper()
	cfg, err := config.Parse([]byte(`nat: {masquerade_addresses: [198.18.250.1]}
services:
  - name: web
    addresses: [198.18.200.10]
    ports: [{port: 80, target_port: 8080}]
    scheduler: maglev
    backends: [{address: 198.19.1.2}, {address: 198.19.2.2}]
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g, _ := New(cfg, slog.New(slog.DiscardHandler))
	if err := g.SetHealth(nil); err != nil {
		t.Fatal(err)
	}
	return g
}

func peerFlow(client string, backend string, port uint16) [2]conntrack.Tuple {
	return [2]conntrack.Tuple{
		conntrack.MakeTuple(packet.ProtoTCP, netip.MustParseAddr(client), netip.MustParseAddr("198.18.200.10"), 40000, 80),
		conntrack.MakeTuple(packet.ProtoTCP, netip.MustParseAddr(backend), netip.MustParseAddr("198.18.250.1"), 8080, port),
	}
}

// TestPeerLabels: a peer's service flow gets this node's service id and the backend's live-flow
// counter; a flow to an address that is no service here, or of an unknown kind, is refused;
// egress flows need no labels.
func TestPeerLabels(t *testing.T) {
	g := clusterGateway(t)
	tu := peerFlow("203.0.113.5", "198.19.2.2", 30000)
	id, load, ok := g.PeerLabels(nat.KindService, &tu)
	svc := g.Rules().Services()[0]
	if !ok || id != svc.ID || load == nil {
		t.Fatalf("labels %d %v %v, want service %d and a counter", id, load, ok, svc.ID)
	}
	for _, b := range svc.Set4.Backends() {
		if b.Addr == netip.MustParseAddr("198.19.2.2") && b.Active != load {
			t.Fatal("not the backend's live-flow counter")
		}
	}
	other := tu
	other[0].Dst = netip.MustParseAddr("198.18.200.99").As16()
	if _, _, ok := g.PeerLabels(nat.KindService, &other); ok {
		t.Fatal("a flow to no service of this node accepted")
	}
	if _, _, ok := g.PeerLabels(9, &tu); ok {
		t.Fatal("unknown kind accepted")
	}
	if _, load, ok := g.PeerLabels(nat.KindEgress, &tu); !ok || load != nil {
		t.Fatal("egress flow refused")
	}
}

// TestFlowSyncEvents: with a flow sync installed the table's events reach it; without, nothing
// does. A hand-over snapshot keeps a peer flow's origin.
func TestFlowSyncEvents(t *testing.T) {
	g := clusterGateway(t)
	var got []conntrack.Event
	g.SetFlowSync(func(_ *conntrack.Entry, ev conntrack.Event) { got = append(got, ev) })
	now := time.Now().UnixNano()
	id := g.Rules().Services()[0].ID
	e := &conntrack.Entry{Kind: nat.KindService, Origin: 3, Service: id, Tuple: peerFlow("203.0.113.5", "198.19.1.2", 30001)}
	if _, err := g.CT.Install(e, conntrack.Saved{State: conntrack.StateEstablished, Assured: true, SeenReply: true}, now); err != nil {
		t.Fatal(err)
	}
	g.SetFlowSync(nil)
	f := &conntrack.Entry{Kind: nat.KindService, Origin: 3, Service: id, Tuple: peerFlow("203.0.113.6", "198.19.1.2", 30002)}
	g.CT.Install(f, conntrack.Saved{State: conntrack.StateEstablished}, now)
	if len(got) != 1 || got[0] != conntrack.EventInserted {
		t.Fatalf("events %v, want one insert", got)
	}

	next := clusterGateway(t)
	for _, sf := range g.saveFlows() {
		if err := next.restoreFlow(&sf, now); err != nil {
			t.Fatal(err)
		}
	}
	next.CT.Range(func(x *conntrack.Entry) bool {
		if x.Origin != 3 {
			t.Errorf("flow %v handed over with origin %d, want 3", x.Tuple[0], x.Origin)
		}
		return true
	})
	if next.CT.Len() != 2 {
		t.Fatalf("%d flows handed over, want 2", next.CT.Len())
	}
}
