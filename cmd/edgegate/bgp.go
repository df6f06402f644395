package main

import (
	"time"

	"github.com/edgegate/edgegate/bgp"
	"github.com/edgegate/edgegate/config"
)

// The daemon's BGP speaker: started with the data path when the config has a bgp section, told
// what to announce after every health flip, reload and readiness change, and the first thing a
// shutdown stops (withdraw, wait bgp.withdraw_delay, then drain).

// startBGP starts the speaker for cfg.BGP (nothing without one) and announces.
func (d *daemon) startBGP(cfg *config.Config) error {
	if cfg.BGP == nil {
		return nil
	}
	sp, err := bgp.Start(cfg.BGP, d.log)
	if err != nil {
		return err
	}
	d.bgpMu.Lock()
	d.bgp = sp
	d.bgpMu.Unlock()
	d.reg.MustRegister(sp)
	d.announce()
	return nil
}

// announce tells the speaker what the node serves now. It runs from the main loop and from
// health probers; the lock keeps a stale answer from overtaking a newer one.
func (d *daemon) announce() {
	d.bgpMu.Lock()
	defer d.bgpMu.Unlock()
	if d.bgp == nil || d.g == nil {
		return
	}
	want := bgp.Prefixes(d.g.Config(), d.g.Ready(), d.checker.Healthy)
	if err := d.bgp.Announce(want); err != nil {
		d.log.Error("bgp announcement failed", "err", err)
	}
}

// reloadBGP applies a reloaded bgp section: starts, reconfigures or stops the speaker.
func (d *daemon) reloadBGP(next *config.Config) error {
	d.bgpMu.Lock()
	sp := d.bgp
	d.bgpMu.Unlock()
	switch {
	case next.BGP != nil && sp == nil:
		return d.startBGP(next)
	case next.BGP == nil && sp != nil:
		d.bgpMu.Lock()
		d.bgp = nil
		d.bgpMu.Unlock()
		d.reg.Unregister(sp)
		err := sp.Withdraw()
		sp.Stop()
		return err
	case sp != nil:
		err := sp.Reconfigure(next.BGP)
		d.announce()
		return err
	}
	return nil
}

// withdrawBGP is the first step of a shutdown: every prefix withdrawn, then bgp.withdraw_delay
// for the routers to move new flows elsewhere while this node still serves everything.
func (d *daemon) withdrawBGP() error {
	d.bgpMu.Lock()
	sp := d.bgp
	d.bgpMu.Unlock()
	if sp == nil {
		return nil
	}
	if err := sp.Withdraw(); err != nil {
		return err
	}
	delay := sp.WithdrawDelay()
	d.log.Info("bgp: prefixes withdrawn, waiting before draining", "withdraw_delay", delay)
	time.Sleep(delay) // the configured grace, not a wait for a condition: routers do not ack
	return nil
}

// stopBGP closes the sessions (last: the node stays a known neighbour while it drains).
func (d *daemon) stopBGP() {
	d.bgpMu.Lock()
	sp := d.bgp
	d.bgp = nil
	d.bgpMu.Unlock()
	if sp != nil {
		sp.Stop()
	}
}

// bgpStatus is the speaker's part of /status (nil without a speaker).
func (d *daemon) bgpStatus() *bgp.Status {
	d.bgpMu.Lock()
	sp := d.bgp
	d.bgpMu.Unlock()
	if sp == nil {
		return nil
	}
	st := sp.Status()
	return &st
}
