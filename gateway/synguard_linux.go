//go:build linux

package gateway

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// synGuardTable is the nftables table edgegate owns for its SYN guard.
const synGuardTable = "edgegate_guard"

// installSYNGuard limits the TCP connection attempts (SYN without ACK) the kernel forwards into
// the TUN to rate per second with burst, dropping the excess in the forward hook before it reaches
// the device's ring: there a flood would otherwise displace established flows' packets, since the
// ring drops without regard to the flow. This kernel has neither the flower classifier nor the
// police action, so the guard is an nft rule in edgegate's own table (replaced as a whole).
func installSYNGuard(tun string, rate, burst int) error {
	removeSYNGuard()
	rules := fmt.Sprintf(`table inet %s {
	chain syn {
		type filter hook forward priority -300; policy accept;
		oifname %q tcp flags & (syn | ack) == syn limit rate over %d/second burst %d packets counter drop
	}
}
`, synGuardTable, tun, rate, burst)
	if out, err := nft(strings.NewReader(rules), "-f", "-"); err != nil {
		return fmt.Errorf("install SYN guard (tun.syn_rate_limit) with nft: %w: %s", err, out)
	}
	return nil
}

// removeSYNGuard deletes the guard table if it exists.
func removeSYNGuard() {
	nft(nil, "delete", "table", "inet", synGuardTable)
}

func nft(stdin *strings.Reader, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nft", args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
