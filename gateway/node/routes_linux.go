//go:build linux

package node

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/edgegate/edgegate/config"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// rtProto marks routes edgegate installs (a private RTPROT_ value, shown by `ip route` as 201) so
// they are recognisable and removable.
const rtProto = 201

// Rule priorities. Policy rules that must see packets before local delivery (node ports) need the
// kernel's "lookup local" rule moved from priority 0 to prefLocal.
const (
	prefTunLocal = 50  // packets written by edgegate: deliver locally when for us...
	prefTunMain  = 51  // ...else route by main, never back into the TUN by the rules below
	prefNodePort = 60  // node address + node port -> TUN
	prefLocal    = 100 // where the local rule moves when node ports are served
	prefReplies  = 200 // replies of source_nat: none backends -> TUN
	prefEgress   = 210 // egress sources -> TUN
)

// routing owns the routes and rules edgegate installed, to update them on reload and remove them at
// exit.
type routing struct {
	link       netlink.Link
	table      int
	routes     map[string]netlink.Route
	rules      map[string]netlink.Rule
	movedLocal map[int]bool // family -> local rule moved
}

func newRouting(tunName string, table int) (*routing, error) {
	link, err := netlink.LinkByName(tunName)
	if err != nil {
		return nil, fmt.Errorf("routes: find %s: %w", tunName, err)
	}
	return &routing{link: link, table: table, routes: map[string]netlink.Route{}, rules: map[string]netlink.Rule{}, movedLocal: map[int]bool{}}, nil
}

func hostPrefix(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
}

