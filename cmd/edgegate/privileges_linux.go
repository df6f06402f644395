package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
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

// DefaultUser is the user edgegate runs as after setup unless -user says otherwise ("root":
// stay uid 0, still with only the capabilities below).
const DefaultUser = "nobody"

// Securebits (linux/securebits.h): each flag, then its lock one bit above.
const (
	secbitNoRoot            = 1 << 0
	secbitNoRootLocked      = 1 << 1
	secbitNoSetuidFixup     = 1 << 2
	secbitNoSetuidFixupLock = 1 << 3
	secbitKeepCapsLocked    = 1 << 5
	secbitNoAmbientRaise    = 1 << 6
	secbitNoAmbientRaiseLck = 1 << 7
)

// lockedSecurebits: uid 0 gains no capabilities through exec or setuid (NOROOT,
// NO_SETUID_FIXUP), capabilities are not kept across a uid change (KEEP_CAPS off) and nothing can
// be raised into the ambient set, each locked so that no later code can undo it.
const lockedSecurebits = secbitNoRoot | secbitNoRootLocked | secbitNoSetuidFixup | secbitNoSetuidFixupLock |
	secbitKeepCapsLocked | secbitNoAmbientRaise | secbitNoAmbientRaiseLck

// runUser is the account to switch to; uid < 0 means stay.
type runUser struct {
	name     string
	uid, gid int
}

// lookupRunUser resolves -user before start (the admin socket's directory is given to it).
func lookupRunUser(name string) (runUser, error) {
	if name == "" || name == "root" {
		return runUser{name: "root", uid: -1, gid: -1}, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return runUser{}, fmt.Errorf("-user %q: %w", name, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return runUser{}, fmt.Errorf("-user %q: %w", name, err)
	}
	if uid == 0 {
		return runUser{name: name, uid: -1, gid: -1}, nil
	}
	return runUser{name: name, uid: uid, gid: gid}, nil
}

// dropPrivileges, once the TUN, routes and listeners are set up: switches to ru (no
// supplementary groups), keeps only CAP_NET_ADMIN (routes, rules, nftables and the TUN on
// reload and exit), plus CAP_NET_BIND_SERVICE when the ingress or the BGP speaker listens below port
// 1024 (reload may reopen it) and CAP_DAC_READ_SEARCH when the new user cannot read a file a reload
// reads (the configuration, a certificate or key), clears the bounding and ambient sets, locks
// the securebits and sets no_new_privs. Every step runs on every thread (psx). Already open
// descriptors (TUN queues, listeners, the admin socket) keep working.
func dropPrivileges(ru runUser, cfgPath string, cfg *config.Config, log *slog.Logger) error {
	keep := uint64(1) << unix.CAP_NET_ADMIN
	if bindsBelow1024(cfg) {
		keep |= 1 << unix.CAP_NET_BIND_SERVICE
	}
	if ru.uid >= 0 {
		if err := switchUser(ru); err != nil {
			return err
		}
	}
	// Only CAP_SETPCAP effective for the steps below: the file probe then sees what the process
	// can read without capabilities.
	if err := capset(1<<unix.CAP_SETPCAP|keep, ^uint64(0)); err != nil {
		return err
	}
	if unreadable := unreadableFiles(cfgPath, cfg); len(unreadable) > 0 {
		keep |= 1 << unix.CAP_DAC_READ_SEARCH
		log.Info("keeping CAP_DAC_READ_SEARCH: reloads read files the user cannot", "user", ru.name, "files", unreadable)
	}
	if err := capset(1<<unix.CAP_SETPCAP|keep, ^uint64(0)); err != nil {
		return err
	}
	if err := lockDown(keep, log); err != nil {
		return err
	}
	if err := capset(keep, keep); err != nil {
		return err
	}
	if _, _, e := prctl(unix.PR_SET_NO_NEW_PRIVS, 1); e != 0 {
		return fmt.Errorf("PR_SET_NO_NEW_PRIVS: %w", e)
	}
	log.Info("privileges dropped", "user", ru.name, "capabilities", capNames(keep), "no_new_privs", true)
	return nil
}

func bindsBelow1024(cfg *config.Config) bool {
	if cfg.BGP != nil && cfg.BGP.ListenPort > 0 && cfg.BGP.ListenPort < 1024 { // a reload may restart the speaker
		return true
	}
	if cfg.Ingress == nil {
		return false
	}
	for _, l := range cfg.Ingress.Listeners {
		if _, p, err := net.SplitHostPort(l.Address); err == nil {
			if n, _ := strconv.Atoi(p); n > 0 && n < 1024 {
				return true
			}
		}
	}
	return false
}

// switchUser changes groups, gid and uid on every thread, keeping the permitted set.
func switchUser(ru runUser) error {
	if _, _, e := prctl(unix.PR_SET_KEEPCAPS, 1); e != 0 {
		return fmt.Errorf("PR_SET_KEEPCAPS: %w", e)
	}
	for _, c := range []struct {
		what    string
		nr      uintptr
		a, b, c uintptr
	}{
		{"setgroups", unix.SYS_SETGROUPS, 0, 0, 0},
		{"setresgid", unix.SYS_SETRESGID, uintptr(ru.gid), uintptr(ru.gid), uintptr(ru.gid)},
		{"setresuid", unix.SYS_SETRESUID, uintptr(ru.uid), uintptr(ru.uid), uintptr(ru.uid)},
	} {
		if _, _, e := psx.Syscall3(c.nr, c.a, c.b, c.c); e != 0 {
			return fmt.Errorf("%s to %s: %w", c.what, ru.name, e)
		}
	}
	return nil
}

// lockDown clears the bounding set but keep and the ambient set, and locks the securebits
// (needs CAP_SETPCAP: without it, e.g. in a container given only NET_ADMIN, the bounding set
// and securebits stay and a warning says so; effective and permitted sets are still narrowed,
// and no_new_privs still stops any exec from gaining).
func lockDown(keep uint64, log *slog.Logger) error {
	for c := 0; c <= lastCap; c++ {
		if keep&(1<<c) != 0 {
			continue
		}
		_, _, e := prctl(unix.PR_CAPBSET_DROP, uintptr(c))
		if e == syscall.EPERM {
			log.Warn("bounding set and securebits kept: no CAP_SETPCAP")
			return nil
		}
		if e != 0 && e != syscall.EINVAL {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, e)
		}
	}
	if _, _, e := prctl3(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); e != 0 && e != syscall.EINVAL {
		return fmt.Errorf("clear the ambient set: %w", e)
	}
	if _, _, e := prctl(unix.PR_SET_SECUREBITS, lockedSecurebits); e != 0 {
		return fmt.Errorf("PR_SET_SECUREBITS: %w", e)
	}
	return nil
}

