package config

import (
	"fmt"
	"net/netip"

	"gopkg.in/yaml.v3"
)

// The cluster section: several nodes behind ECMP translate every flow alike (docs/cluster.md).
// Types, defaults and validation of this section live here; the flowsync package runs it.

// Cluster makes the node one of several that share flows.
type Cluster struct {
	// HashSeed keys maglev and source_hash on every node alike (the same value on all nodes),
	// so a flow gets the same backend whichever node it reaches first.
	HashSeed uint64 `yaml:"hash_seed"`
	// NodeIndex is this node's place in the cluster, 0..len(peers); unique per node. It names
	// the node in flow-sync messages and picks its slice of nat.port_range (PortSlice).
	NodeIndex int `yaml:"node_index"`
	// Listen is the UDP address flow-sync messages from the peers arrive on.
	Listen netip.AddrPort `yaml:"listen"`
	// Peers are the other nodes' listen addresses, the same list on every node minus itself.
	Peers []netip.AddrPort `yaml:"peers"`
	// KeyFile holds the pre-shared key that authenticates flow-sync messages (HMAC-SHA256); at
	// least flowsync.MinKeyLen bytes. Required: a node refuses to start in a cluster without it.
	KeyFile string `yaml:"key_file"`
}

// Limits of the cluster section.
const (
	// MaxClusterNodes bounds the nodes of a cluster (node_index < MaxClusterNodes; flow-sync
	// messages carry the index in one byte).
	MaxClusterNodes = 64
	// MinPortsPerNode is the least a node's slice of nat.port_range may hold.
	MinPortsPerNode = 256
)

// Nodes is the cluster's size: the peers and this node (1 without a cluster).
func (c *Cluster) Nodes() int {
	if c == nil {
		return 1
	}
	return len(c.Peers) + 1
}

// HashSeed is the cluster's hash_seed, 0 without a cluster.
func (c *Config) HashSeed() uint64 {
	if c.Cluster == nil {
		return 0
	}
	return c.Cluster.HashSeed
}

// PortSlice is the part of nat.port_range this node allocates masquerade and egress ports from:
// the whole range on a single node; in a cluster of N nodes (Nodes) the range cut into N equal
// consecutive slices (the last one takes the remainder), slice node_index being this node's. Two
// nodes so never choose the same port, and a flow's reply tuple is unique cluster-wide even when
// the nodes share their masquerade addresses. Every node must agree on N (same peers list).
func (c *Config) PortSlice() PortRange {
	r := c.NAT.PortRange
	n := c.Cluster.Nodes()
	if n == 1 {
		return r
	}
	size := (int(r.Hi) - int(r.Lo) + 1) / n
	lo := int(r.Lo) + c.Cluster.NodeIndex*size
	hi := lo + size - 1
	if c.Cluster.NodeIndex == n-1 {
		hi = int(r.Hi)
	}
	return PortRange{Lo: uint16(lo), Hi: uint16(hi)}
}

func (v *validator) validateCluster() {
	c := v.c.Cluster
	if c == nil {
		return
	}
	n := c.Nodes()
	if n > MaxClusterNodes {
		v.errorf(v.at(&c.Peers), "cluster.peers: at most %d nodes in a cluster (%d peers)", MaxClusterNodes, MaxClusterNodes-1)
	}
	if c.NodeIndex < 0 || c.NodeIndex >= n {
		v.errorf(v.at(&c.NodeIndex, c), "cluster.node_index: want 0..%d (one per node: the peers and this one), got %d", n-1, c.NodeIndex)
	}
	if v.syncAddr(&c.Listen, "cluster.listen", c) && c.Listen.Addr().IsUnspecified() {
		// Peers accept datagrams only from the addresses they list: the node sends from this one.
		v.errorf(v.at(&c.Listen), "cluster.listen: want this node's own address (its peers list it), not %s", c.Listen.Addr())
	}
	seen := map[netip.AddrPort]*yaml.Node{c.Listen: v.at(&c.Listen, c)}
	for i := range c.Peers {
		p := &c.Peers[i]
		what := fmt.Sprintf("cluster.peers[%d]", i)
		if !v.syncAddr(p, what, c) {
			continue
		}
		if p.Addr().IsUnspecified() {
			v.errorf(v.at(p), "%s: want a peer's address, got %s", what, *p)
		}
		if c.Listen.IsValid() && p.Addr().Is4() != c.Listen.Addr().Is4() {
			v.errorf(v.at(p), "%s: %s is not of cluster.listen's address family", what, *p)
		}
		if first, dup := seen[*p]; dup {
			v.errorf(v.at(p), "%s: %s listed twice (first at line %d)", what, *p, first.Line)
		}
		seen[*p] = v.at(p)
	}
	if c.KeyFile == "" {
		v.errorf(v.at(&c.KeyFile, c), "cluster.key_file: required: flow-sync messages are authenticated with a pre-shared key")
	}
	c.KeyFile = v.resolvePath(c.KeyFile)
	r := v.c.NAT.PortRange
	if (int(r.Hi)-int(r.Lo)+1)/n < MinPortsPerNode {
		v.errorf(v.at(&v.c.NAT.PortRange, c), "nat.port_range: %d-%d leaves fewer than %d ports to each of the %d cluster nodes", r.Lo, r.Hi, MinPortsPerNode, n)
	}
}

// syncAddr checks a flow-sync UDP address (an IP, possibly unspecified for listen, and a port).
func (v *validator) syncAddr(p *netip.AddrPort, what string, parent any) bool {
	a := p.Addr()
	switch {
	case !p.IsValid():
		v.errorf(v.at(p, parent), "%s: want an address and port such as \"198.18.0.1:4790\"", what)
	case p.Port() == 0:
		v.errorf(v.at(p), "%s: port 0", what)
	case a.Zone() != "" || a.Is4In6() || a.IsMulticast() || a.IsLoopback():
		v.errorf(v.at(p), "%s: %s is not a usable unicast address", what, a)
	default:
		return true
	}
	return false
}