func ipnet(p netip.Prefix) *net.IPNet {
	p = p.Masked()
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func famOf(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// desired computes the routes and rules cfg needs.
func (r *routing) desired(cfg *config.Config, nodeAddrs []netip.Addr) (map[string]netlink.Route, map[string]netlink.Rule) {
	routes := map[string]netlink.Route{}
	rules := map[string]netlink.Rule{}
	idx := r.link.Attrs().Index
	addHost := func(a netip.Addr) {
		routes["main "+a.String()] = netlink.Route{LinkIndex: idx, Dst: hostPrefix(a), Protocol: rtProto, Scope: netlink.SCOPE_LINK}
	}
	for _, s := range cfg.Services {
		for _, a := range s.Addresses {
			addHost(a)
		}
	}
	for _, a := range cfg.NAT.MasqueradeAddresses {
		addHost(a)
	}
	for _, e := range cfg.Egress {
		for _, a := range e.Addresses {
			addHost(a)
		}
	}
	fams := map[int]bool{}
	rule := func(key string, fam, pref int, mod func(*netlink.Rule)) {
		ru := netlink.NewRule()
		ru.Family = fam
		ru.Priority = pref
		ru.Table = r.table
		mod(ru)
		rules[key] = *ru
		fams[fam] = true
	}
	for _, s := range cfg.Services {
		for _, p := range s.Ports {
			proto := unix.IPPROTO_TCP
			if p.IsUDP() {
				proto = unix.IPPROTO_UDP
			}
			if p.NodePort != 0 {
				for _, a := range nodeAddrs {
					a, np := a, p.NodePort
					rule(fmt.Sprintf("np %s %d/%d", a, np, proto), famOf(a), prefNodePort, func(ru *netlink.Rule) {
						ru.Dst = hostPrefix(a)
						ru.IPProto = proto
						ru.Dport = netlink.NewRulePortRange(np, np)
					})
				}
			}
			if !s.Masquerade() {
				tp := p.TargetPort
				for _, b := range s.Backends {
					b := b.Address
					rule(fmt.Sprintf("rep %s %d/%d", b, tp, proto), famOf(b), prefReplies, func(ru *netlink.Rule) {
						ru.Src = hostPrefix(b)
						ru.IPProto = proto
						ru.Sport = netlink.NewRulePortRange(tp, tp)
					})
				}
			}
		}
	}
	for _, e := range cfg.Egress {
		for _, src := range e.Sources {
			src := src
			if len(e.Destinations) == 0 {
				rule("eg "+src.String(), famOf(src.Addr()), prefEgress, func(ru *netlink.Rule) { ru.Src = ipnet(src) })
				continue
			}
			for _, dst := range e.Destinations {
				if dst.Addr().Is4() != src.Addr().Is4() {
					continue
				}
				dst := dst
				rule("eg "+src.String()+" "+dst.String(), famOf(src.Addr()), prefEgress, func(ru *netlink.Rule) {
					ru.Src = ipnet(src)
					ru.Dst = ipnet(dst)
				})
			}
		}
	}
	for fam := range fams {
		f := fam
		rule(fmt.Sprintf("tunmain %d", f), f, prefTunMain, func(ru *netlink.Rule) {
			ru.IifName = r.link.Attrs().Name
			ru.Table = unix.RT_TABLE_MAIN
		})
		def := &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
		if f == netlink.FAMILY_V6 {
			def = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
		routes[fmt.Sprintf("table default %d", f)] = netlink.Route{LinkIndex: idx, Dst: def, Table: r.table, Protocol: rtProto, Scope: netlink.SCOPE_LINK}
	}
	return routes, rules
}

// apply brings the installed routes and rules to what cfg needs: adds the missing, removes the
// stale. Safe to call again on reload.
func (r *routing) apply(cfg *config.Config, nodeAddrs []netip.Addr) error {
	routes, rules := r.desired(cfg, nodeAddrs)
	var errs []error
	needLocalMove := map[int]bool{}
	for _, ru := range rules {
		if ru.Priority == prefNodePort {
			needLocalMove[ru.Family] = true
		}
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		if needLocalMove[fam] && !r.movedLocal[fam] {
			if err := r.moveLocal(fam); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for k, ro := range routes {
		if _, ok := r.routes[k]; ok {
			continue
		}
		ro := ro
		if err := netlink.RouteReplace(&ro); err != nil {
			errs = append(errs, fmt.Errorf("route %s: %w", k, err))
			continue
		}
		r.routes[k] = ro
	}
	for k, ru := range rules {
		if _, ok := r.rules[k]; ok {
			continue
		}
		ru := ru
		if err := netlink.RuleAdd(&ru); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("rule %s: %w", k, err))
			continue
		}
		r.rules[k] = ru
	}
	for k, ru := range r.rules {
		if _, ok := rules[k]; !ok {
			ru := ru
			if err := netlink.RuleDel(&ru); err != nil {
				errs = append(errs, fmt.Errorf("remove rule %s: %w", k, err))
			}
			delete(r.rules, k)
		}
	}
	for k, ro := range r.routes {
		if _, ok := routes[k]; !ok {
			ro := ro
			if err := netlink.RouteDel(&ro); err != nil {
				errs = append(errs, fmt.Errorf("remove route %s: %w", k, err))
			}
			delete(r.routes, k)
		}
	}
	return errors.Join(errs...)
}

// moveLocal moves the kernel's "lookup local" rule behind edgegate's node-port rules (as Cilium
// does); removeAll moves it back.
func (r *routing) moveLocal(fam int) error {
	for _, ru := range r.localRules(fam, prefTunLocal, prefLocal) {
		ru := ru
		if err := netlink.RuleAdd(&ru); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add local rule pref %d: %w", ru.Priority, err)
		}
	}
	r.movedLocal[fam] = true
	zero := r.localRules(fam, 0)[0]
	if err := netlink.RuleDel(&zero); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove local rule pref 0: %w", err)
	}
	return nil
}

func (r *routing) localRules(fam int, prefs ...int) []netlink.Rule {
	var out []netlink.Rule
	for _, p := range prefs {
		ru := netlink.NewRule()
		ru.Family = fam
		ru.Priority = p
		ru.Table = unix.RT_TABLE_LOCAL
		if p == prefTunLocal {
			ru.IifName = r.link.Attrs().Name
		}
		out = append(out, *ru)
	}
	return out
}

// removeAll deletes everything edgegate installed and restores the local rule.
func (r *routing) removeAll() error {
	var errs []error
	for k, ru := range r.rules {
		ru := ru
		if err := netlink.RuleDel(&ru); err != nil {
			errs = append(errs, fmt.Errorf("remove rule %s: %w", k, err))
		}
		delete(r.rules, k)
	}
	for k, ro := range r.routes {
		ro := ro
		if err := netlink.RouteDel(&ro); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("remove route %s: %w", k, err))
		}
		delete(r.routes, k)
	}
	for fam, moved := range r.movedLocal {
		if !moved {
			continue
		}
		zero := r.localRules(fam, 0)[0]
		if err := netlink.RuleAdd(&zero); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("restore local rule: %w", err))
		}
		for _, ru := range r.localRules(fam, prefTunLocal, prefLocal) {
			ru := ru
			if err := netlink.RuleDel(&ru); err != nil {
				errs = append(errs, fmt.Errorf("remove local rule pref %d: %w", ru.Priority, err))
			}
		}
		delete(r.movedLocal, fam)
	}
	return errors.Join(errs...)
}

// nodeAddresses lists the namespace's global unicast addresses (node ports are served on them when
// the config names none).
func nodeAddresses(skip string) ([]netip.Addr, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if !ip.IsGlobalUnicast() || ip.IsLinkLocalUnicast() {
			continue
		}
		if a.Label == skip {
			continue
		}
		out = append(out, ip)
	}
	return out, nil
}

func readSysctl(key string) (string, error) {
	b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(key, ".", "/"))
	return strings.TrimSpace(string(b)), err
}

func writeSysctl(key, val string) error {
	if err := os.WriteFile("/proc/sys/"+strings.ReplaceAll(key, ".", "/"), []byte(val), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, val, err)
	}
	return nil
}

