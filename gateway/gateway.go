// Package gateway runs the packet path over a TUN device: it opens the device, installs routes and
// policy rules, starts one worker per queue and swaps the translation snapshot on reload.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/puzpuzpuz/xsync/v4"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/gateway/tun"
	"github.com/edgegate/edgegate/lb"
	"github.com/edgegate/edgegate/nat"
	"github.com/edgegate/edgegate/packet"
	"github.com/edgegate/edgegate/synproxy"
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
	sync    atomic.Pointer[FlowSync] // cluster flow sync (cluster.go); nil: none

	mu        sync.Mutex // serialises Start, Reload and Close
	devs      []tun.Device
	workers   []*Worker
	routing   *routing
	nodeAddrs []netip.Addr
	wg        sync.WaitGroup
	stop      chan struct{}
	wwg       sync.WaitGroup // the workers (wg: the sweeper)
	inherit   *inherited     // hand-over: what the predecessor passed, used by Start
	frozen    *frozen        // hand-over in progress: what Freeze kept for Thaw
	borrowed  bool           // inherited TUN and routes the predecessor still owns until Own
	paused    atomic.Bool    // frozen for a hand-over: no checkpoint (checkpoint_linux.go)
	started   bool           // Start completed: a clean Close removes the checkpoint
	ready     atomic.Bool
	guarded   bool           // the SYN guard table is installed
	synFilter *tun.SYNFilter // the SYN prefilter attached to the device (nil: none)
	instance  io.Closer      // held while running: one edgegate per TUN and namespace
	drainT    *time.Timer    // pending drain_timeout expiry of TCP flows to removed backends

	// ended counts service flows that left the table per (service, backend); with the backends'
	// Active gauges it gives selections per backend without touching the packet path's hot loop.
	ended *xsync.Map[flowKey, *atomic.Uint64]
}

// flowKey names a service backend in ended.
type flowKey struct {
	service uint32
	backend netip.Addr
}

// New prepares a gateway for cfg (validated by config.Parse) without touching the system.
func New(cfg *config.Config, log *slog.Logger) (*Gateway, error) {
	if log == nil {
		log = slog.Default()
	}
	g := &Gateway{log: log, builder: newRuleBuilder(), stop: make(chan struct{}), ended: xsync.NewMap[flowKey, *atomic.Uint64]()}
	g.CT = conntrack.New(conntrack.Config{
		MaxEntries: cfg.Conntrack.MaxEntries,
		Timeouts:   timeouts(cfg.Conntrack.Timeouts),
		OnDelete:   g.flowEnded,
		OnEvent:    g.flowEvent,
	})
	g.tr.CT = g.CT
	g.tr.Proxy = synproxy.NewSecret()
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
	manage := cfg.TUN.ManageRoutes
	if manage {
		if err := checkSysctls(cfg); err != nil {
			return fmt.Errorf("refusing to start: %w", err)
		}
	}
	// A hand-over (Inherit) fetches the predecessor's queues only once everything else is set
	// up, so the predecessor is frozen for the restore alone.
	reattach, name, err := true, cfg.TUN.Name, error(nil)
	if g.inherit == nil {
		if reattach, err = g.openTUN(cfg); err != nil {
			return err
		}
		name = g.devs[0].Name()
		if reattach {
			g.log.Info("reattached to the TUN left by an earlier process: picking up its flows", "tun", name)
		}
	}
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
	if err := g.setupRouting(cfg, name, manage, reattach); err != nil {
		g.closeDevs()
		return err
	}
	handover := g.inherit != nil
	if handover {
		if err := g.openInherited(cfg); err != nil {
			g.closeDevs()
			return err
		}
		// Rebuilt with the health view as the fetch left it (the predecessor's verdicts).
		if rules, err = g.builder.build(cfg, g.nodeAddrs, g.healthView()); err != nil {
			g.closeDevs()
			return err
		}
		g.rules.Store(rules)
	}
	if err := g.restore(); err != nil {
		g.log.Warn("restoring handed-over flows", "err", err)
	}
	if !handover {
		g.loadCheckpoint(cfg)
	}
	devs := g.devs
	g.startWorkers(devs)
	if handover {
		g.steer() // this build's programs, once serving (the predecessor's steer until then)
		g.applySYNFilter(cfg)
	}
	g.wg.Add(2)
	go g.sweep()
	go g.checkpointLoop()
	g.scheduleDrain(cfg) // drain: true backends in the first configuration
	g.started = true
	g.ready.Store(true)
	g.log.Info("gateway started", "tun", name, "queues", len(devs), "offload", devs[0].VnetHdr(), "services", len(cfg.Services), "node_addresses", g.nodeAddrs)
	return nil
}

