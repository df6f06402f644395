package main

import (
	"fmt"
	"log/slog"
	"net"
	"os/user"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/psx"

	"github.com/edgegate/edgegate/config"
)

// lastCap is the highest capability number we clear from the bounding set; unknown numbers
// above the kernel's are refused with EINVAL and skipped.
const lastCap = 63

// dropPrivileges keeps only CAP_NET_ADMIN (route, rule and TUN changes on reload and shutdown),
// plus CAP_NET_BIND_SERVICE when the ingress has a listener below port 1024 (reload may reopen
// it), on every thread, and optionally switches to an unprivileged user first. Already open
// descriptors (TUN queues, listeners) keep working.
func dropPrivileges(userName string, cfg *config.Config, log *slog.Logger) error {
	keep := uint64(1) << unix.CAP_NET_ADMIN
	if cfg.Ingress != nil {
		for _, l := range cfg.Ingress.Listeners {
			if _, p, err := net.SplitHostPort(l.Address); err == nil {
				if n, _ := strconv.Atoi(p); n > 0 && n < 1024 {
					keep |= 1 << unix.CAP_NET_BIND_SERVICE
				}
			}
		}
	}
	// Clear the bounding set so nothing dropped can come back through exec.
	for c := 0; c <= lastCap; c++ {
		if keep&(1<<c) != 0 {
			continue
		}
		_, _, e := psx.Syscall3(syscall.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0)
		if e == syscall.EPERM {
			// No CAP_SETPCAP (e.g. a container given only NET_ADMIN): the effective and
			// permitted sets below are still narrowed, which is what matters without exec.
			log.Warn("bounding set kept: no CAP_SETPCAP")
			break
		}
		if e != 0 && e != syscall.EINVAL {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, e)
		}
	}
	if userName != "" {
		u, err := user.Lookup(userName)
		if err != nil {
			return fmt.Errorf("user %q: %w", userName, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		// Keep the permitted set across the uid change, then narrow it below.
		if _, _, e := psx.Syscall3(syscall.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 1, 0); e != 0 {
			return fmt.Errorf("PR_SET_KEEPCAPS: %w", e)
		}
		for _, c := range []struct {
			what    string
			nr      uintptr
			a, b, c uintptr
		}{
			{"setgroups", unix.SYS_SETGROUPS, 0, 0, 0},
			{"setresgid", unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)},
			{"setresuid", unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)},
		} {
			if _, _, e := psx.Syscall3(c.nr, c.a, c.b, c.c); e != 0 {
				return fmt.Errorf("%s to %s: %w", c.what, userName, e)
			}
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	data[0].Effective, data[0].Permitted = uint32(keep), uint32(keep)
	data[1].Effective, data[1].Permitted = uint32(keep>>32), uint32(keep>>32)
	// capset acts on the calling thread only; psx runs it on every thread of the process.
	if _, _, e := psx.Syscall3(unix.SYS_CAPSET, uintptr(unsafePointer(&hdr)), uintptr(unsafePointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("capset: %w", e)
	}
	log.Info("privileges dropped", "user", userName, "capabilities", capNames(keep))
	return nil
}

func capNames(m uint64) []string {
	var out []string
	if m&(1<<unix.CAP_NET_ADMIN) != 0 {
		out = append(out, "CAP_NET_ADMIN")
	}
	if m&(1<<unix.CAP_NET_BIND_SERVICE) != 0 {
		out = append(out, "CAP_NET_BIND_SERVICE")
	}
	return out
}
