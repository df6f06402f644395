//go:build linux

package node

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/edgegate/edgegate/internal/netns"
)

// nftRuleText is the guard as the nft command line states it (the form edgegate installed
// before it wrote the table over netlink, and the form docs/operations.md shows).
const nftRuleText = `table inet edgegate_guard {
	chain syn {
		type filter hook forward priority -300; policy accept;
		oifname %q tcp flags & (syn | ack) == syn limit rate over %d/second burst %d packets counter drop
	}
}
`

func listGuard(t *testing.T, ns *netns.NS) string {
	t.Helper()
	out, err := ns.Exec("nft", "list", "table", "inet", synGuardTable)
	if err != nil {
		t.Fatalf("nft list: %v", err)
	}
	return regexp.MustCompile(`counter packets \d+ bytes \d+`).ReplaceAllString(out, "counter")
}

// onlyNetAdmin runs fn on a thread whose effective capabilities are CAP_NET_ADMIN alone (as
// after the privilege drop), then restores them.
func onlyNetAdmin(fn func() error) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var saved [2]unix.CapUserData
	if err := unix.Capget(&hdr, &saved[0]); err != nil {
		return err
	}
	narrow := saved
	narrow[0].Effective, narrow[1].Effective = 1<<unix.CAP_NET_ADMIN, 0
	if err := unix.Capset(&hdr, &narrow[0]); err != nil {
		return err
	}
	err := fn()
	if e := unix.Capset(&hdr, &saved[0]); e != nil {
		return fmt.Errorf("restore capabilities: %w", e)
	}
	return err
}

// TestSYNGuard: the guard written over netlink lists exactly as the nft rule it replaces (same
// meaning), is replaced as a whole when the rate changes, and is removed (idempotently), all with
// CAP_NET_ADMIN as the only effective capability.
func TestSYNGuard(t *testing.T) {
	ns := netns.ForTest(t, "eg-guard")
	ref := netns.ForTest(t, "eg-gref")
	for _, tc := range []struct{ rate, burst int }{{5000, 1000}, {100, 10}} {
		if err := ns.Do(func() error { return onlyNetAdmin(func() error { return installSYNGuard("edge0", tc.rate, tc.burst) }) }); err != nil {
			t.Fatalf("install %v: %v", tc, err)
		}
		file := filepath.Join(t.TempDir(), "guard.nft")
		if err := os.WriteFile(file, []byte(fmt.Sprintf(nftRuleText, "edge0", tc.rate, tc.burst)), 0o600); err != nil {
			t.Fatal(err)
		}
		ref.Exec("nft", "delete", "table", "inet", synGuardTable)
		if out, err := ref.Exec("nft", "-f", file); err != nil {
			t.Fatalf("nft -f: %v %s", err, out)
		}
		got, want := listGuard(t, ns), listGuard(t, ref)
		if got != want {
			t.Errorf("rate %d burst %d: netlink table lists as\n%s\nthe nft rule as\n%s", tc.rate, tc.burst, got, want)
		}
		if n := strings.Count(got, "limit rate"); n != 1 {
			t.Errorf("%d rules after install, want 1 (replaced as a whole):\n%s", n, got)
		}
	}
	for range 2 {
		if err := ns.Do(func() error { return onlyNetAdmin(removeSYNGuard) }); err != nil {
			t.Fatalf("remove: %v", err)
		}
	}
	if out, _ := ns.Exec("nft", "list", "tables"); strings.Contains(out, synGuardTable) {
		t.Errorf("guard table left after remove: %s", out)
	}
}
