package gateway

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/lb"
	"github.com/edgegate/edgegate/nat"
	"github.com/edgegate/edgegate/packet"
	"github.com/edgegate/edgegate/synproxy"
)

// HealthView answers whether a backend of a service is considered healthy; nil means all are.
type HealthView func(service string, backend netip.Addr) bool

// ruleBuilder turns validated configurations into nat.Rules. It remembers service ids and the
// previous lb sets so a reload keeps ids stable and carries over affinity and active-flow counters.
type ruleBuilder struct {
	mu     sync.Mutex
	ids    map[string]uint32
	names  map[uint32]string
	nextID uint32
	sets   map[string]*lb.Set // "name/4", "name/6"
	// active holds each (service, backend)'s live-flow counter for as long as flows may use it,
	// so a backend removed and added back keeps counting the flows it still has: live plus
	// ended flows (backend_selections_total) never goes down.
	active map[activeKey]*atomic.Int64
	// requests holds each (service, backend)'s L7 requests in flight (lb.Backend.Requests), kept
	// like active while requests may use it.
	requests map[activeKey]*atomic.Int64
}

type activeKey struct {
	service string
	addr    netip.Addr
}

func newRuleBuilder() *ruleBuilder {
	return &ruleBuilder{ids: make(map[string]uint32), names: make(map[uint32]string), nextID: 1, sets: make(map[string]*lb.Set), active: make(map[activeKey]*atomic.Int64), requests: make(map[activeKey]*atomic.Int64)}
}

// serviceID returns the stable id of a service name.
func (rb *ruleBuilder) serviceID(name string) uint32 {
	id, ok := rb.ids[name]
	if !ok {
		id = rb.nextID
		rb.nextID++
		rb.ids[name] = id
		rb.names[id] = name
	}
	return id
}

// ServiceName maps an id back to its name (for listings).
func (rb *ruleBuilder) ServiceName(id uint32) string {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return rb.names[id]
}

func protoNum(p config.ServicePort) packet.Proto {
	if p.IsUDP() {
		return packet.ProtoUDP
	}
	return packet.ProtoTCP
}

// build makes the rules for cfg; nodeAddrs are the addresses node ports are served on. The
// builder remembers the new lb sets (the next build's carry-over) only when the caller commits
// (the rules are swapped in): a reload that fails later leaves it as it was.
func (rb *ruleBuilder) build(cfg *config.Config, nodeAddrs []netip.Addr, health HealthView) (*nat.Rules, func(), error) {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	spec := nat.Spec{
		NodeAddrs:  nodeAddrs,
		Masquerade: cfg.NAT.MasqueradeAddresses,
		PortLo:     cfg.NAT.PortRange.Lo,
		PortHi:     cfg.NAT.PortRange.Hi,
		SliceLo:    cfg.PortSlice().Lo,
		SliceHi:    cfg.PortSlice().Hi,
		TCPLoose:   cfg.Conntrack.TCPLoose,
		ProxyMSS:   uint16(min(cfg.TUN.MTU-packet.IPv4MinLen-packet.TCPMinLen, 65535-packet.IPv4MinLen-packet.TCPMinLen)),
	}
	var err error
	if spec.SYNProxy, err = synproxy.ParseMode(cfg.TUN.SYNProxy); err != nil {
		return nil, nil, err
	}
	sets := make(map[string]*lb.Set)
	seen := make(map[activeKey]bool)
	for i := range cfg.Services {
		svc, err := rb.service(cfg, &cfg.Services[i], health, sets, seen)
		if err != nil {
			return nil, nil, err
		}
		spec.Services = append(spec.Services, svc)
	}
	for _, e := range cfg.Egress {
		spec.Egress = append(spec.Egress, nat.Egress{Name: e.Name, Sources: e.Sources, Destinations: e.Destinations, Pool: e.Addresses})
	}
	commit := func() {
		rb.mu.Lock()
		defer rb.mu.Unlock()
		rb.sets = sets
		for _, m := range []map[activeKey]*atomic.Int64{rb.active, rb.requests} {
			for k, n := range m {
				if !seen[k] && n.Load() <= 0 {
					delete(m, k) // gone from the config and no flow or request left using it
				}
			}
		}
	}
	return nat.NewRules(spec), commit, nil
}

// service makes the translation of one service: its ports and an lb set per address family
// with backends (recorded in sets under "name/4", "name/6", the next build's carry-over).
func (rb *ruleBuilder) service(cfg *config.Config, s *config.Service, health HealthView, sets map[string]*lb.Set, seen map[activeKey]bool) (nat.Service, error) {
	svc := nat.Service{
		ID:              rb.serviceID(s.Name),
		Name:            s.Name,
		Addrs:           s.Addresses,
		Masquerade:      s.Masquerade(),
		RefuseWhenEmpty: s.RefuseWhenEmpty(),
	}
	for _, p := range s.Ports {
		svc.Ports = append(svc.Ports, nat.Port{Name: p.Name, Proto: protoNum(p), Port: p.Port, TargetPort: p.TargetPort, NodePort: p.NodePort})
	}
	for _, fam := range []int{4, 6} {
		spec := s.LBSpec(func(b config.Backend) bool { return b.Address.Is4() == (fam == 4) })
		spec.HashSeed = cfg.HashSeed()
		if len(spec.Backends) == 0 {
			continue
		}
		rb.attach(s, spec.Backends, health, seen)
		key := fmt.Sprintf("%s/%d", s.Name, fam)
		set, err := lb.Build(spec, rb.sets[key])
		if err != nil {
			return nat.Service{}, fmt.Errorf("service %s: %w", s.Name, err)
		}
		sets[key] = set
		if fam == 4 {
			svc.Set4 = set
		} else {
			svc.Set6 = set
		}
	}
	return svc, nil
}

// attach marks the backends of s that health reports down as unhealthy (unless every one that
// would serve is down and the policy is fail_open) and gives each its live-flow counter, recording
// the keys in seen.
func (rb *ruleBuilder) attach(s *config.Service, bs []lb.Backend, health HealthView, seen map[activeKey]bool) {
	for j := range bs {
		b := &bs[j]
		if b.State == lb.Active && health != nil && !health(s.Name, b.Addr) {
			b.State = lb.Unhealthy
		}
		k := activeKey{s.Name, b.Addr}
		seen[k] = true
		b.Active, b.Requests = counterOf(rb.active, k), counterOf(rb.requests, k)
	}
	if failOpen(s, bs) {
		for j := range bs {
			if bs[j].State == lb.Unhealthy {
				bs[j].State = lb.Active
			}
		}
	}
}

// counterOf returns m's counter for k, created when missing.
func counterOf(m map[activeKey]*atomic.Int64, k activeKey) *atomic.Int64 {
	c := m[k]
	if c == nil {
		c = new(atomic.Int64)
		m[k] = c
	}
	return c
}

// failOpen reports whether every backend that would otherwise serve is unhealthy and the service's
// policy is to keep using them (the default, as kube-proxy does without endpoints readiness).
func failOpen(s *config.Service, bs []lb.Backend) bool {
	if s.HealthCheck == nil || s.RefuseWhenEmpty() {
		return false
	}
	for _, b := range bs {
		if b.State == lb.Active {
			return false
		}
	}
	return true
}

// restoreLabels returns the id and the backend's live-flow counter for a handed-over flow of
// service name to backend (a nil counter when the backend is no longer configured).
func (rb *ruleBuilder) restoreLabels(name string, backend netip.Addr) (uint32, *atomic.Int64, bool) {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	id, ok := rb.ids[name]
	return id, rb.active[activeKey{name, backend}], ok
}
