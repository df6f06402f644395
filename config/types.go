package config

import (
	"net/netip"
	"time"
)

// The types in this file are the YAML contract with users, docs and examples: key names may be
// extended, never renamed. Parse fills them from the file, applies defaults once and validates;
// after that a Config is never mutated (it is the immutable snapshot the data path reads).
// A parsed Config is resolved: every default is set (no pointer stands for "unset"), and the
// enumerated keys are typed (Scheduler, Affinity, SourceNAT, AllUnhealthy) with their YAML
// spellings as values, so no consumer re-decides a default or compares a bare string.

// Config is the whole file.
type Config struct {
	TUN       TUN       `yaml:"tun"`
	NAT       NAT       `yaml:"nat"`
	NodePorts NodePorts `yaml:"node_ports"`
	Services  []Service `yaml:"services"`
	Egress    []Egress  `yaml:"egress"`
	Conntrack Conntrack `yaml:"conntrack"`
	Admin     Admin     `yaml:"admin"`
	Log       Log       `yaml:"log"`
	Ingress   *Ingress  `yaml:"ingress"`
	BGP       *BGP      `yaml:"bgp"`     // nil: no BGP speaker (see bgp.go)
	Cluster   *Cluster  `yaml:"cluster"` // nil: a single node (see cluster.go)

	// Source is the file the config was read from (for messages); not a YAML key.
	Source string `yaml:"-"`

	services map[string]int // name -> index in Services, built once by Parse
}

// TUN describes the device edgegate reads packets from.
type TUN struct {
	Name         string `yaml:"name"`          // default "edge0"
	MTU          int    `yaml:"mtu"`           // default 1500
	Queues       int    `yaml:"queues"`        // default DefaultQueues() (one per CPU, 2..8); >1 opens a multi-queue device, one worker each
	Offload      bool   `yaml:"offload"`       // default true: IFF_VNET_HDR + TSO/USO offloads
	ManageRoutes bool   `yaml:"manage_routes"` // default true
	TxQueueLen   int    `yaml:"txqueuelen"`    // default 10000
	RouteTable   int    `yaml:"route_table"`   // policy routing table for egress/node ports, default 4242
	// SYNRateLimit bounds the TCP connection attempts (SYN without ACK) the kernel hands to the
	// TUN, in packets per second (0: no limit), so a SYN flood cannot crowd established flows out
	// of the device's ring. Needs nft (nftables) in the namespace.
	SYNRateLimit int `yaml:"syn_rate_limit"`
	SYNBurst     int `yaml:"syn_burst"` // default: syn_rate_limit / 5, at least 100
	// Persist keeps the device (IFF_PERSIST) and its routes when the process dies without a
	// clean exit, so a restart reattaches and picks the flows up; default true.
	Persist bool `yaml:"persist"`
	// SYNProxy says when connections to TCP service ports are answered with SYN cookies and
	// spliced to their backend once the client's ACK proves its address: auto (default: while
	// SYNs arrive faster than the gateway's threshold or the flow table fills), on, off.
	SYNProxy string `yaml:"syn_proxy"`
	// QueuesDefault: the file does not set queues (DefaultQueues chose it). A hand-over then
	// keeps the running device's queue count, which another CPU count may have chosen.
	QueuesDefault bool `yaml:"-"`
}

// NAT configures masquerading toward backends.
type NAT struct {
	MasqueradeAddresses []netip.Addr `yaml:"masquerade_addresses"`
	PortRange           PortRange    `yaml:"port_range"` // default 1024-65535
}

// NodePorts says on which node addresses node_port values are served.
type NodePorts struct {
	// Addresses are the node's own addresses on which node ports are steered into the TUN.
	// Empty: every global unicast address of the namespace at start.
	Addresses []netip.Addr `yaml:"addresses"`
}

// PortRange is "lo-hi" in YAML.
type PortRange struct{ Lo, Hi uint16 }

// Service is a set of virtual addresses and ports balanced over backends.
type Service struct {
	Name                   string        `yaml:"name"`
	Addresses              []netip.Addr  `yaml:"addresses"`
	Ports                  []ServicePort `yaml:"ports"`
	Scheduler              Scheduler     `yaml:"scheduler"`                // default round_robin
	SessionAffinity        Affinity      `yaml:"session_affinity"`         // none (default) or client_ip
	SessionAffinityTimeout Duration      `yaml:"session_affinity_timeout"` // default 3h (10800 s)
	SourceNAT              SourceNAT     `yaml:"source_nat"`               // masquerade (default) or none
	MaglevTableSize        int           `yaml:"maglev_table_size"`        // prime, default 65537
	Backends               []Backend     `yaml:"backends"`
	HealthCheck            *HealthCheck  `yaml:"health_check"`
	Announce               bool          `yaml:"announce"` // announce the addresses by BGP; default true with a bgp section
}

