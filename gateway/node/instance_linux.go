//go:build linux

package node

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
)

// lockInstance claims the TUN name for this process in this network namespace: an abstract
// Unix socket (Linux: abstract names are per network namespace and vanish with their process,
// kill -9 included, so no stale lock survives a crash). A second edgegate for the same TUN would
// otherwise attach its queues to the first one's persistent multi-queue device and take half of
// its flows; it is refused instead.
func lockInstance(tunName string) (io.Closer, error) {
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: "@edgegate/tun/" + tunName, Net: "unix"})
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("another edgegate runs with tun %s in this network namespace", tunName)
	}
	if err != nil {
		return nil, fmt.Errorf("instance lock for tun %s: %w", tunName, err)
	}
	return l, nil
}
