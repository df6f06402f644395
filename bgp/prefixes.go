// Package bgp announces the node's service addresses to routers with an embedded GoBGP speaker,
// so that N nodes behind a router's ECMP route share a service's traffic. A node announces a
// service's addresses (/32, /128, itself as next hop) only while it is ready and the service
// has a backend that takes new flows; it withdraws them when that stops being true, on drain and
// on shutdown. BFD (RFC 5880/5881) lets the routers notice a node that died silently.
package bgp

import (
	"net/netip"
	"slices"

	"github.com/edgegate/edgegate/config"
)

// Healthy answers whether a backend of a service passes its health check (nil: all do); the
// same view the gateway schedules with.
type Healthy func(service string, backend netip.Addr) bool

// Prefixes returns the host prefixes the node should announce for cfg, sorted: each address of a
// service with announce set, while the service has a usable backend of the address's family
// (weight above 0, not draining, healthy). None while the node is not ready. An address whose
// backends are all unhealthy is withdrawn whatever all_unhealthy says: another node may still
// reach a healthy one, and a router with no route left drops the traffic as refuse would.
func Prefixes(cfg *config.Config, ready bool, healthy Healthy) []netip.Prefix {
	if !ready || cfg == nil || cfg.BGP == nil {
		return nil
	}
	var out []netip.Prefix
	for i := range cfg.Services {
		s := &cfg.Services[i]
		if !s.Announced() {
			continue
		}
		for _, a := range s.Addresses {
			if usable(s, a.Is4(), healthy) {
				out = append(out, netip.PrefixFrom(a, a.BitLen()))
			}
		}
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out)
}

// usable says whether the service has a backend of the family (IPv4 or IPv6 addresses are
// served by backends of their own family) that takes new flows.
func usable(s *config.Service, v4 bool, healthy Healthy) bool {
	for _, b := range s.Backends {
		if b.Address.Is4() == v4 && b.Weight > 0 && !b.Drain && (healthy == nil || healthy(s.Name, b.Address)) {
			return true
		}
	}
	return false
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
