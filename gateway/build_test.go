package gateway

import (
	"net/netip"
	"testing"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/nat"
)

func cfgWith(t *testing.T, backends ...string) *config.Config {
	t.Helper()
	y := "nat: {masquerade_addresses: [198.18.250.1]}\nservices:\n  - name: web\n    addresses: [198.18.200.10]\n    ports: [{port: 80}]\n    backends:\n"
	for _, b := range backends {
		y += "      - {address: " + b + "}\n"
	}
	c, err := config.Parse([]byte(y), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A backend removed while it still has flows and added back keeps its live-flow counter, so live
// plus ended flows (backend_selections_total) never goes down; once it has no flow and is gone,
// its counter is forgotten.
func TestActiveCountersSurviveRemoveAndReadd(t *testing.T) {
	rb := newRuleBuilder()
	b2 := netip.MustParseAddr("198.19.2.2")
	r, err := buildCommit(rb, cfgWith(t, "198.19.1.2", "198.19.2.2"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var first = r.Services()[0].Set4.Backends()[1]
	if first.Addr != b2 {
		t.Fatalf("backend order: %v", first.Addr)
	}
	first.Active.Add(3) // three live flows on b2
	if _, err := buildCommit(rb, cfgWith(t, "198.19.1.2"), nil, nil); err != nil {
		t.Fatal(err)
	}
	r, err = buildCommit(rb, cfgWith(t, "198.19.1.2", "198.19.2.2"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	again := r.Services()[0].Set4.Backends()[1]
	if again.Active != first.Active || again.Active.Load() != 3 {
		t.Fatalf("re-added backend got a new counter (%d live flows)", again.Active.Load())
	}
	again.Active.Add(-3)
	buildCommit(rb, cfgWith(t, "198.19.1.2"), nil, nil)
	if _, ok := rb.active[activeKey{"web", b2}]; ok {
		t.Fatal("counter of a removed backend without flows kept")
	}
}

// buildCommit builds and commits, as a successful start or reload does.
func buildCommit(rb *ruleBuilder, cfg *config.Config, nodeAddrs []netip.Addr, h HealthView) (*nat.Rules, error) {
	r, commit, err := rb.build(cfg, nodeAddrs, h)
	if err == nil {
		commit()
	}
	return r, err
}
