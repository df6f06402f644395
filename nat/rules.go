// Package nat decides and applies the translation of each packet: DNAT of service traffic to a
// backend, masquerade/egress SNAT with collision-free ports, and the reverse translation of replies
// and ICMP errors from the conntrack entry. It does no I/O: the gateway hands it parsed packets and
// an immutable Rules snapshot.
package nat

import (
	"net/netip"

	"github.com/edgegate/edgegate/lb"
	"github.com/edgegate/edgegate/packet"
	"github.com/edgegate/edgegate/synproxy"
)

// Port is one port of a service as the data path needs it.
type Port struct {
	Name       string
	Proto      packet.Proto
	Port       uint16
	TargetPort uint16
	NodePort   uint16 // 0: none
}

// Service is the data-path view of a configured service. Set4/Set6 hold the backends of each
// family: a flow is never translated across families.
type Service struct {
	ID         uint32 // stable across reloads; labels conntrack entries
	Name       string
	Addrs      []netip.Addr
	Ports      []Port
	Masquerade bool
	Set4, Set6 *lb.Set
	// RefuseWhenEmpty: when no backend is eligible, answer TCP with RST and UDP with ICMP
	// port unreachable instead of dropping silently.
	RefuseWhenEmpty bool
}

// Egress SNATs flows from Sources (to Destinations, or anywhere when empty) to a Pool address.
type Egress struct {
	Name         string
	Sources      []netip.Prefix
	Destinations []netip.Prefix
	Pool         []netip.Addr
}

// Spec is everything Rules are built from.
type Spec struct {
	Services   []Service
	NodeAddrs  []netip.Addr // node ports are served on these addresses
	Egress     []Egress
	Masquerade []netip.Addr
	// PortLo..PortHi is the masquerade port range (nat.port_range, its default set by config).
	PortLo uint16
	PortHi uint16
	// SliceLo..SliceHi is the part of PortLo..PortHi this node allocates source ports from (a
	// cluster node's slice, config.PortSlice); 0, 0: the whole range. Mid-stream pick-up still
	// accepts any port of the whole range: another node may have created the flow.
	SliceLo, SliceHi uint16
	// TCPLoose picks up flows met in mid-stream whose translation can be rebuilt
	// (conntrack.tcp_loose; see pickUp).
	TCPLoose bool
	// SYNProxy says when connections to TCP service ports go through the SYN proxy, and
	// ProxyMSS is the MSS its SYN-ACKs offer IPv4 clients (IPv6: 20 less), derived from tun.mtu.
	SYNProxy synproxy.Mode
	ProxyMSS uint16
}

type svcKey struct {
	addr  netip.Addr
	port  uint16
	proto packet.Proto
}

type npKey struct {
	port  uint16
	proto packet.Proto
}

// Target is what a new flow to a service port resolves to.
type Target struct {
	Svc  *Service
	Port *Port
}

// Rules is the immutable translation snapshot the workers read through an atomic pointer.
type Rules struct {
	svc       map[svcKey]Target
	nodePorts map[npKey]Target
	nodeAddrs map[netip.Addr]struct{}
	vips      map[netip.Addr]struct{}
	egress    []Egress
	masq4     []netip.Addr
	masq6     []netip.Addr
	portLo    uint16
	portHi    uint16
	sliceLo   uint16 // source ports are allocated from sliceLo..sliceHi (0, 0: portLo..portHi)
	sliceHi   uint16
	services  []Service
	tcpLoose  bool
	proxy     synproxy.Mode
	proxyMSS  uint16
}