// capset sets the effective and permitted sets (inheritable empty) on every thread; permitted
// is capped at what the thread has.
func capset(eff, prm uint64) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var cur [2]unix.CapUserData
	if err := unix.Capget(&hdr, &cur[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	prm &= uint64(cur[0].Permitted) | uint64(cur[1].Permitted)<<32
	eff &= prm
	var data [2]unix.CapUserData
	data[0].Effective, data[0].Permitted = uint32(eff), uint32(prm)
	data[1].Effective, data[1].Permitted = uint32(eff>>32), uint32(prm>>32)
	// capset acts on the calling thread only; psx runs it on every thread of the process.
	if _, _, e := psx.Syscall3(unix.SYS_CAPSET, uintptr(unsafePointer(&hdr)), uintptr(unsafePointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("capset: %w", e)
	}
	return nil
}

// unreadableFiles lists the files a reload reads (the configuration, certificates and keys)
// that the process cannot open now, with no capability effective for reading.
func unreadableFiles(cfgPath string, cfg *config.Config) []string {
	files := []string{cfgPath}
	if cfg.Ingress != nil {
		for _, l := range cfg.Ingress.Listeners {
			for _, c := range l.TLS {
				files = append(files, c.CertFile, c.KeyFile)
			}
		}
	}
	var out []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err == nil {
			fh.Close()
			continue
		}
		if errors.Is(err, fs.ErrPermission) {
			out = append(out, f)
		}
	}
	return out
}

func capNames(m uint64) []string {
	var out []string
	for _, c := range []struct {
		n    int
		name string
	}{{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"}, {unix.CAP_NET_BIND_SERVICE, "CAP_NET_BIND_SERVICE"}, {unix.CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH"}} {
		if m&(1<<c.n) != 0 {
			out = append(out, c.name)
		}
	}
	return out
}

// prctl runs prctl(option, arg, 0, 0, 0) on every thread: the unused arguments must be zero
// (PR_SET_NO_NEW_PRIVS and PR_CAP_AMBIENT refuse anything else).
func prctl(option, arg uintptr) (uintptr, uintptr, syscall.Errno) { return prctl3(option, arg, 0) }

func prctl3(option, arg, arg3 uintptr) (uintptr, uintptr, syscall.Errno) {
	return psx.Syscall6(syscall.SYS_PRCTL, option, arg, arg3, 0, 0, 0)
}