// setupRouting installs routes and rules (manage), prunes what an earlier process left that cfg
// does not need (reattach), and the SYN guard; on error it removes what it installed.
func (g *Gateway) setupRouting(cfg *config.Config, name string, manage, reattach bool) error {
	if manage {
		var err error
		g.routing, err = newRouting(name, cfg.TUN.RouteTable)
		if err == nil {
			err = g.routing.apply(cfg, g.nodeAddrs)
		}
		if err == nil && reattach {
			err = g.routing.prune()
		}
		if err != nil {
			if g.routing != nil && !g.borrowed {
				g.routing.removeAll()
			}
			g.routing = nil
			return err
		}
	}
	if err := g.applySYNGuard(nil, cfg); err != nil {
		if g.routing != nil && !g.borrowed {
			g.routing.removeAll()
			g.routing = nil
		}
		return err
	}
	return nil
}

// openTUN takes the instance lock and opens the device's queues into g.devs, reattaching to a
// persistent device an earlier process left (reattach). Called with g.mu held.
func (g *Gateway) openTUN(cfg *config.Config) (reattach bool, err error) {
	lock, err := lockInstance(cfg.TUN.Name)
	if err != nil {
		return false, err
	}
	g.instance = lock
	reattach = tun.Exists(cfg.TUN.Name)
	tcfg := tun.Config{
		Name:       cfg.TUN.Name,
		MTU:        cfg.TUN.MTU,
		Queues:     cfg.TUN.Queues,
		Offload:    cfg.TUN.Offload,
		TxQueueLen: cfg.TUN.TxQueueLen,
		Persist:    cfg.TUN.Persist,
	}
	devs, err := tun.Open(tcfg)
	if err != nil && reattach {
		// Left by a process with other tun settings (queues, offload): the kernel refuses to
		// attach; its flows cannot be kept, so start over with a new device.
		g.log.Warn("the persistent TUN left by an earlier process does not match tun settings: replacing it", "tun", cfg.TUN.Name, "err", err)
		if err = tun.Delete(cfg.TUN.Name); err == nil {
			reattach = false
			devs, err = tun.Open(tcfg)
		}
	}
	if err != nil {
		g.closeDevs()
		return false, err
	}
	g.devs = devs
	g.steer()
	g.applySYNFilter(cfg)
	return reattach, nil
}

// steer isolates new flows on a multi-queue device: TCP connection attempts go to the last
// queue, everything else to the others (tun.Steer). Without it (a kernel or privileges that
// refuse the program) the device spreads packets by flow hash and a SYN flood shares every
// queue's ring with established flows: warned, not fatal.
func (g *Gateway) steer() {
	if len(g.devs) < 2 {
		return
	}
	if err := tun.Steer(g.devs[0], len(g.devs)); err != nil {
		g.log.Warn("TUN queues not steered: a SYN flood shares the queues of established flows", "err", err)
		return
	}
	g.log.Info("TUN queues steered", "new_flow_queue", tun.SYNQueue(len(g.devs)), "flow_queues", len(g.devs)-1)
}