// checkSysctls refuses to start when the namespace's settings would silently blackhole traffic.
func checkSysctls(cfg *config.Config) error {
	v4, v6 := usesFamilies(cfg)
	var errs []error
	want := func(key, val, why string) {
		got, err := readSysctl(key)
		if err != nil {
			errs = append(errs, fmt.Errorf("read sysctl %s: %w", key, err))
			return
		}
		if got != val {
			errs = append(errs, fmt.Errorf("sysctl %s is %s, must be %s: %s (set it with: sysctl -w %s=%s)", key, got, val, why, key, val))
		}
	}
	if v4 {
		want("net.ipv4.ip_forward", "1", "the kernel must forward packets to and from the TUN")
		if needsLooseRP(cfg) {
			if got, err := readSysctl("net.ipv4.conf.all.rp_filter"); err == nil && got == "1" {
				errs = append(errs, fmt.Errorf("sysctl net.ipv4.conf.all.rp_filter is 1 (strict): it drops translated packets that edgegate writes with a client or node source address (source_nat: none, node ports); set it to 0 or 2"))
			}
		}
	}
	if v6 {
		want("net.ipv6.conf.all.forwarding", "1", "the kernel must forward IPv6 packets to and from the TUN")
	}
	return errors.Join(errs...)
}

func needsLooseRP(cfg *config.Config) bool {
	for _, s := range cfg.Services {
		if !s.Masquerade() {
			return true
		}
		for _, p := range s.Ports {
			if p.NodePort != 0 {
				return true
			}
		}
	}
	return false
}

func usesFamilies(cfg *config.Config) (v4, v6 bool) {
	see := func(a netip.Addr) {
		if a.Is4() {
			v4 = true
		} else {
			v6 = true
		}
	}
	for _, s := range cfg.Services {
		for _, a := range s.Addresses {
			see(a)
		}
	}
	for _, e := range cfg.Egress {
		for _, a := range e.Addresses {
			see(a)
		}
	}
	return
}

// tuneTUN sets the per-device sysctls the data path relies on: no reverse-path filter and accepting
// packets with a local source (node-port replies), IPv6 enabled.
func tuneTUN(name string, v6 bool) error {
	var errs []error
	for _, kv := range [][2]string{{"net.ipv4.conf." + name + ".rp_filter", "0"}, {"net.ipv4.conf." + name + ".accept_local", "1"}} {
		if err := writeSysctl(kv[0], kv[1]); err != nil {
			errs = append(errs, err)
		}
	}
	if v6 {
		if err := writeSysctl("net.ipv6.conf."+name+".disable_ipv6", "0"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// prune deletes routes and rules an earlier process installed for this TUN that the running
// configuration no longer needs (it crashed, then the configuration changed): edgegate's routes
// through the device (protocol rtProto) and the rules toward its table or from the device, when
// apply did not install them.
func (r *routing) prune() error {
	var errs []error
	idx, name := r.link.Attrs().Index, r.link.Attrs().Name
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: rtProto, Table: unix.RT_TABLE_UNSPEC},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, ro := range routes {
		if ro.LinkIndex != idx || r.hasRoute(ro) {
			continue
		}
		if err := netlink.RouteDel(&ro); err != nil {
			errs = append(errs, fmt.Errorf("remove stale route %s: %w", ro.Dst, err))
		}
	}
	rules, err := netlink.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list rules: %w", err))...)
	}
	for _, ru := range rules {
		if (ru.Table != r.table && ru.IifName != name) || r.hasRule(ru) {
			continue
		}
		if ru.Table == unix.RT_TABLE_LOCAL {
			continue // the moved local rules (moveLocal)
		}
		if err := netlink.RuleDel(&ru); err != nil {
			errs = append(errs, fmt.Errorf("remove stale rule pref %d: %w", ru.Priority, err))
		}
	}
	return errors.Join(errs...)
}

func tableOf(t int) int {
	if t == 0 {
		return unix.RT_TABLE_MAIN
	}
	return t
}

func (r *routing) hasRoute(ro netlink.Route) bool {
	for _, w := range r.routes {
		if tableOf(w.Table) == tableOf(ro.Table) && w.Dst.String() == ro.Dst.String() {
			return true
		}
	}
	return false
}

func (r *routing) hasRule(ru netlink.Rule) bool {
	str := func(n *net.IPNet) string {
		if n == nil {
			return ""
		}
		return n.String()
	}
	pr := func(p *netlink.RulePortRange) [2]uint16 {
		if p == nil {
			return [2]uint16{}
		}
		return [2]uint16{p.Start, p.End}
	}
	for _, w := range r.rules {
		if w.Priority == ru.Priority && w.Table == ru.Table && w.IifName == ru.IifName && w.IPProto == ru.IPProto &&
			str(w.Src) == str(ru.Src) && str(w.Dst) == str(ru.Dst) && pr(w.Sport) == pr(ru.Sport) && pr(w.Dport) == pr(ru.Dport) {
			return true
		}
	}
	return false
}
