package gateway_test

import (
	"net/netip"
	"testing"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/gateway"
	"github.com/edgegate/edgegate/ingress"
)

// The ingress counts its requests in flight when its Upstreams implement ActiveUpstreams.
var _ ingress.ActiveUpstreams = (*gateway.Gateway)(nil)

// TestLeastConnSeesL7Load: requests the ingress holds open on a backend (it adds one to the counter
// PickActive returns for each request in flight) steer least_conn to the other backend, and the
// scheduler weighs them with the data path's flows (Rules' lb sets).
func TestLeastConnSeesL7Load(t *testing.T) {
	cfg, err := config.Parse([]byte(`nat: {masquerade_addresses: [198.18.250.1]}
services:
  - name: web
    addresses: [198.18.200.10]
    ports: [{port: 80, target_port: 8080}]
    scheduler: least_conn
    backends: [{address: 198.19.1.2}, {address: 198.19.2.2}]
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.SetHealth(nil); err != nil { // builds the running rules
		t.Fatal(err)
	}
	client := netip.MustParseAddr("198.18.1.2")
	held := map[netip.Addr]int{}
	for range 10 { // ten long requests in flight
		addr, active, ok := g.PickActive("web", 80, client)
		if !ok || active == nil || addr.Port() != 8080 {
			t.Fatalf("PickActive: %v %v %v", addr, active, ok)
		}
		active.Add(1)
		held[addr.Addr()]++
	}
	if held[netip.MustParseAddr("198.19.1.2")] != 5 || held[netip.MustParseAddr("198.19.2.2")] != 5 {
		t.Fatalf("least_conn with L7 requests in flight chose %v, want 5 and 5", held)
	}
	for _, b := range g.Rules().Services()[0].Set4.Backends() {
		if n, f := b.Requests.Load(), b.Active.Load(); n != 5 || f != 0 {
			t.Errorf("backend %v: %d requests and %d flows counted, want 5 and 0 (requests are not flows)", b.Addr, n, f)
		}
	}
	// The data path's flows count too: 6 flows on 198.19.2.2 send the next requests to the other.
	g.Rules().Services()[0].Set4.Backends()[1].Active.Add(6)
	if addr, _, _ := g.PickActive("web", 80, client); addr.Addr() != netip.MustParseAddr("198.19.1.2") {
		t.Errorf("least_conn ignored the flows: picked %v", addr)
	}
}