// applySYNFilter attaches the SYN prefilter (tun.FilterSYNs) while tun.syn_proxy is not off and
// detaches it when it is. Without it (a kernel that refuses the program) a flood's SYNs all
// reach the new-flow worker: warned, not fatal. Called with g.mu held, once serving.
func (g *Gateway) applySYNFilter(cfg *config.Config) {
	want := cfg.TUN.SYNProxy != config.SYNProxyOff
	if want == (g.synFilter != nil) || len(g.devs) == 0 {
		return
	}
	if !want {
		g.synFilter.Close()
		g.synFilter = nil
		if err := tun.Unfilter(g.devs[0]); err != nil {
			g.log.Warn("SYN prefilter not detached", "err", err)
		}
		return
	}
	f, err := tun.FilterSYNs(g.devs[0])
	if err != nil {
		g.log.Warn("SYN prefilter not attached: every SYN of a flood reaches the new-flow worker", "err", err)
		return
	}
	g.synFilter = f
	g.log.Info("SYN prefilter attached", "rate", tun.SYNFilterRate, "retry_rate", tun.SYNFilterRetryRate)
}

// stopSYNFilter stops this process's part of the prefilter (the device keeps the program: a
// successor replaces it). Called with g.mu held.
func (g *Gateway) stopSYNFilter() {
	if g.synFilter != nil {
		g.synFilter.Close()
		g.synFilter = nil
	}
}

// startWorkers runs one worker per queue. Called with g.mu held.
func (g *Gateway) startWorkers(devs []tun.Device) {
	g.workers = g.workers[:0]
	for _, d := range devs {
		w := NewWorker(d, &g.tr, &g.rules, &g.tap)
		g.workers = append(g.workers, w)
		g.wwg.Add(1)
		go func() {
			defer g.wwg.Done()
			w.Run(g.log)
		}()
	}
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
			g.dropFloodHandshakes(now.UnixNano())
		}
	}
}

// dropFloodHandshakes removes, while the SYN proxy is engaged, service flows whose handshake
// stalled (synproxy.EngagedHandshakeIdle): the flood SYNs that got flows before it engaged.
func (g *Gateway) dropFloodHandshakes(now int64) {
	if !g.tr.SYNProxyEngaged(now) {
		return
	}
	f := conntrack.Filter{Kind: nat.KindService, MatchKind: true}
	if n := g.CT.DeleteStaleHandshakes(f, synproxy.EngagedHandshakeIdle, now); n > 0 {
		g.log.Debug("SYN proxy engaged: stalled handshakes removed", "flows", n)
	}
}

// closeDevs removes the device (persistent or not) and releases the instance lock: a failed
// start and the clean exit leave nothing behind.
func (g *Gateway) closeDevs() {
	if g.borrowed {
		g.closeDevsKeep() // the predecessor still serves on them
		g.releaseInstance()
		return
	}
	if err := tun.Remove(g.devs); err != nil {
		g.log.Warn("removing the TUN", "err", err)
	}
	g.devs = nil
	g.releaseInstance()
}

func (g *Gateway) releaseInstance() {
	if g.instance != nil {
		g.instance.Close()
		g.instance = nil
	}
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
	if p := cfg.TUN.Persist; p != old.TUN.Persist && len(g.devs) > 0 {
		if err := tun.SetPersist(g.devs[0], p); err != nil {
			return err
		}
	}
	rules, err := g.builder.build(cfg, g.nodeAddrs, g.healthView())
	if err != nil {
		return err
	}
	g.cfg.Store(cfg)
	g.rules.Store(rules)
	g.applySYNFilter(cfg)
	g.dropStale(old, cfg)
	g.scheduleDrain(cfg)
	if g.routing != nil && cfg.TUN.ManageRoutes {
		if err := g.routing.apply(cfg, g.nodeAddrs); err != nil {
			return fmt.Errorf("apply routes: %w", err)
		}
	}
	return g.applySYNGuard(old, cfg)
}