// ServicePort is one port of a service.
type ServicePort struct {
	Name       string `yaml:"name"`
	Protocol   string `yaml:"protocol"` // tcp (default), udp
	Port       uint16 `yaml:"port"`
	TargetPort uint16 `yaml:"target_port"` // default Port
	NodePort   uint16 `yaml:"node_port"`   // 0: none
}

// Backend is one endpoint of a service.
type Backend struct {
	Address netip.Addr `yaml:"address"`
	Weight  int        `yaml:"weight"` // default 1; 0 means no new flows
	Drain   bool       `yaml:"drain"`  // draining: no new flows, existing ones continue
}

// HealthCheck probes each backend of a service.
type HealthCheck struct {
	Type               string   `yaml:"type"`                // tcp (default) or http
	Port               uint16   `yaml:"port"`                // default: the first port's target_port
	Path               string   `yaml:"path"`                // http only, default "/"
	ExpectStatus       int      `yaml:"expect_status"`       // http only, default 200
	Interval           Duration `yaml:"interval"`            // default 2s
	Timeout            Duration `yaml:"timeout"`             // default 1s
	HealthyThreshold   int      `yaml:"healthy_threshold"`   // default 2
	UnhealthyThreshold int      `yaml:"unhealthy_threshold"` // default 2
	// AllUnhealthy is the policy when no backend is healthy: fail_open (default: use all) or refuse.
	AllUnhealthy AllUnhealthy `yaml:"all_unhealthy"`
}

// Egress SNATs traffic from inside prefixes to the outside with a pool address.
type Egress struct {
	Name      string         `yaml:"name"`
	Sources   []netip.Prefix `yaml:"sources"`
	Addresses []netip.Addr   `yaml:"addresses"`
	// Destinations, when set, limits SNAT to these prefixes; default: everything not a service.
	Destinations []netip.Prefix `yaml:"destinations"`
}

// Conntrack bounds and times the flow table.
type Conntrack struct {
	MaxEntries int      `yaml:"max_entries"` // default 262144
	Timeouts   Timeouts `yaml:"timeouts"`
	// DrainTimeout bounds how long TCP flows to a removed backend continue (0: until they end).
	DrainTimeout Duration `yaml:"drain_timeout"`
	// TCPLoose picks up flows met in mid-stream after a restart (netfilter's
	// nf_conntrack_tcp_loose) when their translation can be rebuilt; default true.
	TCPLoose bool `yaml:"tcp_loose"`
	// Checkpoint writes the flow table to a file periodically and reads it at start, so flows
	// that cannot be picked up (round robin, affinity) survive a crash up to its interval.
	Checkpoint *Checkpoint `yaml:"checkpoint"`
}

// Checkpoint configures conntrack.checkpoint.
type Checkpoint struct {
	Path     string   `yaml:"path"`     // required, absolute
	Interval Duration `yaml:"interval"` // default DefaultCheckpointInterval, at least MinCheckpointInterval
}

// Timeouts are netfilter's defaults unless set.
type Timeouts struct {
	TCPSynSent     Duration `yaml:"tcp_syn_sent"`    // 120s
	TCPSynRecv     Duration `yaml:"tcp_syn_recv"`    // 60s
	TCPEstablished Duration `yaml:"tcp_established"` // 432000s (5 days)
	TCPFinWait     Duration `yaml:"tcp_fin_wait"`    // 120s
	TCPCloseWait   Duration `yaml:"tcp_close_wait"`  // 60s
	TCPLastAck     Duration `yaml:"tcp_last_ack"`    // 30s
	TCPTimeWait    Duration `yaml:"tcp_time_wait"`   // 120s
	TCPClose       Duration `yaml:"tcp_close"`       // 10s
	UDP            Duration `yaml:"udp"`             // 30s
	UDPStream      Duration `yaml:"udp_stream"`      // 120s
	ICMP           Duration `yaml:"icmp"`            // 30s
}

// Admin is the operations surface: a TCP listener for metrics and probes (loopback by default)
// and a Unix socket for the rest of the API (flows, capture, configuration, status, pprof).
type Admin struct {
	Listen      string `yaml:"listen"`       // default 127.0.0.1:9469; "off" disables; /metrics, /healthz, /readyz only
	Socket      string `yaml:"socket"`       // default /run/edgegate/admin.sock; "off" disables; the whole API
	SocketGroup string `yaml:"socket_group"` // group (name or id) that may use the socket (mode 0660); default none (0600)
	Pprof       bool   `yaml:"pprof"`        // /debug/pprof/ on the socket
}

// Log configures log/slog.
type Log struct {
	Format string `yaml:"format"` // text (default) or json
	Level  string `yaml:"level"`  // debug, info (default), warn, error
}

// Duration accepts Go durations ("30s", "3h") and plain integers as seconds.
type Duration time.Duration
