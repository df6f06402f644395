//go:build linux

// Package node is the gateway's system side on the edge node: the TUN device's queues and the
// instance lock that claims its name, the sysctls the data path needs, the netlink routes and
// policy rules into the device, and the nft SYN guard in front of it. It knows the configuration
// (which addresses to route, which limits to install) but nothing of packets, flows, rules or
// backends: the data plane (package gateway) drives it and owns everything that moves packets.
//
// Every set-up step that changes the system is undone by a matching step; Start pushes those on a
// Stack, so a failed start unwinds exactly what it did, in reverse order.
package node

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/gateway/tun"
)

// Node is the system state one gateway set up: the device's queues, the instance lock, the
// routes and rules, the SYN guard. Its methods are called with the gateway's lock held.
type Node struct {
	log      *slog.Logger
	name     string // the device's name, known before its queues when borrowed
	devs     []tun.Device
	instance io.Closer
	routing  *routing
	guard    guard          // what is installed
	filter   *tun.SYNFilter // the SYN prefilter attached to the device (nil: none)
	// Borrowed: the device, routes, rules and guard are a predecessor's (hand-over in
	// progress); releasing them only closes this process's descriptors.
	Borrowed bool
}

// guard is the installed SYN guard's setting (rate 0: none).
type guard struct{ rate, burst int }

// New returns a Node that has set nothing up yet.
func New(log *slog.Logger) *Node { return &Node{log: log} }

// Devices returns the device's open queues (one per worker).
func (n *Node) Devices() []tun.Device { return n.devs }

// Name is the device's name ("" before Open or Borrow).
func (n *Node) Name() string { return n.name }

// Borrow makes the node a predecessor's device name (hand-over): its queues come later by
// Adopt, and until Own nothing of the device, routes, rules and guard is removed.
func (n *Node) Borrow(name string) {
	n.name = name
	n.Borrowed = true
}

// Own ends the borrowing: from now on Close, Unroute and Unguard remove as usual.
func (n *Node) Own() { n.Borrowed = false }

// Open takes the instance lock and opens the device's queues, reattaching to a persistent
// device an earlier process left (reattach). On error nothing is left open.
func (n *Node) Open(cfg *config.TUN) (reattach bool, err error) {
	lock, err := lockInstance(cfg.Name)
	if err != nil {
		return false, err
	}
	n.instance = lock
	reattach = tun.Exists(cfg.Name)
	tcfg := tun.Config{Name: cfg.Name, MTU: cfg.MTU, Queues: cfg.Queues, Offload: cfg.Offload,
		TxQueueLen: cfg.TxQueueLen, Persist: cfg.Persist}
	devs, err := tun.Open(tcfg)
	if err != nil && reattach {
		// Left by a process with other tun settings (queues, offload): the kernel refuses to
		// attach; its flows cannot be kept, so start over with a new device.
		n.log.Warn("the persistent TUN left by an earlier process does not match tun settings: replacing it", "tun", cfg.Name, "err", err)
		if err = tun.Delete(cfg.Name); err == nil {
			reattach = false
			devs, err = tun.Open(tcfg)
		}
	}
	if err != nil {
		n.releaseInstance()
		return false, err
	}
	n.devs, n.name = devs, devs[0].Name()
	n.Steer()
	n.FilterSYNs(*cfg)
	return reattach, nil
}

// Adopt takes over queues and an instance lock a predecessor handed over (hand-over).
func (n *Node) Adopt(devs []tun.Device, lock io.Closer) {
	n.devs = append(n.devs, devs...)
	if lock != nil {
		n.instance = lock
	}
}

// Instance is the instance lock (hand-over: its descriptor is passed on).
func (n *Node) Instance() io.Closer { return n.instance }

// Steer isolates new flows on a multi-queue device: TCP connection attempts go to the last
// queue, everything else to the others (tun.Steer). Without it (a kernel or privileges that
// refuse the program) the device spreads packets by flow hash and a SYN flood shares every
// queue's ring with established flows: warned, not fatal.
func (n *Node) Steer() {
	if len(n.devs) < 2 {
		return
	}
	if err := tun.Steer(n.devs[0], len(n.devs)); err != nil {
		n.log.Warn("TUN queues not steered: a SYN flood shares the queues of established flows", "err", err)
		return
	}
	n.log.Info("TUN queues steered", "new_flow_queue", tun.SYNQueue(len(n.devs)), "flow_queues", len(n.devs)-1)
}

// FilterSYNs attaches the SYN prefilter (tun.FilterSYNs) while tun.syn_proxy is not off and
// detaches it when it is. Without it (a kernel that refuses the program) a flood's SYNs all
// reach the new-flow worker: warned, not fatal. Called once serving.
func (n *Node) FilterSYNs(t config.TUN) {
	want := t.SYNProxy != config.SYNProxyOff
	if want == (n.filter != nil) || len(n.devs) == 0 {
		return
	}
	if !want {
		n.stopFilter()
		if err := tun.Unfilter(n.devs[0]); err != nil {
			n.log.Warn("SYN prefilter not detached", "err", err)
		}
		return
	}
	f, err := tun.FilterSYNs(n.devs[0])
	if err != nil {
		n.log.Warn("SYN prefilter not attached: every SYN of a flood reaches the new-flow worker", "err", err)
		return
	}
	n.filter = f
	n.log.Info("SYN prefilter attached", "rate", tun.SYNFilterRate, "retry_rate", tun.SYNFilterRetryRate)
}

// SYNFilterStats returns the SYN prefilter's verdicts (zero without it).
func (n *Node) SYNFilterStats() tun.SYNFilterStats {
	if n.filter == nil {
		return tun.SYNFilterStats{}
	}
	return n.filter.Stats()
}

