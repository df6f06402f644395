//go:build linux

package gateway

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/gateway/tun"
	"github.com/edgegate/edgegate/lb"
	"github.com/edgegate/edgegate/nat"
	"github.com/edgegate/edgegate/packet"
	"golang.org/x/sys/unix"
)

// HandoverVersion is the version of the hand-over snapshot (Handover) this build writes; it
// reads versions MinHandoverVersion to HandoverVersion. The format is documented in
// docs/operations.md ("Upgrade"). Version 2: the predecessor also passes its ingress listening
// sockets (after the instance lock).
const (
	HandoverVersion    = 2
	MinHandoverVersion = 1
)

// Handover is the state a running gateway passes to its successor, besides the descriptors
// (TUN queues in order, then the instance lock): JSON, versioned.
type Handover struct {
	Version  int            `json:"version"`
	TUN      TUNState       `json:"tun"`
	Flows    []SavedFlow    `json:"flows"`
	Services []SavedService `json:"services,omitempty"` // version 2
}

// SavedService is what a service's scheduling carries over besides its flows: per backend the
// live flows the predecessor counted and its health verdict, and the session affinity entries.
type SavedService struct {
	Name     string             `json:"name"`
	Backends []SavedBackend     `json:"backends"`
	Affinity []lb.AffinityEntry `json:"affinity,omitempty"`
}

// SavedBackend is one backend of a SavedService.
type SavedBackend struct {
	Address netip.Addr `json:"address"`
	// Active is the predecessor's live-flow count: its handed-over flows and its L7 requests in
	// flight (which finish there). The successor counts the flows it restored; a difference is
	// logged.
	Active  int64 `json:"active"`
	Healthy bool  `json:"healthy"` // the health verdict (true when not checked)
}

// TUNState describes the queues handed over.
type TUNState struct {
	Name    string `json:"name"`
	Queues  int    `json:"queues"`
	VnetHdr bool   `json:"vnet_hdr"`
	USO     bool   `json:"uso"`
}

// SavedFlow is one flow: both tuples (as the table holds them: Original as the client sent it,
// Reply as the backend answers), what the entry is for, its state and absolute expiry.
type SavedFlow struct {
	Kind      uint8          `json:"kind"`              // 1 service, 2 egress
	Service   string         `json:"service,omitempty"` // service name (ids are per process)
	Proto     packet.Proto   `json:"proto"`
	OrigSrc   netip.AddrPort `json:"orig_src"`
	OrigDst   netip.AddrPort `json:"orig_dst"`
	ReplySrc  netip.AddrPort `json:"reply_src"` // the backend (service flows)
	ReplyDst  netip.AddrPort `json:"reply_dst"` // the masquerade or pool address and port
	State     string         `json:"state"`
	Assured   bool           `json:"assured"`
	SeenReply bool           `json:"seen_reply"`
	NoOrig    bool           `json:"no_orig,omitempty"`
	Expires   int64          `json:"expires_unix_ns"`
	// Origin is conntrack.Entry.Origin: 0 for this node's flows, 1 + the creating node's index
	// for flows a cluster peer sent (flowsync); omitted (0) in snapshots of older versions.
	Origin uint8 `json:"origin,omitempty"`
}

// inherited is a hand-over Start performs: fetch asks the predecessor (takeover.Request) for
// its queue descriptors, its instance lock and its snapshot; state is what it returned.
type inherited struct {
	fetch func() (queues []int, lock int, h *Handover, err error)
	state *Handover
}

// frozen is what Freeze kept: the queue and lock descriptors, for Thaw or Detach.
type frozen struct {
	queues []int
	lock   int
	tun    TUNState
}

// Inherit makes Start take over from a running predecessor instead of opening the device:
// Start sets up everything else first, then calls fetch for the predecessor's TUN queues and
// instance lock (the gateway owns them from then on) and its flows, restores the flows and
// starts the workers. Until Own, the TUN, routes and rules stay the predecessor's: a failing
// Start or Close removes none of them.
func (g *Gateway) Inherit(fetch func() (queues []int, lock int, h *Handover, err error)) {
	g.inherit = &inherited{fetch: fetch}
	g.sys.Borrow(g.cfg.Load().TUN.Name)
}

