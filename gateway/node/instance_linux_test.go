//go:build linux

package node

import (
	"testing"

	"github.com/edgegate/edgegate/internal/netns"
)

// TestInstanceLock: one edgegate per TUN name and network namespace; another name or another
// namespace is free, and the lock is free again once released.
func TestInstanceLock(t *testing.T) {
	a, b := netns.ForTest(t, "lck"), netns.ForTest(t, "lck")
	lock := func(ns *netns.NS, name string) (c interface{ Close() error }, err error) {
		err = ns.Do(func() (err error) { c, err = lockInstance(name); return })
		return
	}
	first, err := lock(a, "edge0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock(a, "edge0"); err == nil {
		t.Fatal("a second lock on edge0 in the same namespace")
	}
	for _, c := range []struct {
		ns   *netns.NS
		name string
	}{{a, "edge1"}, {b, "edge0"}} {
		l, err := lock(c.ns, c.name)
		if err != nil {
			t.Fatalf("%s in %s: %v", c.name, c.ns.Name, err)
		}
		l.Close()
	}
	first.Close()
	again, err := lock(a, "edge0")
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	again.Close()
}
