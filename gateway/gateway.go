// Package gateway runs the packet path over a TUN device: it opens the device, installs routes and
// policy rules, starts one worker per queue and swaps the translation snapshot on reload.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/gateway/tun"
	"github.com/edgegate/edgegate/nat"
)

// Gateway is one running data path.
type Gateway struct {
	log     *slog.Logger
	cfg     atomic.Pointer[config.Config]
	rules   atomic.Pointer[nat.Rules]
	CT      *conntrack.Table
	tr      nat.Translator
	builder *ruleBuilder
	health  atomic.Pointer[HealthView]
	tap     atomic.Pointer[Tap]

	mu        sync.Mutex // serialises Start, Reload and Close
	devs      []tun.Device
	workers   []*Worker
	routing   *routing
	nodeAddrs []netip.Addr
	wg        sync.WaitGroup
	stop      chan struct{}
	ready     atomic.Bool
}

// New prepares a gateway for cfg (validated by config.Parse) without touching the system.
func New(cfg *config.Config, log *slog.Logger) (*Gateway, error) {
	if log == nil {
		log = slog.Default()
	}
	g := &Gateway{log: log, builder: newRuleBuilder(), stop: make(chan struct{})}
	g.CT = conntrack.New(conntrack.Config{
		MaxEntries: cfg.Conntrack.MaxEntries,
		Timeouts:   timeouts(cfg.Conntrack.Timeouts),
	})
	g.tr.CT = g.CT
	g.cfg.Store(cfg)
	return g, nil
}

func timeouts(t config.Timeouts) conntrack.Timeouts {
	d := func(x config.Duration) time.Duration { return time.Duration(x) }
	return conntrack.Timeouts{
		TCPSynSent: d(t.TCPSynSent), TCPSynRecv: d(t.TCPSynRecv), TCPEstablished: d(t.TCPEstablished),
		TCPFinWait: d(t.TCPFinWait), TCPCloseWait: d(t.TCPCloseWait), TCPLastAck: d(t.TCPLastAck),
		TCPTimeWait: d(t.TCPTimeWait), TCPClose: d(t.TCPClose), UDP: d(t.UDP), UDPStream: d(t.UDPStream), ICMP: d(t.ICMP),
	}
}

func boolOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

// Config returns the running configuration.
func (g *Gateway) Config() *config.Config { return g.cfg.Load() }

// Rules returns the running translation snapshot.
func (g *Gateway) Rules() *nat.Rules { return g.rules.Load() }

// Ready reports whether the TUN is up, routes are set and the config is loaded.
func (g *Gateway) Ready() bool { return g.ready.Load() }

// ServiceName maps a conntrack service label to the service's name.
func (g *Gateway) ServiceName(id uint32) string { return g.builder.ServiceName(id) }

// Start opens the device, sets routes and starts the workers and the expiry sweeper.
func (g *Gateway) Start() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	cfg := g.cfg.Load()
	manage := boolOr(cfg.TUN.ManageRoutes, true)
	if manage {
		if err := checkSysctls(cfg); err != nil {
			return fmt.Errorf("refusing to start: %w", err)
		}
	}
	devs, err := tun.Open(tun.Config{
		Name:       cfg.TUN.Name,
		MTU:        cfg.TUN.MTU,
		Queues:     cfg.TUN.Queues,
		Offload:    boolOr(cfg.TUN.Offload, true),
		TxQueueLen: cfg.TUN.TxQueueLen,
	})
	if err != nil {
		return err
	}
	g.devs = devs
	name := devs[0].Name()
	_, v6 := usesFamilies(cfg)
	if err := tuneTUN(name, v6); err != nil {
		g.closeDevs()
		return err
	}
	g.nodeAddrs = cfg.NodePorts.Addresses
	if len(g.nodeAddrs) == 0 {
		if g.nodeAddrs, err = nodeAddresses(name); err != nil {
			g.closeDevs()
			return err
		}
	}
	rules, err := g.builder.build(cfg, g.nodeAddrs, g.healthView())
	if err != nil {
		g.closeDevs()
		return err
	}
	g.rules.Store(rules)
	if manage {
		rt := cfg.TUN.RouteTable
		if rt == 0 {
			rt = 4242
		}
		g.routing, err = newRouting(name, rt)
		if err == nil {
			err = g.routing.apply(cfg, g.nodeAddrs)
		}
		if err != nil {
			if g.routing != nil {
				g.routing.removeAll()
			}
			g.closeDevs()
			return err
		}
	}
	for _, d := range devs {
		w := NewWorker(d, &g.tr, &g.rules, &g.tap)
		g.workers = append(g.workers, w)
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			w.Run(g.log)
		}()
	}
	g.wg.Add(1)
	go g.sweep()
	g.ready.Store(true)
	g.log.Info("gateway started", "tun", name, "queues", len(devs), "offload", devs[0].VnetHdr(), "services", len(cfg.Services), "node_addresses", g.nodeAddrs)
	return nil
}

