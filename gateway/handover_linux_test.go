package gateway

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/config"
)

// TestCheckInherited: the handed-over TUN must match the configuration's name and queue count,
// except a queue count the file leaves to the default (one per CPU), which follows the running
// device.
func TestCheckInherited(t *testing.T) {
	st := TUNState{Name: "edge0", Queues: 3}
	for _, tc := range []struct {
		name string
		n    int
		cfg  config.TUN
		ok   bool
	}{
		{"same", 3, config.TUN{Name: "edge0", Queues: 3}, true},
		{"explicit other count", 3, config.TUN{Name: "edge0", Queues: 2}, false},
		{"default other count", 3, config.TUN{Name: "edge0", Queues: 2, QueuesDefault: true}, true},
		{"other name", 3, config.TUN{Name: "edge1", Queues: 3}, false},
		{"descriptors missing", 2, config.TUN{Name: "edge0", Queues: 3, QueuesDefault: true}, false},
	} {
		err := checkInherited(st, tc.n, tc.cfg)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// TestServicesHandedOver: a successor (a gateway built afresh from the same configuration) gets
// the predecessor's affinity entries, so each client keeps its backend, and the snapshot carries
// every backend's live-flow count and health verdict.
func TestServicesHandedOver(t *testing.T) {
	y := `nat: {masquerade_addresses: [198.18.250.1]}
services:
  - name: web
    addresses: [198.18.200.10]
    ports: [{port: 80}]
    scheduler: round_robin
    session_affinity: client_ip
    backends: [{address: 198.19.1.2}, {address: 198.19.2.2}, {address: 198.19.3.2}]
`
	cfg, err := config.Parse([]byte(y), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	down := netip.MustParseAddr("198.19.3.2")
	health := func(_ string, b netip.Addr) bool { return b != down }
	log := slog.New(slog.DiscardHandler)
	old, _ := New(cfg, log)
	if err := old.SetHealth(health); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixNano()
	set := old.Rules().Services()[0].Set4
	had := map[netip.Addr]netip.Addr{}
	for i := range 40 {
		c := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
		b, _ := set.Pick(c, uint64(i), now)
		had[c] = b.Addr
		b.Active.Add(1)
	}
	saved := old.saveServices(now)
	if len(saved) != 1 || saved[0].Name != "web" || len(saved[0].Affinity) != 40 || len(saved[0].Backends) != 3 {
		t.Fatalf("snapshot: %+v", saved)
	}
	var active int64
	for _, b := range saved[0].Backends {
		active += b.Active
		if b.Healthy != (b.Address != down) {
			t.Errorf("backend %v saved healthy=%v", b.Address, b.Healthy)
		}
	}
	if active != 40 {
		t.Errorf("saved live flows %d, want 40", active)
	}

	next, _ := New(cfg, log)
	var out strings.Builder
	next.log = slog.New(slog.NewTextHandler(&out, nil))
	if err := next.SetHealth(health); err != nil {
		t.Fatal(err)
	}
	next.restoreServices(saved, now)
	if !strings.Contains(out.String(), "affinity_entries=40") {
		t.Errorf("restore log: %s", out.String())
	}
	set = next.Rules().Services()[0].Set4
	for c, b := range had {
		if got, _ := set.Pick(c, 0, now+1); got.Addr != b {
			t.Errorf("client %v: backend %v after the hand-over, had %v", c, got.Addr, b)
		}
	}
}