// stopFilter stops this process's part of the prefilter (the device keeps the program: a
// successor replaces it).
func (n *Node) stopFilter() {
	if n.filter != nil {
		n.filter.Close()
		n.filter = nil
	}
}

// SetPersist changes the device's persistence (tun.persist, the one tun key a reload applies).
func (n *Node) SetPersist(on bool) error {
	if len(n.devs) == 0 {
		return nil
	}
	return tun.SetPersist(n.devs[0], on)
}

// CloseQueues closes this process's queue descriptors without removing the device (hand-over).
func (n *Node) CloseQueues() {
	for _, d := range n.devs {
		d.Close()
	}
	n.devs = nil
}

// Close removes the device (persistent or not; a borrowed one is only closed) and releases the
// instance lock: a failed start and the clean exit leave nothing behind.
func (n *Node) Close() error {
	defer n.releaseInstance()
	n.stopFilter()
	if n.Borrowed {
		n.CloseQueues() // the predecessor still serves on them
		return nil
	}
	err := tun.Remove(n.devs)
	n.devs = nil
	if err != nil {
		return fmt.Errorf("removing the TUN: %w", err)
	}
	return nil
}

func (n *Node) releaseInstance() {
	if n.instance != nil {
		n.instance.Close()
		n.instance = nil
	}
}

// Prepare tunes the device's sysctls and returns the addresses node ports are served on: the
// configured ones, or the namespace's global addresses if none.
func (n *Node) Prepare(cfg *config.Config) (nodeAddrs []netip.Addr, err error) {
	_, v6 := usesFamilies(cfg)
	if err := tuneTUN(n.Name(), v6); err != nil {
		return nil, err
	}
	if len(cfg.NodePorts.Addresses) > 0 {
		return cfg.NodePorts.Addresses, nil
	}
	return nodeAddresses(n.Name())
}

// CheckSysctls refuses settings that would silently blackhole traffic (tun.manage_routes).
func CheckSysctls(cfg *config.Config) error {
	if err := checkSysctls(cfg); err != nil {
		return fmt.Errorf("refusing to start: %w", err)
	}
	return nil
}

// Route installs the routes and rules cfg needs (tun.manage_routes) and, after a reattach,
// prunes what an earlier process left that cfg does not need. On error it removes what it
// installed.
func (n *Node) Route(cfg *config.Config, nodeAddrs []netip.Addr, reattach bool) error {
	if !cfg.TUN.ManageRoutes {
		return nil
	}
	r, err := newRouting(n.Name(), cfg.TUN.RouteTable)
	if err != nil {
		return err
	}
	n.routing = r
	err = r.apply(cfg, nodeAddrs)
	if err == nil && reattach {
		err = r.prune()
	}
	if err != nil {
		n.Unroute()
	}
	return err
}

// Reroute brings the routes and rules in line with cfg (reload; nothing when routes are not
// managed). Applying the previous configuration again undoes it.
func (n *Node) Reroute(cfg *config.Config, nodeAddrs []netip.Addr) error {
	if n.routing == nil || !cfg.TUN.ManageRoutes {
		return nil
	}
	if err := n.routing.apply(cfg, nodeAddrs); err != nil {
		return fmt.Errorf("apply routes: %w", err)
	}
	return nil
}

// Unroute removes the routes and rules installed (a borrowed node's stay the predecessor's).
func (n *Node) Unroute() error {
	r := n.routing
	n.routing = nil
	if r == nil || n.Borrowed {
		return nil
	}
	return r.removeAll()
}

// Guard installs, changes or removes the SYN guard (tun.syn_rate_limit, tun.syn_burst) to match t.
func (n *Node) Guard(t config.TUN) error {
	want := guard{}
	if t.SYNRateLimit > 0 {
		want = guard{t.SYNRateLimit, t.SYNBurst}
	}
	if want == n.guard {
		return nil
	}
	if want.rate == 0 {
		return n.Unguard()
	}
	if err := installSYNGuard(n.Name(), want.rate, want.burst); err != nil {
		return err
	}
	n.guard = want
	n.log.Info("SYN guard installed", "rate", want.rate, "burst", want.burst)
	return nil
}

// Unguard removes the SYN guard if one is installed (a borrowed node's stays).
func (n *Node) Unguard() error {
	if n.guard.rate == 0 {
		return nil
	}
	if !n.Borrowed {
		if err := removeSYNGuard(); err != nil {
			return err
		}
		n.log.Info("SYN guard removed")
	}
	n.guard = guard{}
	return nil
}

// Detach forgets the routes, rules, guard and instance lock without removing them: a successor
// owns them now (hand-over complete).
func (n *Node) Detach() {
	n.stopFilter()
	n.routing = nil
	n.guard = guard{}
	n.releaseInstance()
}

// Stack is a clean-up stack: each set-up step that changed the system pushes its undo, and a
// failure unwinds them in reverse order. Release keeps what was set up (the start succeeded).
type Stack struct{ undo []func() error }

// Push records the undo of a step that succeeded.
func (s *Stack) Push(undo func() error) { s.undo = append(s.undo, undo) }

// Unwind runs the undos, last first, and returns their errors joined.
func (s *Stack) Unwind() error {
	var errs []error
	for i := len(s.undo) - 1; i >= 0; i-- {
		if err := s.undo[i](); err != nil {
			errs = append(errs, err)
		}
	}
	s.undo = nil
	return errors.Join(errs...)
}

// Release drops the undos: what was set up stays.
func (s *Stack) Release() { s.undo = nil }
