//go:build linux

package tun_test

import (
	"testing"

	"github.com/edgegate/edgegate/gateway/tun"
	"github.com/edgegate/edgegate/internal/netns"
)

// TestPersistReattach: a persistent device survives its queues being closed without Remove (a
// process killed), keeps its routes, takes the queues of the next Open of its name, refuses a
// different queue mode, and Remove deletes it.
func TestPersistReattach(t *testing.T) {
	for _, c := range []struct {
		name    string
		queues  int
		offload bool
	}{{"single", 1, false}, {"multi", 2, false}, {"multi offload", 2, true}, {"single offload", 1, true}} {
		t.Run(c.name, func(t *testing.T) {
			ns := netns.ForTest(t, "tunp")
			cfg := tun.Config{Name: "egp0", MTU: 1500, Queues: c.queues, Offload: c.offload, Persist: true}
			var devs []tun.Device
			open := func(cfg tun.Config) (err error) {
				return ns.Do(func() (err error) { devs, err = tun.Open(cfg); return })
			}
			exists := func() (ok bool) {
				ns.Do(func() error { ok = tun.Exists("egp0"); return nil })
				return
			}
			if err := open(cfg); err != nil {
				t.Fatal(err)
			}
			if err := ns.Route("198.18.77.0/24", "dev", "egp0"); err != nil {
				t.Fatal(err)
			}
			for _, d := range devs {
				d.Close() // the process dies: no Remove
			}
			if !exists() {
				t.Fatal("persistent device gone with its queues")
			}
			if out, _ := ns.Exec("ip", "route", "show", "198.18.77.0/24"); out == "" {
				t.Fatal("route through the persistent device gone with its queues")
			}
			other := cfg
			other.Queues = 3 - c.queues // the other queue mode
			if err := open(other); err == nil {
				t.Fatal("attached with another queue mode")
			}
			if err := open(cfg); err != nil {
				t.Fatalf("reattach: %v", err)
			}
			if len(devs) != c.queues || devs[0].Name() != "egp0" {
				t.Fatalf("reattached %d queues of %q", len(devs), devs[0].Name())
			}
			if out, _ := ns.Exec("ip", "route", "show", "198.18.77.0/24"); out == "" {
				t.Fatal("route gone after reattaching")
			}
			if err := ns.Do(func() error { return tun.Remove(devs) }); err != nil {
				t.Fatal(err)
			}
			if exists() {
				t.Fatal("Remove left the device")
			}
		})
	}
}

// TestDeleteOnlyTUN: Delete refuses a device that is not a TUN.
func TestDeleteOnlyTUN(t *testing.T) {
	ns := netns.ForTest(t, "tund")
	if err := ns.IP("link", "add", "egd0", "type", "veth", "peer", "name", "egd1"); err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(func() error { return tun.Delete("egd0") }); err == nil {
		t.Fatal("deleted a veth device")
	}
}