// Own ends the borrowing after the predecessor let go (hand-over complete): from now on a clean
// exit removes the TUN, its routes and rules as usual.
func (g *Gateway) Own() {
	g.mu.Lock()
	g.sys.Own()
	g.mu.Unlock()
}

// openInherited fetches the predecessor's descriptors (Inherit). Called with g.mu held.
func (g *Gateway) openInherited(cfg *config.Config) error {
	queues, lock, h, err := g.inherit.fetch()
	if err != nil {
		return err
	}
	g.inherit.state = h
	closeAll := func() {
		for _, fd := range append(queues, lock) {
			unix.Close(fd)
		}
	}
	if h.Version < MinHandoverVersion || h.Version > HandoverVersion {
		closeAll()
		return fmt.Errorf("hand-over snapshot version %d, this build reads %d to %d", h.Version, MinHandoverVersion, HandoverVersion)
	}
	st := h.TUN
	if err := checkInherited(st, len(queues), cfg.TUN); err != nil {
		closeAll()
		return err
	}
	if st.Queues != cfg.TUN.Queues {
		g.log.Info("hand-over: keeping the running TUN's queue count (tun.queues not set, the default here differs)", "queues", st.Queues, "default", cfg.TUN.Queues)
	}
	ln, err := net.FileListener(os.NewFile(uintptr(lock), "instance-lock"))
	if err != nil {
		closeAll()
		return fmt.Errorf("hand-over: instance lock: %w", err)
	}
	g.sys.Adopt(nil, ln)
	for i, fd := range queues {
		d, err := tun.FromFD(fd, st.Name, st.VnetHdr, st.USO)
		if err != nil {
			for _, rest := range queues[i+1:] {
				unix.Close(rest)
			}
			return err
		}
		g.sys.Adopt([]tun.Device{d}, nil)
	}
	return nil
}

// checkInherited tells whether the handed-over TUN (st, n descriptors) is the one cfg asks for:
// same name and queue count, except that a queue count the file does not set (the default, one
// per CPU) follows the running device.
func checkInherited(st TUNState, n int, cfg config.TUN) error {
	want := max(cfg.Queues, 1)
	if cfg.QueuesDefault {
		want = st.Queues
	}
	if n != st.Queues || st.Name != cfg.Name || st.Queues != want {
		return fmt.Errorf("hand-over: the running TUN is %s with %d queues (%d descriptors), the configuration wants %s with %d: change tun settings with a restart, not an upgrade",
			st.Name, st.Queues, n, cfg.Name, want)
	}
	return nil
}

// restore inserts the handed-over flows (Start, before the workers run). Flows of services
// the configuration no longer has are skipped; the rest get this process's service ids and
// live-flow counters.
func (g *Gateway) restore() error {
	if g.inherit == nil || g.inherit.state == nil {
		return nil
	}
	h := g.inherit.state
	g.inherit = nil
	return g.restoreState(h, "flows handed over")
}

// restoreState inserts the flows of a snapshot (a hand-over's or a checkpoint's) and its
// services' affinity entries; what logs the result.
func (g *Gateway) restoreState(h *Handover, what string) error {
	flows := h.Flows
	now := time.Now().UnixNano()
	defer g.restoreServices(h.Services, now)
	var errs []error
	n := 0
	for i := range flows {
		if err := g.restoreFlow(&flows[i], now); err != nil {
			if !errors.Is(err, conntrack.ErrExpired) && len(errs) < 5 {
				errs = append(errs, err)
			}
			continue
		}
		n++
	}
	g.log.Info(what, "restored", n, "received", len(flows))
	return errors.Join(errs...)
}

