package config

import (
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Defaults (also documented on the fields in types.go and in docs/config.md).
const (
	DefaultTUNName                        = "edge0"
	DefaultMTU                            = 1500
	DefaultTxQueueLen                     = 10000
	DefaultRouteTable                     = 4242
	DefaultScheduler                      = SchedulerRoundRobin
	DefaultAffinityTimeout                = Duration(3 * time.Hour)
	DefaultMaglevTableSize                = 65537
	DefaultMaxEntries                     = 262144
	DefaultAdminListen                    = "127.0.0.1:9469"
	DefaultAdminSocket                    = "/run/edgegate/admin.sock"
	DefaultLogFormat                      = "text"
	DefaultLogLevel                       = "info"
	DefaultHealthInterval                 = Duration(2 * time.Second)
	DefaultHealthTimeout                  = Duration(1 * time.Second)
	DefaultHealthThreshold                = 2
	DefaultHealthHTTPPath                 = "/"
	DefaultHealthHTTPStatus               = 200
	DefaultWeight                         = 1
	DefaultOffload                        = true
	DefaultManageRoutes                   = true
	DefaultPersist                        = true
	DefaultTCPLoose                       = true
	DefaultCheckpointInterval             = Duration(10 * time.Second)
	DefaultAccessLog                      = true
	SYNProxyAuto, SYNProxyOn, SYNProxyOff = "auto", "on", "off" // tun.syn_proxy
)

// Bounds of the default tun.queues (DefaultQueues).
const (
	// MinDefaultQueues: with two queues or more the gateway steers TCP connection attempts to a
	// queue of their own (the last), so a SYN flood never shares the ring of established flows.
	MinDefaultQueues = 2
	// MaxDefaultQueues caps the default on large machines: each queue costs a worker and a ring
	// of up to tun.txqueuelen packets, and more than 8 workers on one flow table have not been
	// measured. An explicit tun.queues (up to MaxQueues) still wins.
	MaxDefaultQueues = 8
)

// DefaultQueues is tun.queues when the file does not set it: one queue (and worker) per CPU the
// process may use (runtime.NumCPU: the affinity mask at start), within
// MinDefaultQueues..MaxDefaultQueues.
func DefaultQueues() int { return defaultQueues(runtime.NumCPU()) }

func defaultQueues(cpus int) int { return min(max(cpus, MinDefaultQueues), MaxDefaultQueues) }

// DefaultPortRange is the masquerade source port range.
var DefaultPortRange = PortRange{Lo: 1024, Hi: 65535}

// DefaultTimeouts are netfilter's conntrack defaults.
var DefaultTimeouts = Timeouts{
	TCPSynSent:     Duration(120 * time.Second),
	TCPSynRecv:     Duration(60 * time.Second),
	TCPEstablished: Duration(432000 * time.Second),
	TCPFinWait:     Duration(120 * time.Second),
	TCPCloseWait:   Duration(60 * time.Second),
	TCPLastAck:     Duration(30 * time.Second),
	TCPTimeWait:    Duration(120 * time.Second),
	TCPClose:       Duration(10 * time.Second),
	UDP:            Duration(30 * time.Second),
	UDPStream:      Duration(120 * time.Second),
	ICMP:           Duration(30 * time.Second),
}

// Limits of a few numeric keys.
const (
	MinMTU, MinMTUIPv6, MaxMTU = 576, 1280, 65535
	MaxQueues                  = 64
	MinMaxEntries              = 16
	// MinCheckpointInterval bounds how often conntrack.checkpoint writes the table (each write
	// walks every flow and writes a file).
	MinCheckpointInterval = Duration(time.Second)
	MaxMaglevTableSize    = 1<<22 - 3 // largest prime below 4 Mi: bounds lookup table memory (lb allows 16 Mi)
	MaxWeight             = 65535     // lb allows 1<<20; a config never needs more
	MaxBackends           = 1<<16 - 2 // lb.MaxBackends: lookup tables hold 16-bit indices
)

// validator applies defaults and checks one decoded Config; it reports through the decoder so
// validation problems carry the position of the node they concern.
type validator struct {
	*decoder
	c      *Config
	root   *yaml.Node
	primes map[int]bool
}

// at returns the node of the first of ptrs that came from YAML, else the document root.
func (v *validator) at(ptrs ...any) *yaml.Node {
	for _, p := range ptrs {
		if n := v.node(p); n != nil {
			return n
		}
	}
	if v.root != nil {
		return v.root
	}
	return &yaml.Node{Line: 1, Column: 1}
}

// isPrime is exact for these sizes (Baillie-PSW); memoized because thousands of services
// usually share one table size.
func (v *validator) isPrime(n int) bool {
	if p, ok := v.primes[n]; ok {
		return p
	}
	if v.primes == nil {
		v.primes = make(map[int]bool)
	}
	p := big.NewInt(int64(n)).ProbablyPrime(0)
	v.primes[n] = p
	return p
}

// defaults resolves the decoded config: every key the file left out gets its default here, the
// one place defaults are applied, so nothing downstream re-decides one.
func (v *validator) defaults() {
	c := v.c
	v.tunDefaults()
	setDefault(v, &c.NAT.PortRange, DefaultPortRange)
	for i := range c.Services {
		v.serviceDefaults(&c.Services[i])
	}
	v.conntrackDefaults()
	if c.Admin.Listen == "" {
		c.Admin.Listen = DefaultAdminListen
	}
	if c.Admin.Socket == "" {
		c.Admin.Socket = DefaultAdminSocket
	}
	if c.Log.Format == "" {
		c.Log.Format = DefaultLogFormat
	}
	if c.Log.Level == "" {
		c.Log.Level = DefaultLogLevel
	}
	if c.Ingress != nil {
		v.ingressDefaults()
	}
	v.bgpDefaults()
}

// setDefault sets *p to def unless the file gave the key (an explicit zero value is kept).
func setDefault[T any](v *validator, p *T, def T) {
	if !v.set(p) {
		*p = def
	}
}

func (v *validator) tunDefaults() {
	t := &v.c.TUN
	if t.Name == "" {
		t.Name = DefaultTUNName
	}
	setDefault(v, &t.MTU, DefaultMTU)
	t.QueuesDefault = !v.set(&t.Queues)
	setDefault(v, &t.Queues, DefaultQueues())
	setDefault(v, &t.Offload, DefaultOffload)
	setDefault(v, &t.ManageRoutes, DefaultManageRoutes)
	setDefault(v, &t.Persist, DefaultPersist)
	setDefault(v, &t.TxQueueLen, DefaultTxQueueLen)
	setDefault(v, &t.RouteTable, DefaultRouteTable)
	if t.SYNProxy == "" {
		t.SYNProxy = SYNProxyAuto
	}
	if !v.set(&t.SYNBurst) && t.SYNRateLimit > 0 {
		t.SYNBurst = max(t.SYNRateLimit/5, 100)
	}
}

func (v *validator) serviceDefaults(s *Service) {
	if s.Scheduler == "" {
		s.Scheduler = DefaultScheduler
	}
	if s.SessionAffinity == "" {
		s.SessionAffinity = AffinityNone
	}
	setDefault(v, &s.SessionAffinityTimeout, DefaultAffinityTimeout)
	if s.SourceNAT == "" {
		s.SourceNAT = SourceNATMasquerade
	}
	setDefault(v, &s.MaglevTableSize, DefaultMaglevTableSize)
	for j := range s.Ports {
		p := &s.Ports[j]
		if p.Protocol == "" {
			p.Protocol = ProtocolTCP
		}
		setDefault(v, &p.TargetPort, p.Port)
	}
	for j := range s.Backends {
		setDefault(v, &s.Backends[j].Weight, DefaultWeight)
	}
	if s.HealthCheck != nil {
		v.healthDefaults(s.HealthCheck, s)
	}
}

func (v *validator) healthDefaults(h *HealthCheck, s *Service) {
	if h.Type == "" {
		h.Type = HealthTCP
	}
	if !v.set(&h.Port) && len(s.Ports) > 0 {
		h.Port = s.Ports[0].TargetPort
	}
	if h.Type == HealthHTTP {
		if h.Path == "" {
			h.Path = DefaultHealthHTTPPath
		}
		setDefault(v, &h.ExpectStatus, DefaultHealthHTTPStatus)
	}
	setDefault(v, &h.Interval, DefaultHealthInterval)
	setDefault(v, &h.Timeout, DefaultHealthTimeout)
	setDefault(v, &h.HealthyThreshold, DefaultHealthThreshold)
	setDefault(v, &h.UnhealthyThreshold, DefaultHealthThreshold)
	if h.AllUnhealthy == "" {
		h.AllUnhealthy = AllUnhealthyFailOpen
	}
}

func (v *validator) conntrackDefaults() {
	ct := &v.c.Conntrack
	setDefault(v, &ct.MaxEntries, DefaultMaxEntries)
	setDefault(v, &ct.TCPLoose, DefaultTCPLoose)
	if cp := ct.Checkpoint; cp != nil {
		setDefault(v, &cp.Interval, DefaultCheckpointInterval)
	}
	to, def := &ct.Timeouts, DefaultTimeouts
	for _, f := range []struct{ p, d *Duration }{
		{&to.TCPSynSent, &def.TCPSynSent}, {&to.TCPSynRecv, &def.TCPSynRecv},
		{&to.TCPEstablished, &def.TCPEstablished}, {&to.TCPFinWait, &def.TCPFinWait},
		{&to.TCPCloseWait, &def.TCPCloseWait}, {&to.TCPLastAck, &def.TCPLastAck},
		{&to.TCPTimeWait, &def.TCPTimeWait}, {&to.TCPClose, &def.TCPClose},
		{&to.UDP, &def.UDP}, {&to.UDPStream, &def.UDPStream}, {&to.ICMP, &def.ICMP},
	} {
		setDefault(v, f.p, *f.d)
	}
}

func (v *validator) validate() {
	v.validateTUN()
	v.validateNAT()
	v.validateServices()
	v.validateEgress()
	v.validateRouted()
	v.validateConntrack()
	v.validateAdminLog()
	if v.c.Ingress != nil {
		v.validateIngress()
	}
	v.validateBGP()
	v.validateCluster()
}

// oneOf checks an enumerated string.
func (v *validator) oneOf(p *string, what string, allowed ...string) { oneOf(v, p, what, allowed...) }

// oneOf checks an enumerated value of a typed enum.
func oneOf[T ~string](v *validator, p *T, what string, allowed ...T) {
	if slices.Contains(allowed, *p) {
		return
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	v.errorf(v.at(p), "%s: unknown value %q (want one of: %s)", what, *p, strings.Join(names, ", "))
}

// isDNSLabel reports whether s is an RFC 1123 label (lowercase), the naming rule for every
// named object so names can appear in metrics labels and URLs unquoted.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= '0' && ch <= '9':
		case ch == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

// names checks that a named object's name is present, a DNS label and unique among seen.
func (v *validator) name(p *string, what string, parent any, seen map[string]*yaml.Node) {
	switch {
	case *p == "":
		v.errorf(v.at(p, parent), "%s: name is required", what)
	case !isDNSLabel(*p):
		v.errorf(v.at(p), "%s: name %q must be a DNS label (lowercase letters, digits and '-', at most 63)", what, *p)
	default:
		if first, dup := seen[*p]; dup {
			v.errorf(v.at(p), "%s: duplicate name %q (first at line %d)", what, *p, first.Line)
		} else {
			seen[*p] = v.at(p)
		}
	}
}

// unicast checks an address that traffic is sent to or from.
func (v *validator) unicast(p *netip.Addr, what string) bool {
	a := *p
	var why string
	switch {
	case !a.IsValid():
		why = "address is required"
	case a.Zone() != "":
		why = fmt.Sprintf("address %s must not have a zone", a)
	case a.Is4In6():
		why = fmt.Sprintf("address %s is IPv4-mapped; write it as %s", a, a.Unmap())
	case a.IsUnspecified(), a.IsMulticast(), a.IsLoopback(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		why = fmt.Sprintf("address %s is not a usable unicast address", a)
	default:
		return true
	}
	v.errorf(v.at(p), "%s: %s", what, why)
	return false
}

// prefix checks a prefix is valid and has no host bits set (a likely typo otherwise).
func (v *validator) prefix(p *netip.Prefix, what string) bool {
	x := *p
	switch {
	case !x.IsValid():
		v.errorf(v.at(p), "%s: prefix is required", what)
	case x.Addr().Zone() != "" || x.Addr().Is4In6():
		v.errorf(v.at(p), "%s: prefix %s must be plain IPv4 or IPv6", what, x)
	case x.Masked() != x:
		v.errorf(v.at(p), "%s: prefix %s has host bits set (did you mean %s?)", what, x, x.Masked())
	default:
		return true
	}
	return false
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

func (v *validator) validateTUN() {
	t := &v.c.TUN
	if len(t.Name) > 15 || strings.ContainsAny(t.Name, "/: \t\n") || t.Name == "." || t.Name == ".." {
		v.errorf(v.at(&t.Name), "tun.name: %q is not a valid interface name (at most 15 characters, no '/', ':' or spaces)", t.Name)
	}
	minMTU := MinMTU
	if v.anyIPv6() {
		minMTU = MinMTUIPv6
	}
	if t.MTU < minMTU || t.MTU > MaxMTU {
		why := ""
		if minMTU == MinMTUIPv6 {
			why = " (IPv6 addresses are configured, so at least 1280)"
		}
		v.errorf(v.at(&t.MTU, &v.c.TUN), "tun.mtu: %d out of range %d..%d%s", t.MTU, minMTU, MaxMTU, why)
	}
	if t.Queues < 1 || t.Queues > MaxQueues {
		v.errorf(v.at(&t.Queues), "tun.queues: %d out of range 1..%d", t.Queues, MaxQueues)
	}
	if t.TxQueueLen < 0 {
		v.errorf(v.at(&t.TxQueueLen), "tun.txqueuelen: must not be negative")
	}
	if t.SYNRateLimit < 0 {
		v.errorf(v.at(&t.SYNRateLimit), "tun.syn_rate_limit: must not be negative")
	}
	if t.SYNBurst < 0 {
		v.errorf(v.at(&t.SYNBurst), "tun.syn_burst: must not be negative")
	}
	switch t.SYNProxy {
	case SYNProxyAuto, SYNProxyOn, SYNProxyOff:
	default:
		v.errorf(v.at(&t.SYNProxy), "tun.syn_proxy: %q: want auto, on or off", t.SYNProxy)
	}
	switch rt := t.RouteTable; {
	case rt < 1 || rt > 1<<31-1:
		v.errorf(v.at(&t.RouteTable), "tun.route_table: %d out of range 1..2147483647", rt)
	case rt >= 253 && rt <= 255:
		v.errorf(v.at(&t.RouteTable), "tun.route_table: %d is a reserved table (default, main, local)", rt)
	}
}

// anyIPv6 says whether any address in the file is IPv6 (then the MTU must be at least 1280).
func (v *validator) anyIPv6() bool {
	c := v.c
	is6 := func(as []netip.Addr) bool {
		return slices.ContainsFunc(as, func(a netip.Addr) bool { return a.Is6() && !a.Is4In6() })
	}
	if is6(c.NAT.MasqueradeAddresses) || is6(c.NodePorts.Addresses) {
		return true
	}
	for _, s := range c.Services {
		if is6(s.Addresses) || slices.ContainsFunc(s.Backends, func(b Backend) bool { return b.Address.Is6() }) {
			return true
		}
	}
	for _, e := range c.Egress {
		if is6(e.Addresses) || slices.ContainsFunc(e.Sources, func(p netip.Prefix) bool { return p.Addr().Is6() }) {
			return true
		}
	}
	return false
}

func (v *validator) validateNAT() {
	v.uniqueAddrs(v.c.NAT.MasqueradeAddresses, "nat.masquerade_addresses")
	v.uniqueAddrs(v.c.NodePorts.Addresses, "node_ports.addresses")
}

// uniqueAddrs checks that each address of the list under key is unicast and not repeated.
func (v *validator) uniqueAddrs(list []netip.Addr, key string) {
	seen := map[netip.Addr]*yaml.Node{}
	for i := range list {
		p := &list[i]
		what := fmt.Sprintf("%s[%d]", key, i)
		if !v.unicast(p, what) {
			continue
		}
		if first, dup := seen[*p]; dup {
			v.errorf(v.at(p), "%s: duplicate address %s (first at line %d)", what, *p, first.Line)
			continue
		}
		seen[*p] = v.at(p)
	}
}

type protoPort struct {
	proto string
	port  uint16
}

func (v *validator) validateServices() {
	c := v.c
	names := map[string]*yaml.Node{}
	nodePorts := map[protoPort]*yaml.Node{}
	masqFamilies := map[string]bool{}
	for _, a := range c.NAT.MasqueradeAddresses {
		masqFamilies[family(a)] = true
	}
	for i := range c.Services {
		s := &c.Services[i]
		what := fmt.Sprintf("services[%d]", i)
		v.name(&s.Name, what, s, names)
		if s.Name != "" {
			what = fmt.Sprintf("service %q", s.Name)
		}
		if len(s.Addresses) == 0 {
			v.errorf(v.at(&s.Addresses, s), "%s: at least one address is required", what)
		}
		svcFamilies := map[string]bool{}
		for _, p := range v.distinctAddrs(s.Addresses, what, "address") {
			svcFamilies[family(*p)] = true
		}
		v.validatePorts(s, what, nodePorts)
		v.validateScheduling(s, what)
		v.validateBackends(s, what, svcFamilies, masqFamilies)
		if s.HealthCheck != nil {
			v.validateHealth(s, what)
		}
	}
}

// validatePorts checks a service's ports; nodePorts holds the node ports of all services so far.
func (v *validator) validatePorts(s *Service, what string, nodePorts map[protoPort]*yaml.Node) {
	if len(s.Ports) == 0 {
		v.errorf(v.at(&s.Ports, s), "%s: at least one port is required", what)
	}
	portNames := map[string]*yaml.Node{}
	served := map[protoPort]*yaml.Node{}
	for j := range s.Ports {
		p := &s.Ports[j]
		pw := fmt.Sprintf("%s: ports[%d]", what, j)
		if p.Name != "" {
			v.name(&p.Name, pw, p, portNames)
		}
		v.oneOf(&p.Protocol, pw+".protocol", ProtocolTCP, ProtocolUDP)
		if p.Port == 0 {
			v.errorf(v.at(&p.Port, p), "%s.port: a port 1..65535 is required", pw)
		} else {
			k := protoPort{p.Protocol, p.Port}
			if first, dup := served[k]; dup {
				v.errorf(v.at(&p.Port), "%s.port: %s/%d is already served by this service (line %d)", pw, p.Protocol, p.Port, first.Line)
			} else {
				served[k] = v.at(&p.Port)
			}
		}
		if p.TargetPort == 0 && p.Port != 0 {
			v.errorf(v.at(&p.TargetPort), "%s.target_port: must be 1..65535", pw)
		}
		if p.NodePort != 0 {
			k := protoPort{p.Protocol, p.NodePort}
			if first, dup := nodePorts[k]; dup {
				v.errorf(v.at(&p.NodePort), "%s.node_port: %s node port %d is already used (line %d)", pw, p.Protocol, p.NodePort, first.Line)
			} else {
				nodePorts[k] = v.at(&p.NodePort)
			}
		}
	}
}

// validateScheduling checks the scheduler, affinity, source NAT and Maglev keys of a service.
func (v *validator) validateScheduling(s *Service, what string) {
	oneOf(v, &s.Scheduler, what+": scheduler", Schedulers...)
	oneOf(v, &s.SessionAffinity, what+": session_affinity", AffinityNone, AffinityClientIP)
	if s.SessionAffinityTimeout <= 0 {
		v.errorf(v.at(&s.SessionAffinityTimeout), "%s: session_affinity_timeout must be positive", what)
	}
	oneOf(v, &s.SourceNAT, what+": source_nat", SourceNATMasquerade, SourceNATNone)
	if m := s.MaglevTableSize; m < 2 || m > MaxMaglevTableSize || !v.isPrime(m) {
		v.errorf(v.at(&s.MaglevTableSize), "%s: maglev_table_size %d must be a prime 2..%d (e.g. 251, 4099, 65537)", what, m, MaxMaglevTableSize)
	} else if m < len(s.Backends) {
		v.errorf(v.at(&s.MaglevTableSize), "%s: maglev_table_size %d is smaller than the number of backends (%d)", what, m, len(s.Backends))
	}
}

// validateBackends checks a service's backends against its address families (svcFamilies) and,
// when it masquerades, the masquerade addresses' (masqFamilies).
func (v *validator) validateBackends(s *Service, what string, svcFamilies, masqFamilies map[string]bool) {
	if len(s.Backends) == 0 {
		v.errorf(v.at(&s.Backends, s), "%s: at least one backend is required", what)
	} else if len(s.Backends) > MaxBackends {
		v.errorf(v.at(&s.Backends), "%s: %d backends, at most %d", what, len(s.Backends), MaxBackends)
	}
	seenBackend := map[netip.Addr]*yaml.Node{}
	backendFamilies := map[string]bool{}
	for j := range s.Backends {
		b := &s.Backends[j]
		bw := fmt.Sprintf("%s: backends[%d]", what, j)
		if !v.unicast(&b.Address, bw) {
			continue
		}
		if first, dup := seenBackend[b.Address]; dup {
			v.errorf(v.at(&b.Address), "%s: duplicate backend %s (first at line %d)", bw, b.Address, first.Line)
		} else {
			seenBackend[b.Address] = v.at(&b.Address)
		}
		if w := b.Weight; w < 0 || w > MaxWeight {
			v.errorf(v.at(&b.Weight), "%s.weight: %d out of range 0..%d", bw, w, MaxWeight)
		}
		f := family(b.Address)
		backendFamilies[f] = true
		if len(svcFamilies) > 0 && !svcFamilies[f] {
			v.errorf(v.at(&b.Address), "%s: %s backend %s but the service has no %s address (edgegate does not translate between IPv4 and IPv6)", bw, f, b.Address, f)
		}
		if s.Masquerade() && !masqFamilies[f] {
			v.errorf(v.at(&b.Address), "%s: source_nat masquerade needs an %s address in nat.masquerade_addresses for backend %s (or set source_nat: none)", bw, f, b.Address)
		}
	}
	if len(backendFamilies) == 0 {
		return
	}
	for j := range s.Addresses {
		a := &s.Addresses[j]
		if a.IsValid() && !backendFamilies[family(*a)] {
			v.errorf(v.at(a), "%s: address %s has no %s backend to serve it", what, *a, family(*a))
		}
	}
}

func (v *validator) validateHealth(s *Service, what string) {
	h := s.HealthCheck
	what += ": health_check"
	v.oneOf(&h.Type, what+".type", HealthTCP, HealthHTTP)
	if h.Port == 0 && (v.set(&h.Port) || len(s.Ports) > 0) { // no ports: reported already
		v.errorf(v.at(&h.Port, h), "%s.port: must be 1..65535", what)
	}
	if h.Type == HealthHTTP {
		if !strings.HasPrefix(h.Path, "/") || strings.ContainsAny(h.Path, " \t\r\n#") {
			v.errorf(v.at(&h.Path), "%s.path: %q must start with '/' and contain no spaces or '#'", what, h.Path)
		}
		if h.ExpectStatus < 100 || h.ExpectStatus > 599 {
			v.errorf(v.at(&h.ExpectStatus), "%s.expect_status: %d is not an HTTP status 100..599", what, h.ExpectStatus)
		}
	} else {
		if h.Path != "" {
			v.errorf(v.at(&h.Path), "%s.path: only used with type http", what)
		}
		if h.ExpectStatus != 0 {
			v.errorf(v.at(&h.ExpectStatus), "%s.expect_status: only used with type http", what)
		}
	}
	if h.Interval <= 0 {
		v.errorf(v.at(&h.Interval), "%s.interval: must be positive", what)
	}
	if h.Timeout <= 0 {
		v.errorf(v.at(&h.Timeout), "%s.timeout: must be positive", what)
	} else if h.Interval > 0 && h.Timeout > h.Interval {
		v.errorf(v.at(&h.Timeout), "%s.timeout: %s is longer than the interval %s", what, h.Timeout, h.Interval)
	}
	if h.HealthyThreshold < 1 {
		v.errorf(v.at(&h.HealthyThreshold), "%s.healthy_threshold: must be at least 1", what)
	}
	if h.UnhealthyThreshold < 1 {
		v.errorf(v.at(&h.UnhealthyThreshold), "%s.unhealthy_threshold: must be at least 1", what)
	}
	oneOf(v, &h.AllUnhealthy, what+".all_unhealthy", AllUnhealthyFailOpen, AllUnhealthyRefuse)
}

func (v *validator) validateEgress() {
	names := map[string]*yaml.Node{}
	type src struct {
		p    netip.Prefix
		node *yaml.Node
		name string
	}
	var sources []src
	for i := range v.c.Egress {
		e := &v.c.Egress[i]
		what := fmt.Sprintf("egress[%d]", i)
		v.name(&e.Name, what, e, names)
		if e.Name != "" {
			what = fmt.Sprintf("egress %q", e.Name)
		}
		if len(e.Sources) == 0 {
			v.errorf(v.at(&e.Sources, e), "%s: at least one source prefix is required", what)
		}
		if len(e.Addresses) == 0 {
			v.errorf(v.at(&e.Addresses, e), "%s: at least one pool address is required", what)
		}
		srcFam, poolFam := map[string]bool{}, map[string]bool{}
		for j := range e.Sources {
			p := &e.Sources[j]
			if !v.prefix(p, fmt.Sprintf("%s: sources[%d]", what, j)) {
				continue
			}
			srcFam[family(p.Addr())] = true
			for _, o := range sources {
				if o.p.Overlaps(*p) {
					v.errorf(v.at(p), "%s: source %s overlaps %s of egress %q (line %d)", what, *p, o.p, o.name, o.node.Line)
					break
				}
			}
			sources = append(sources, src{*p, v.at(p), e.Name})
		}
		for _, a := range v.distinctAddrs(e.Addresses, what, "pool address") {
			f := family(*a)
			poolFam[f] = true
			if len(srcFam) > 0 && !srcFam[f] {
				v.errorf(v.at(a), "%s: %s pool address %s but no %s source", what, f, *a, f)
			}
		}
		if len(poolFam) > 0 {
			for j := range e.Sources {
				p := &e.Sources[j]
				if f := family(p.Addr()); p.IsValid() && !poolFam[f] {
					v.errorf(v.at(p), "%s: %s source %s but no %s pool address", what, f, *p, f)
				}
			}
		}
		for j := range e.Destinations {
			v.prefix(&e.Destinations[j], fmt.Sprintf("%s: destinations[%d]", what, j))
		}
	}
}

// validateRouted checks the addresses routed into the TUN (service, masquerade, egress pool
// addresses) are distinct from each other and never used as a backend: such a backend would
// loop back into edgegate.
func (v *validator) validateRouted() {
	c := v.c
	type owner struct {
		what string
		node *yaml.Node
	}
	routed := map[netip.Addr]owner{}
	for i := range c.NAT.MasqueradeAddresses {
		a := &c.NAT.MasqueradeAddresses[i]
		if _, dup := routed[*a]; !dup && a.IsValid() {
			routed[*a] = owner{"masquerade address", v.at(a)}
		}
	}
	for i := range c.Services {
		s := &c.Services[i]
		for j := range s.Addresses {
			a := &s.Addresses[j]
			if !a.IsValid() {
				continue
			}
			o, dup := routed[*a]
			switch {
			case !dup:
				routed[*a] = owner{fmt.Sprintf("address of service %q", s.Name), v.at(a)}
			case o.what != fmt.Sprintf("address of service %q", s.Name):
				v.errorf(v.at(a), "service %q: address %s is already the %s (line %d)", s.Name, *a, o.what, o.node.Line)
			}
		}
	}
	for i := range c.Egress {
		e := &c.Egress[i]
		for j := range e.Addresses {
			a := &e.Addresses[j]
			if !a.IsValid() {
				continue
			}
			if o, dup := routed[*a]; dup && !strings.HasPrefix(o.what, "masquerade") && !strings.HasPrefix(o.what, "pool address") {
				v.errorf(v.at(a), "egress %q: pool address %s is already the %s (line %d)", e.Name, *a, o.what, o.node.Line)
			} else if !dup {
				routed[*a] = owner{fmt.Sprintf("pool address of egress %q", e.Name), v.at(a)}
			}
		}
	}
	for i := range c.Services {
		s := &c.Services[i]
		for j := range s.Backends {
			b := &s.Backends[j]
			if o, dup := routed[b.Address]; dup {
				v.errorf(v.at(&b.Address), "service %q: backend %s is the %s (line %d); traffic to it would loop into edgegate", s.Name, b.Address, o.what, o.node.Line)
			}
		}
	}
}

func (v *validator) validateConntrack() {
	ct := &v.c.Conntrack
	if ct.MaxEntries < MinMaxEntries {
		v.errorf(v.at(&ct.MaxEntries), "conntrack.max_entries: %d is below the minimum %d", ct.MaxEntries, MinMaxEntries)
	}
	if cp := ct.Checkpoint; cp != nil {
		if !filepath.IsAbs(cp.Path) {
			v.errorf(v.at(&cp.Path, cp), "conntrack.checkpoint.path: %q must be an absolute file path", cp.Path)
		}
		if cp.Interval < MinCheckpointInterval {
			v.errorf(v.at(&cp.Interval), "conntrack.checkpoint.interval: %v is below the minimum %v", cp.Interval, MinCheckpointInterval)
		}
	}
	to := &ct.Timeouts
	for _, f := range []struct {
		name string
		p    *Duration
	}{
		{"tcp_syn_sent", &to.TCPSynSent}, {"tcp_syn_recv", &to.TCPSynRecv},
		{"tcp_established", &to.TCPEstablished}, {"tcp_fin_wait", &to.TCPFinWait},
		{"tcp_close_wait", &to.TCPCloseWait}, {"tcp_last_ack", &to.TCPLastAck},
		{"tcp_time_wait", &to.TCPTimeWait}, {"tcp_close", &to.TCPClose},
		{"udp", &to.UDP}, {"udp_stream", &to.UDPStream}, {"icmp", &to.ICMP},
	} {
		if *f.p <= 0 {
			v.errorf(v.at(f.p), "conntrack.timeouts.%s: must be positive", f.name)
		}
	}
}

// validListen checks a "host:port" listen address where host is empty, an IP or localhost.
func validListen(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if host != "" && host != "localhost" {
		if a, err := netip.ParseAddr(host); err != nil || a.Zone() != "" {
			return fmt.Errorf("%q: host must be an IP address, localhost or empty", s)
		}
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("%q: port must be 1..65535", s)
	}
	return nil
}

// MaxSocketPath is the longest Unix socket path the kernel accepts (sun_path less its NUL).
const MaxSocketPath = 107

func validSocketPath(s string) error {
	switch {
	case !filepath.IsAbs(s):
		return fmt.Errorf("%q: want an absolute path", s)
	case len(s) > MaxSocketPath:
		return fmt.Errorf("%q: longer than %d bytes (the kernel's limit for a socket path)", s, MaxSocketPath)
	case strings.HasSuffix(s, "/"):
		return fmt.Errorf("%q: want a file name, not a directory", s)
	}
	return nil
}

func (v *validator) validateAdminLog() {
	c := v.c
	if c.Admin.Listen != AdminOff {
		if err := validListen(c.Admin.Listen); err != nil {
			v.errorf(v.at(&c.Admin.Listen), "admin.listen: %v (or \"off\")", err)
		}
	}
	if c.Admin.Socket != AdminOff {
		if err := validSocketPath(c.Admin.Socket); err != nil {
			v.errorf(v.at(&c.Admin.Socket), "admin.socket: %v (or \"off\")", err)
		}
	} else if c.Admin.SocketGroup != "" {
		v.errorf(v.at(&c.Admin.SocketGroup), "admin.socket_group: set while admin.socket is off")
	}
	v.oneOf(&c.Log.Format, "log.format", "text", "json")
	v.oneOf(&c.Log.Level, "log.level", "debug", "info", "warn", "error")
}

// distinctAddrs checks each address of list (a unicast address, not repeated) and returns
// pointers to those that passed, for the caller's further checks; kind names them in messages.
func (v *validator) distinctAddrs(list []netip.Addr, what, kind string) []*netip.Addr {
	var ok []*netip.Addr
	seen := map[netip.Addr]*yaml.Node{}
	for j := range list {
		a := &list[j]
		if !v.unicast(a, fmt.Sprintf("%s: addresses[%d]", what, j)) {
			continue
		}
		if first, dup := seen[*a]; dup {
			v.errorf(v.at(a), "%s: duplicate %s %s (first at line %d)", what, kind, *a, first.Line)
			continue
		}
		seen[*a] = v.at(a)
		ok = append(ok, a)
	}
	return ok
}