// NewRules indexes spec for lookups on the packet path. spec must already be valid (config
// validation guarantees unique service address/port pairs).
func NewRules(spec Spec) *Rules {
	r := &Rules{
		svc:       make(map[svcKey]Target),
		nodePorts: make(map[npKey]Target),
		nodeAddrs: make(map[netip.Addr]struct{}),
		vips:      make(map[netip.Addr]struct{}),
		egress:    spec.Egress,
		portLo:    spec.PortLo,
		portHi:    spec.PortHi,
		services:  spec.Services,
		tcpLoose:  spec.TCPLoose,
		proxy:     spec.SYNProxy,
		proxyMSS:  spec.ProxyMSS,
	}
	if spec.SliceLo >= r.portLo && spec.SliceHi <= r.portHi && spec.SliceLo <= spec.SliceHi {
		r.sliceLo, r.sliceHi = spec.SliceLo, spec.SliceHi
	}
	for _, a := range spec.Masquerade {
		if a.Is4() {
			r.masq4 = append(r.masq4, a)
		} else {
			r.masq6 = append(r.masq6, a)
		}
	}
	for _, a := range spec.NodeAddrs {
		r.nodeAddrs[a] = struct{}{}
	}
	for i := range r.services {
		s := &r.services[i]
		for _, a := range s.Addrs {
			r.vips[a] = struct{}{}
		}
		for j := range s.Ports {
			p := &s.Ports[j]
			t := Target{Svc: s, Port: p}
			for _, a := range s.Addrs {
				r.svc[svcKey{a, p.Port, p.Proto}] = t
			}
			if p.NodePort != 0 {
				r.nodePorts[npKey{p.NodePort, p.Proto}] = t
			}
		}
	}
	return r
}

// allocRange is the range source ports are allocated from: the node's slice, else the whole range.
func (r *Rules) allocRange() (lo, hi uint16) {
	if r.sliceHi != 0 {
		return r.sliceLo, r.sliceHi
	}
	return r.portLo, r.portHi
}

// Services returns the services the rules were built from (read-only).
func (r *Rules) Services() []Service { return r.services }

// ServiceAt is the service port a new flow of proto to dst:dport opens (a service address or a
// node port), as the packet path resolves it.
func (r *Rules) ServiceAt(proto packet.Proto, dst netip.Addr, dport uint16) (Target, bool) {
	return r.lookupService(proto, dst, dport)
}

// lookupService finds the service port a new flow to dst:dport is for.
func (r *Rules) lookupService(proto packet.Proto, dst netip.Addr, dport uint16) (Target, bool) {
	if t, ok := r.svc[svcKey{dst, dport, proto}]; ok {
		return t, true
	}
	if len(r.nodePorts) > 0 {
		if _, ok := r.nodeAddrs[dst]; ok {
			t, ok := r.nodePorts[npKey{dport, proto}]
			return t, ok
		}
	}
	return Target{}, false
}

// IsVIP reports whether a is a service address.
func (r *Rules) IsVIP(a netip.Addr) bool {
	_, ok := r.vips[a]
	return ok
}

func (r *Rules) egressFor(src, dst netip.Addr) *Egress {
	for i := range r.egress {
		e := &r.egress[i]
		if !containsAny(e.Sources, src) {
			continue
		}
		if len(e.Destinations) > 0 && !containsAny(e.Destinations, dst) {
			continue
		}
		return e
	}
	return nil
}

func containsAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// pick chooses one address of the family of like, spread by hash (a client keeps its address).
func pick(list []netip.Addr, h uint64) (netip.Addr, bool) {
	if len(list) == 0 {
		return netip.Addr{}, false
	}
	return list[h%uint64(len(list))], true
}

func (r *Rules) masqFor(like netip.Addr, h uint64) (netip.Addr, bool) {
	if like.Is4() {
		return pick(r.masq4, h)
	}
	return pick(r.masq6, h)
}

func poolFor(pool []netip.Addr, like netip.Addr, h uint64) (netip.Addr, bool) {
	n := 0
	for _, a := range pool {
		if a.Is4() == like.Is4() {
			n++
		}
	}
	if n == 0 {
		return netip.Addr{}, false
	}
	k := int(h % uint64(n))
	for _, a := range pool {
		if a.Is4() == like.Is4() {
			if k == 0 {
				return a, true
			}
			k--
		}
	}
	return netip.Addr{}, false
}
