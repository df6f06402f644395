// Package gateway runs the packet path over a TUN device: it opens the device, installs routes and
// policy rules, starts one worker per queue and swaps the translation snapshot on reload.
package gateway

import (
	"context"
	"errors"
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
	"github.com/edgegate/edgegate/gateway/node"
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
	sys       *node.Node // the device, routes, rules, guard: the node's system side
	live      system     // what Reload changes on the system (sys; a test injects failures)
	workers   []*Worker
	nodeAddrs []netip.Addr
	wg        sync.WaitGroup
	stop      chan struct{}
	wwg       sync.WaitGroup // the workers (wg: the sweeper)
	inherit   *inherited     // hand-over: what the predecessor passed, used by Start
	frozen    *frozen        // hand-over in progress: what Freeze kept for Thaw
	paused    atomic.Bool    // frozen for a hand-over: no checkpoint (checkpoint_linux.go)
	started   bool           // Start completed: a clean Close removes the checkpoint
	ready     atomic.Bool
	drainT    *time.Timer // pending drain_timeout expiry of TCP flows to removed backends

	// ended counts service flows that left the table per (service, backend); with the backends'
	// Active gauges it gives selections per backend without touching the packet path's hot loop.
	ended *xsync.Map[flowKey, *atomic.Uint64]
}