func (g *Gateway) restoreFlow(f *SavedFlow, now int64) error {
	st, ok := parseState(f.State)
	if !ok {
		return fmt.Errorf("flow %v: unknown state %q", f.OrigSrc, f.State)
	}
	e := &conntrack.Entry{Kind: f.Kind, Origin: f.Origin}
	e.Tuple[conntrack.Original] = conntrack.MakeTuple(f.Proto, f.OrigSrc.Addr(), f.OrigDst.Addr(), f.OrigSrc.Port(), f.OrigDst.Port())
	e.Tuple[conntrack.Reply] = conntrack.MakeTuple(f.Proto, f.ReplySrc.Addr(), f.ReplyDst.Addr(), f.ReplySrc.Port(), f.ReplyDst.Port())
	if f.Kind == nat.KindService {
		id, load, ok := g.builder.restoreLabels(f.Service, f.ReplySrc.Addr())
		if !ok {
			return fmt.Errorf("flow %v: service %q not configured", f.OrigSrc, f.Service)
		}
		e.Service, e.Load = id, load
	}
	if e.Load != nil {
		e.Load.Add(1)
	}
	_, err := g.CT.Restore(e, conntrack.Saved{State: st, Assured: f.Assured, SeenReply: f.SeenReply, NoOrig: f.NoOrig, Expires: f.Expires}, now)
	if err != nil && e.Load != nil {
		e.Load.Add(-1)
	}
	return err
}

func parseState(s string) (conntrack.State, bool) {
	for st := conntrack.State(1); st.String() != "invalid"; st++ {
		if st.String() == s {
			return st, true
		}
	}
	return 0, false
}

// Freeze is the predecessor's half of a hand-over: the workers stop reading (packets wait in
// the TUN's queue), and it returns duplicates of the queue descriptors and the instance lock
// (in that order) with the flow snapshot. Nothing is removed. Thaw undoes it; Detach ends it.
func (g *Gateway) Freeze() ([]int, *Handover, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	devs := g.sys.Devices()
	if g.frozen != nil || len(devs) == 0 {
		return nil, nil, errors.New("hand-over: gateway not running or already frozen")
	}
	fr := &frozen{lock: -1, tun: TUNState{Name: devs[0].Name(), Queues: len(devs), VnetHdr: devs[0].VnetHdr(), USO: tun.USO(devs[0])}}
	closeFr := func() {
		for _, fd := range fr.queues {
			unix.Close(fd)
		}
		if fr.lock >= 0 {
			unix.Close(fr.lock)
		}
	}
	for _, d := range devs {
		fd, err := tun.Dup(d)
		if err != nil {
			closeFr()
			return nil, nil, err
		}
		fr.queues = append(fr.queues, fd)
	}
	lf, err := g.sys.Instance().(*net.UnixListener).File()
	if err != nil {
		closeFr()
		return nil, nil, fmt.Errorf("hand-over: instance lock: %w", err)
	}
	fr.lock = int(lf.Fd())
	lf2, _ := unix.Dup(fr.lock) // lf owns its descriptor; keep an independent one
	lf.Close()
	fr.lock = lf2
	g.sys.CloseQueues()
	g.wwg.Wait()
	g.paused.Store(true) // no checkpoint: the successor writes from now on
	g.frozen = fr
	h := &Handover{Version: HandoverVersion, TUN: fr.tun, Flows: g.saveFlows(), Services: g.saveServices(time.Now().UnixNano())}
	return append(append([]int(nil), fr.queues...), fr.lock), h, nil
}