func (g *Gateway) sweep() {
	defer g.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case now := <-t.C:
			g.CT.Sweep(now.UnixNano())
		}
	}
}

func (g *Gateway) closeDevs() {
	for _, d := range g.devs {
		d.Close()
	}
	g.devs = nil
}

// Reload swaps in a new validated configuration: rules are rebuilt and swapped atomically (the
// workers pick them up at their next batch), routes and rules are brought in line. Established
// flows keep their entries and so their backends. Settings that need a new device (tun.*) or a
// new table (conntrack.max_entries) are reported and keep their running values.
func (g *Gateway) Reload(cfg *config.Config) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.cfg.Load()
	if !tunEqual(old.TUN, cfg.TUN) {
		g.log.Warn("tun settings changed: they take effect on restart")
	}
	rules, err := g.builder.build(cfg, g.nodeAddrs, g.healthView())
	if err != nil {
		return err
	}
	g.cfg.Store(cfg)
	g.rules.Store(rules)
	g.dropStale(old, cfg)
	if g.routing != nil && boolOr(cfg.TUN.ManageRoutes, true) {
		if err := g.routing.apply(cfg, g.nodeAddrs); err != nil {
			return fmt.Errorf("apply routes: %w", err)
		}
	}
	return nil
}

func tunEqual(a, b config.TUN) bool {
	return a.Name == b.Name && a.MTU == b.MTU && a.Queues == b.Queues && boolOr(a.Offload, true) == boolOr(b.Offload, true) &&
		boolOr(a.ManageRoutes, true) == boolOr(b.ManageRoutes, true) && a.TxQueueLen == b.TxQueueLen && a.RouteTable == b.RouteTable
}

// dropStale deletes UDP (and ICMP) flows whose backend left its service, so the next datagram picks
// a live backend (the Kubernetes stale-UDP-conntrack failure), and flows of removed services. TCP
// flows to a removed backend continue until they end (drain).
func (g *Gateway) dropStale(old, cfg *config.Config) {
	live := map[string]map[netip.Addr]bool{}
	for _, s := range cfg.Services {
		m := map[netip.Addr]bool{}
		for _, b := range s.Backends {
			m[b.Address] = true
		}
		live[s.Name] = m
	}
	n := 0
	g.CT.Range(func(e *conntrack.Entry) bool {
		if e.Kind != nat.KindService {
			return true
		}
		name := g.builder.ServiceName(e.Service)
		backends, ok := live[name]
		if ok && backends[e.Tuple[conntrack.Reply].SrcAddr()] {
			return true
		}
		if e.Tuple[conntrack.Original].Proto != nat.ProtoTCP {
			if g.CT.Delete(e) {
				n++
			}
		}
		return true
	})
	if n > 0 {
		g.log.Info("deleted flows to removed backends", "flows", n)
	}
}

func (g *Gateway) healthView() HealthView {
	if h := g.health.Load(); h != nil {
		return *h
	}
	return nil
}

// SetHealth installs the view health checks report through and rebuilds the rules with it.
func (g *Gateway) SetHealth(h HealthView) error {
	g.health.Store(&h)
	g.mu.Lock()
	defer g.mu.Unlock()
	rules, err := g.builder.build(g.cfg.Load(), g.nodeAddrs, h)
	if err != nil {
		return err
	}
	g.rules.Store(rules)
	return nil
}

// SetTap starts (t != nil) or stops (nil) packet capture on every worker.
func (g *Gateway) SetTap(t Tap) {
	if t == nil {
		g.tap.Store(nil)
		return
	}
	g.tap.Store(&t)
}

// Counters sums the workers' counters.
func (g *Gateway) Counters() Snapshot {
	var s Snapshot
	g.mu.Lock()
	ws := g.workers
	g.mu.Unlock()
	for _, w := range ws {
		s.add(&w.C)
	}
	return s
}

// Close stops the workers, removes routes and rules and deletes the TUN.
func (g *Gateway) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ready.Store(false)
	var errs []error
	if g.routing != nil {
		if err := g.routing.removeAll(); err != nil {
			errs = append(errs, err)
		}
		g.routing = nil
	}
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	g.closeDevs()
	g.wg.Wait()
	return errors.Join(errs...)
}

// Run starts the gateway and stops it when ctx ends.
func (g *Gateway) Run(ctx context.Context) error {
	if err := g.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	return g.Close()
}