// applySYNGuard installs, changes or removes the SYN guard (tun.syn_rate_limit) when cfg differs
// from old (nil: nothing installed yet).
func (g *Gateway) applySYNGuard(old, cfg *config.Config) error {
	t := cfg.TUN
	if old != nil && old.TUN.SYNRateLimit == t.SYNRateLimit && old.TUN.SYNBurst == t.SYNBurst {
		return nil
	}
	if t.SYNRateLimit <= 0 {
		if g.guarded {
			if err := removeSYNGuard(); err != nil {
				return err
			}
			g.guarded = false
			g.log.Info("SYN guard removed")
		}
		return nil
	}
	if err := installSYNGuard(g.devs[0].Name(), t.SYNRateLimit, t.SYNBurst); err != nil {
		return err
	}
	g.guarded = true
	g.log.Info("SYN guard installed", "rate", t.SYNRateLimit, "burst", t.SYNBurst)
	return nil
}

func tunEqual(a, b config.TUN) bool {
	return a.Name == b.Name && a.MTU == b.MTU && a.Queues == b.Queues && a.Offload == b.Offload &&
		a.ManageRoutes == b.ManageRoutes && a.TxQueueLen == b.TxQueueLen && a.RouteTable == b.RouteTable
}

// scheduleDrain arms (or re-arms) the drain_timeout: when it fires, TCP flows whose backend is no
// longer part of its service in the then-running configuration are deleted. Called with g.mu held.
func (g *Gateway) scheduleDrain(cfg *config.Config) {
	d := time.Duration(cfg.Conntrack.DrainTimeout)
	if g.drainT != nil {
		g.drainT.Stop()
		g.drainT = nil
	}
	if d <= 0 {
		return
	}
	g.drainT = time.AfterFunc(d, func() {
		if n := g.deleteOrphans(g.cfg.Load(), true); n > 0 {
			g.log.Info("drain timeout: deleted TCP flows to removed backends", "flows", n)
		}
	})
}

// dropStale deletes UDP (and ICMP) flows whose backend left its service, so the next datagram picks
// a live backend (the Kubernetes stale-UDP-conntrack failure), and flows of removed services. TCP
// flows to a removed backend continue until they end (drain).
func (g *Gateway) dropStale(old, cfg *config.Config) {
	if n := g.deleteOrphans(cfg, false); n > 0 {
		g.log.Info("deleted flows to removed backends", "flows", n)
	}
}

// deleteOrphans deletes service flows whose service or backend is not in cfg: UDP and ICMP ones
// always, and with tcp (drain timeout) every TCP flow of a removed or draining (drain: true)
// backend. Ended TCP flows need nothing: a SYN reusing their ports starts a new flow (nat). It
// returns how many were deleted.
func (g *Gateway) deleteOrphans(cfg *config.Config, tcp bool) int {
	live := map[string]map[netip.Addr]bool{}
	for _, s := range cfg.Services {
		m := map[netip.Addr]bool{}
		for _, b := range s.Backends {
			m[b.Address] = !(tcp && b.Drain) // at the drain timeout, draining backends are cut too
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
		if tcp || e.Tuple[conntrack.Original].Proto != packet.ProtoTCP {
			if g.CT.Delete(e) {
				n++
			}
		}
		return true
	})
	return n
}

// flowEnded is the table's OnDelete hook: it counts the end of a service flow for its backend.
// After a backend's first flow it is a lock-free map load and an atomic add.
func (g *Gateway) flowEnded(e *conntrack.Entry) {
	g.tr.FlowRemoved(e)
	if e.Kind != nat.KindService {
		return
	}
	k := flowKey{e.Service, e.Tuple[conntrack.Reply].SrcAddr()}
	c, ok := g.ended.Load(k)
	if !ok {
		c, _ = g.ended.LoadOrStore(k, new(atomic.Uint64))
	}
	c.Add(1)
}

// EndedFlows calls fn with the number of service flows that have ended per service id and
// backend address since start (for the selections counter: ended + active = selected).
func (g *Gateway) EndedFlows(fn func(service uint32, backend netip.Addr, n uint64)) {
	g.ended.Range(func(k flowKey, v *atomic.Uint64) bool {
		fn(k.service, k.backend, v.Load())
		return true
	})
}

// StopNewFlows marks the gateway not ready and swaps in empty rules so no new flow is accepted
// while established ones continue on their conntrack entries (the first step of a graceful
// shutdown).
func (g *Gateway) StopNewFlows() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ready.Store(false) // load balancers in front stop sending while we drain
	g.rules.Store(nat.NewRules(nat.Spec{}))
}