// system is the part of the node's system side a reload changes, each step undone by applying
// the previous configuration again (node.Node).
type system interface {
	SetPersist(on bool) error
	Reroute(cfg *config.Config, nodeAddrs []netip.Addr) error
	Guard(t config.TUN) error
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
	g.sys = node.New(log)
	g.live = g.sys
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

// Start opens the device, sets routes and starts the workers and the expiry sweeper. A step
// that fails unwinds the ones before it (node.Stack): nothing is left behind.
func (g *Gateway) Start() (err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	cfg := g.cfg.Load()
	var undo node.Stack
	defer func() {
		if err != nil {
			if uerr := undo.Unwind(); uerr != nil {
				g.log.Warn("undoing a failed start", "err", uerr)
			}
		}
	}()
	rules, err := g.setUp(cfg, &undo)
	if err != nil {
		return err
	}
	// A hand-over (Inherit) fetches the predecessor's queues only once everything else is set
	// up, so the predecessor is frozen for the restore alone.
	handover := g.inherit != nil
	if handover {
		if err := g.openInherited(cfg); err != nil {
			return err
		}
		// Rebuilt with the health view as the fetch left it (the predecessor's verdicts).
		var commit func()
		if rules, commit, err = g.builder.build(cfg, g.nodeAddrs, g.healthView()); err != nil {
			return err
		}
		commit()
	}
	undo.Release()
	g.rules.Store(rules)
	if err := g.restore(); err != nil {
		g.log.Warn("restoring handed-over flows", "err", err)
	}
	if !handover {
		g.loadCheckpoint(cfg)
	}
	devs := g.sys.Devices()
	g.startWorkers(devs)
	if handover {
		g.sys.Steer() // this build's programs, once serving (the predecessor's steer until then)
		g.sys.FilterSYNs(cfg.TUN)
	}
	g.wg.Add(2)
	go g.sweep()
	go g.checkpointLoop()
	g.scheduleDrain(cfg) // drain: true backends in the first configuration
	g.started = true
	g.ready.Store(true)
	g.log.Info("gateway started", "tun", g.sys.Name(), "queues", len(devs), "offload", devs[0].VnetHdr(), "services", len(cfg.Services), "node_addresses", g.nodeAddrs)
	return nil
}

// setUp is Start's system side: sysctls checked, the device opened (unless handed over),
// node addresses found, the rules built, routes, rules and the SYN guard installed; each step
// that changed the system pushes its undo on undo.
func (g *Gateway) setUp(cfg *config.Config, undo *node.Stack) (*nat.Rules, error) {
	if cfg.TUN.ManageRoutes {
		if err := node.CheckSysctls(cfg); err != nil {
			return nil, err
		}
	}
	reattach, err := true, error(nil) // a hand-over keeps what the predecessor installed
	if g.inherit == nil {
		if reattach, err = g.sys.Open(&cfg.TUN); err != nil {
			return nil, err
		}
		if reattach {
			g.log.Info("reattached to the TUN left by an earlier process: picking up its flows", "tun", g.sys.Name())
		}
	}
	undo.Push(g.sys.Close)
	if g.nodeAddrs, err = g.sys.Prepare(cfg); err != nil {
		return nil, err
	}
	rules, commit, err := g.builder.build(cfg, g.nodeAddrs, g.healthView())
	if err != nil {
		return nil, err
	}
	if err := g.sys.Route(cfg, g.nodeAddrs, reattach); err != nil {
		return nil, err
	}
	undo.Push(g.sys.Unroute)
	if err := g.sys.Guard(cfg.TUN); err != nil {
		return nil, err
	}
	undo.Push(g.sys.Unguard)
	commit()
	return rules, nil
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

// Reload swaps in a new validated configuration as one transaction: the rules are built and
// checked first, then the system is brought in line (tun.persist, routes and rules, the SYN
// guard), and only then are configuration and rules swapped (the workers pick them up at their
// next batch). A step that fails undoes the ones before it by applying the running
// configuration again, so the running configuration keeps serving. Established flows keep
// their entries and so their backends. Settings that need a new device (tun.*) or a new table
// (conntrack.max_entries) are reported and keep their running values.
func (g *Gateway) Reload(cfg *config.Config) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.cfg.Load()
	if !tunEqual(old.TUN, cfg.TUN) {
		g.log.Warn("tun settings changed: they take effect on restart")
	}
	rules, commit, err := g.builder.build(cfg, g.nodeAddrs, g.healthView())
	if err != nil {
		return err
	}
	var undo node.Stack
	steps := []struct {
		do, back func() error
	}{
		{func() error { return g.live.SetPersist(cfg.TUN.Persist) }, func() error { return g.live.SetPersist(old.TUN.Persist) }},
		{func() error { return g.live.Reroute(cfg, g.nodeAddrs) }, func() error { return g.live.Reroute(old, g.nodeAddrs) }},
		{func() error { return g.live.Guard(cfg.TUN) }, func() error { return g.live.Guard(old.TUN) }},
	}
	if cfg.TUN.Persist == old.TUN.Persist {
		steps = steps[1:]
	}
	for _, st := range steps {
		undo.Push(st.back) // a step that fails half-way is undone too
		if err := st.do(); err != nil {
			if uerr := undo.Unwind(); uerr != nil {
				g.log.Error("reload failed and rolling back failed too", "err", uerr)
			}
			return err
		}
	}
	commit()
	g.cfg.Store(cfg)
	g.rules.Store(rules)
	g.sys.FilterSYNs(cfg.TUN) // never fails: without the prefilter the proxy still answers
	g.dropStale(old, cfg)
	g.scheduleDrain(cfg)
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
	rules, commit, err := g.builder.build(g.cfg.Load(), g.nodeAddrs, h)
	if err != nil {
		return err
	}
	commit()
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
	name := g.sys.Name()
	g.mu.Unlock()
	for _, w := range ws {
		s.add(&w.C)
	}
	if name != "" {
		s.RingDrops = ringDrops(name)
	}
	g.mu.Lock()
	s.SYNFilter = g.sys.SYNFilterStats()
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
	errs := []error{g.sys.Unguard(), g.sys.Unroute()}
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	if err := g.sys.Close(); err != nil {
		g.log.Warn("closing the TUN", "err", err)
	}
	g.wwg.Wait()
	g.wg.Wait()
	if g.started && !g.sys.Borrowed { // a start that failed keeps the checkpoint for the next
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
	addr, _, ok := g.PickActive(service, port, client)
	return addr, ok
}

// PickActive is Pick that also returns the backend's L7 request counter (ingress.ActiveUpstreams,
// lb.Backend.Requests): the proxy counts each request in flight on it, so least_conn and
// two_choices weigh L7 requests with the data path's flows, while the flow metrics (live and
// ended flows per backend) stay flows alone.
func (g *Gateway) PickActive(service string, port uint16, client netip.Addr) (netip.AddrPort, *atomic.Int64, bool) {
	r := g.rules.Load()
	if r == nil {
		return netip.AddrPort{}, nil, false
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
					return netip.AddrPortFrom(b.Addr, p.TargetPort), b.Requests, true
				}
			}
			return netip.AddrPort{}, nil, false
		}
	}
	return netip.AddrPort{}, nil, false
}
