package gateway

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/edgegate/edgegate/config"
)

// fakeSystem stands for the node's system side in Reload: it records the configuration each
// step applied last and fails the step named in failAt.
type fakeSystem struct {
	failAt  string
	persist bool
	routed  *config.Config
	guard   int // syn_rate_limit installed
	calls   []string
}

var errInjected = errors.New("injected failure")

func (f *fakeSystem) step(name string) error {
	f.calls = append(f.calls, name)
	if f.failAt == name {
		f.failAt = "" // the roll-back's own call succeeds
		return fmt.Errorf("%s: %w", name, errInjected)
	}
	return nil
}

func (f *fakeSystem) SetPersist(on bool) error {
	if err := f.step("persist"); err != nil {
		return err
	}
	f.persist = on
	return nil
}

func (f *fakeSystem) Reroute(cfg *config.Config, _ []netip.Addr) error {
	// A failing apply may have changed part of the routes: record it before failing.
	f.routed = cfg
	return f.step("routes")
}

func (f *fakeSystem) Guard(t config.TUN) error {
	if err := f.step("guard"); err != nil {
		return err
	}
	f.guard = t.SYNRateLimit
	return nil
}

func reloadCfg(t *testing.T, extra, backend string) *config.Config {
	t.Helper()
	y := "tun: {persist: " + extra + "}\nnat: {masquerade_addresses: [198.18.250.1]}\nservices:\n  - name: web\n" +
		"    addresses: [198.18.200.10]\n    ports: [{port: 80}]\n    backends: [{address: " + backend + "}]\n"
	c, err := config.Parse([]byte(y), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestReloadRollsBack: a reload is one transaction. A failure injected in each of its steps
// (building the rules, tun.persist, routes and rules, the SYN guard) leaves the running
// configuration and rules serving and every system step that ran applied with the running
// configuration again; without a failure everything changes together.
func TestReloadRollsBack(t *testing.T) {
	for _, failAt := range []string{"build", "persist", "routes", "guard", ""} {
		t.Run("fail_"+failAt, func(t *testing.T) {
			old := reloadCfg(t, "true", "198.19.1.2")
			old.TUN.SYNRateLimit = 1000
			g, err := New(old, nil)
			if err != nil {
				t.Fatal(err)
			}
			sys := &fakeSystem{persist: true, routed: old, guard: 1000}
			g.live = sys
			if err := g.SetHealth(nil); err != nil { // the running rules
				t.Fatal(err)
			}
			oldRules := g.Rules()
			next := reloadCfg(t, "false", "198.19.9.9")
			next.TUN.SYNRateLimit = 2000
			if failAt == "build" {
				next.Services[0].MaglevTableSize = 4 // not a prime: lb.Build refuses it
			}
			sys.failAt = failAt
			err = g.Reload(next)
			if failAt == "" {
				if err != nil {
					t.Fatal(err)
				}
				if g.Config() != next || g.Rules() == oldRules || sys.persist || sys.routed != next || sys.guard != 2000 {
					t.Fatalf("reload applied partly: persist %v routes %p (next %p) guard %d", sys.persist, sys.routed, next, sys.guard)
				}
				return
			}
			if err == nil {
				t.Fatal("reload with a failing step succeeded")
			}
			if g.Config() != old || g.Rules() != oldRules {
				t.Fatal("the failed reload swapped configuration or rules")
			}
			if b := g.Rules().Services()[0].Set4.Backends(); len(b) != 1 || b[0].Addr != netip.MustParseAddr("198.19.1.2") {
				t.Fatalf("running backends %v", b)
			}
			if !sys.persist || sys.routed != old || sys.guard != 1000 {
				t.Fatalf("not rolled back (calls %v): persist %v, routes %p (old %p), guard %d", sys.calls, sys.persist, sys.routed, old, sys.guard)
			}
			if failAt == "build" && len(sys.calls) > 0 {
				t.Fatalf("system changed before the rules were built: %v", sys.calls)
			}
			if i := slices.Index(sys.calls, failAt); failAt != "build" && slices.Contains(sys.calls[i+1:], "guard") && failAt != "guard" {
				t.Fatalf("steps after the failed one ran: %v", sys.calls)
			}
		})
	}
}