// NodeAddrs returns the addresses node ports are served on (known after Start).
func (g *Gateway) NodeAddrs() []netip.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.nodeAddrs
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
	if h != nil {
		g.dropUnhealthy(h)
	}
	return nil
}

// dropUnhealthy deletes the UDP/ICMP flows to backends h calls unhealthy, so their next datagram
// picks a healthy backend. TCP flows stay: a failed probe does not prove an established connection
// dead, and a client reusing the ports of an ended one starts a new flow anyway (nat: reopens).
func (g *Gateway) dropUnhealthy(h HealthView) {
	n := 0
	g.CT.Range(func(e *conntrack.Entry) bool {
		if e.Kind != nat.KindService || e.Tuple[conntrack.Original].Proto == packet.ProtoTCP {
			return true
		}
		if !h(g.builder.ServiceName(e.Service), e.Tuple[conntrack.Reply].SrcAddr()) && g.CT.Delete(e) {
			n++
		}
		return true
	})
	if n > 0 {
		g.log.Info("deleted flows to unhealthy backends", "flows", n)
	}
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
	name := ""
	if len(g.devs) > 0 {
		name = g.devs[0].Name()
	}
	g.mu.Unlock()
	for _, w := range ws {
		s.add(&w.C)
	}
	if name != "" {
		s.RingDrops = ringDrops(name)
	}
	g.mu.Lock()
	if g.synFilter != nil {
		s.SYNFilter = g.synFilter.Stats()
	}
	g.mu.Unlock()
	return s
}

// ringDrops reads how many packets the kernel dropped in front of the TUN because a queue's ring
// was full (the device's tx_dropped); 0 when unreadable.
func ringDrops(name string) uint64 {
	b, err := os.ReadFile(filepath.Join("/sys/class/net", name, "statistics/tx_dropped"))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// Close stops the workers, removes routes and rules and deletes the TUN.
func (g *Gateway) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ready.Store(false)
	if g.drainT != nil {
		g.drainT.Stop()
	}
	var errs []error
	if g.guarded && !g.borrowed {
		if err := removeSYNGuard(); err != nil {
			errs = append(errs, err)
		}
		g.guarded = false
	}
	if g.routing != nil && !g.borrowed {
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
	g.stopSYNFilter()
	g.closeDevs()
	g.wwg.Wait()
	g.wg.Wait()
	if g.started && !g.borrowed { // a start that failed keeps the checkpoint for the next
		g.removeCheckpoint()
	}
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

// Table returns the flow table (the CT field, as a method so admin code can take an interface).
func (g *Gateway) Table() *conntrack.Table { return g.CT }

// Pick implements the ingress's Upstreams over the running rules: the L7 proxy chooses among the
// same lb sets as the data path, so it sees the same weights, drain and health state. service is
// a service name, port one of its TCP service ports; the answer is backend:target_port, from the
// client's address family when the service has eligible backends of it, else from the other.
func (g *Gateway) Pick(service string, port uint16, client netip.Addr) (netip.AddrPort, bool) {
	r := g.rules.Load()
	if r == nil {
		return netip.AddrPort{}, false
	}
	svcs := r.Services()
	for i := range svcs {
		s := &svcs[i]
		if s.Name != service {
			continue
		}
		for _, p := range s.Ports {
			if p.Port != port || p.Proto != packet.ProtoTCP {
				continue
			}
			first, second := s.Set4, s.Set6
			if client.Is6() && !client.Is4In6() {
				first, second = second, first
			}
			now := time.Now().UnixNano()
			for _, set := range [2]*lb.Set{first, second} {
				if set == nil {
					continue
				}
				if b, ok := set.Pick(client, rand.Uint64(), now); ok {
					return netip.AddrPortFrom(b.Addr, p.TargetPort), true
				}
			}
			return netip.AddrPort{}, false
		}
	}
	return netip.AddrPort{}, false
}