// saveFlows snapshots the table.
func (g *Gateway) saveFlows() []SavedFlow {
	var out []SavedFlow
	g.CT.Range(func(e *conntrack.Entry) bool {
		s := e.Save()
		o, r := &e.Tuple[conntrack.Original], &e.Tuple[conntrack.Reply]
		f := SavedFlow{
			Kind: e.Kind, Proto: o.Proto, Origin: e.Origin,
			OrigSrc: netip.AddrPortFrom(o.SrcAddr(), o.SrcPort), OrigDst: netip.AddrPortFrom(o.DstAddr(), o.DstPort),
			ReplySrc: netip.AddrPortFrom(r.SrcAddr(), r.SrcPort), ReplyDst: netip.AddrPortFrom(r.DstAddr(), r.DstPort),
			State: s.State.String(), Assured: s.Assured, SeenReply: s.SeenReply, NoOrig: s.NoOrig, Expires: s.Expires,
		}
		if e.Kind == nat.KindService {
			f.Service = g.builder.ServiceName(e.Service)
		}
		out = append(out, f)
		return true
	})
	return out
}

// Thaw resumes after a failed hand-over (the successor died or gave up): the workers read the
// kept queue descriptors again.
func (g *Gateway) Thaw() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	fr := g.frozen
	if fr == nil {
		return nil
	}
	g.frozen = nil
	g.paused.Store(false)
	unix.Close(fr.lock) // the running instance lock stays the node's
	for _, fd := range fr.queues {
		d, err := tun.FromFD(fd, fr.tun.Name, fr.tun.VnetHdr, fr.tun.USO)
		if err != nil {
			return err
		}
		g.sys.Adopt([]tun.Device{d}, nil)
	}
	g.startWorkers(g.sys.Devices())
	g.log.Info("hand-over failed: serving again")
	return nil
}

// Detach ends this gateway after a hand-over: the successor owns the TUN, its routes and rules
// and the instance lock; nothing is removed.
func (g *Gateway) Detach() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ready.Store(false)
	if g.drainT != nil {
		g.drainT.Stop()
	}
	g.sys.Detach()
	if fr := g.frozen; fr != nil {
		for _, fd := range fr.queues {
			unix.Close(fd)
		}
		unix.Close(fr.lock)
		g.frozen = nil
	}
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	g.wg.Wait()
}

// saveServices snapshots each service's backends (live flows, health) and affinity entries.
func (g *Gateway) saveServices(now int64) []SavedService {
	health := g.healthView()
	return g.builder.eachSet(func(name string, set *lb.Set, out *SavedService) {
		for _, b := range set.Backends() {
			out.Backends = append(out.Backends, SavedBackend{Address: b.Addr, Active: b.Active.Load(), Healthy: health == nil || health(name, b.Addr)})
		}
		out.Affinity = append(out.Affinity, set.SaveAffinity(now)...)
	})
}

// restoreServices puts the handed-over affinity entries into this process's sets and logs
// backends whose restored live-flow count differs from the predecessor's.
func (g *Gateway) restoreServices(svcs []SavedService, now int64) {
	byName := make(map[string]*SavedService, len(svcs))
	for i := range svcs {
		byName[svcs[i].Name] = &svcs[i]
	}
	affinity, differ := 0, 0
	g.builder.eachSet(func(name string, set *lb.Set, _ *SavedService) {
		sv := byName[name]
		if sv == nil {
			return
		}
		affinity += set.RestoreAffinity(sv.Affinity, now)
		for _, b := range set.Backends() {
			for _, sb := range sv.Backends {
				if sb.Address == b.Addr && sb.Active != b.Active.Load() {
					differ++
				}
			}
		}
	})
	if len(svcs) > 0 {
		g.log.Info("service state handed over", "services", len(svcs), "affinity_entries", affinity, "backends_with_other_live_count", differ)
	}
}

// eachSet calls fn for every lb set (IPv4, then IPv6, per service) and returns one
// SavedService per service name that fn filled.
func (rb *ruleBuilder) eachSet(fn func(name string, set *lb.Set, out *SavedService)) []SavedService {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	keys := slices.Sorted(maps.Keys(rb.sets))
	var out []SavedService
	for _, k := range keys {
		name := k[:strings.LastIndexByte(k, '/')]
		if len(out) == 0 || out[len(out)-1].Name != name {
			out = append(out, SavedService{Name: name})
		}
		fn(name, rb.sets[k], &out[len(out)-1])
	}
	return out
}
