package config

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

const clusterBase = base + `cluster:
  hash_seed: 12345678901234
  node_index: 1
  listen: 198.18.30.2:4790
  peers: [198.18.30.1:4790, 198.18.30.3:4790]
  key_file: /etc/edgegate/cluster.key
`

func TestClusterValid(t *testing.T) {
	c, err := Parse([]byte(clusterBase), "/x/t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cl := c.Cluster
	if cl.HashSeed != 12345678901234 || cl.NodeIndex != 1 || cl.Listen != netip.MustParseAddrPort("198.18.30.2:4790") ||
		len(cl.Peers) != 2 || cl.Peers[1] != netip.MustParseAddrPort("198.18.30.3:4790") || cl.KeyFile != "/etc/edgegate/cluster.key" {
		t.Errorf("cluster = %+v", cl)
	}
	if c.HashSeed() != 12345678901234 || cl.Nodes() != 3 {
		t.Errorf("seed %d nodes %d", c.HashSeed(), cl.Nodes())
	}
	rel, err := Parse([]byte(strings.Replace(clusterBase, "/etc/edgegate/cluster.key", "keys/c.key", 1)), "/x/t.yaml")
	if err != nil || rel.Cluster.KeyFile != "/x/keys/c.key" {
		t.Errorf("relative key_file: %v, %v", rel.Cluster, err)
	}
	out, err := c.Effective()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(out, "/x/t.yaml")
	if err != nil || fmt.Sprint(*back.Cluster) != fmt.Sprint(*cl) {
		t.Errorf("effective config does not parse back: %v\n%s", err, out)
	}
	single, err := Parse([]byte(base), "t.yaml")
	if err != nil || single.Cluster != nil || single.HashSeed() != 0 || single.PortSlice() != DefaultPortRange {
		t.Errorf("without cluster: %+v, %v", single.Cluster, err)
	}
}

// TestPortSlice: the nodes' slices are disjoint, consecutive, cover nat.port_range and only
// depend on node_index and the number of nodes.
func TestPortSlice(t *testing.T) {
	for _, tt := range []struct {
		lo, hi uint16
		nodes  int
	}{{1024, 65535, 2}, {1024, 65535, 3}, {1024, 65535, 64}, {20000, 29999, 7}, {1, 65535, 5}} {
		next := int(tt.lo)
		for i := range tt.nodes {
			c := &Config{NAT: NAT{PortRange: PortRange{tt.lo, tt.hi}}, Cluster: &Cluster{NodeIndex: i, Peers: make([]netip.AddrPort, tt.nodes-1)}}
			s := c.PortSlice()
			if int(s.Lo) != next || s.Hi < s.Lo {
				t.Fatalf("%+v node %d: slice %v, want it to start at %d", tt, i, s, next)
			}
			size := (int(tt.hi) - int(tt.lo) + 1) / tt.nodes
			if n := int(s.Hi) - int(s.Lo) + 1; n < size || n >= size+tt.nodes {
				t.Fatalf("%+v node %d: slice %v holds %d ports, want %d (+ remainder on the last)", tt, i, s, n, size)
			}
			next = int(s.Hi) + 1
		}
		if next != int(tt.hi)+1 {
			t.Fatalf("%+v: slices end at %d, want %d", tt, next-1, tt.hi)
		}
	}
}

func TestClusterInvalid(t *testing.T) {
	head := base + "cluster:\n  listen: 198.18.30.2:4790\n  key_file: k\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"no key", base + "cluster:\n  listen: 198.18.30.2:4790\n", "cluster.key_file: required"},
		{"no listen", base + "cluster:\n  key_file: k\n", `cluster.listen: want an address and port such as "198.18.0.1:4790"`},
		{"listen port 0", base + "cluster:\n  listen: 198.18.30.2:0\n  key_file: k\n", "cluster.listen: port 0"},
		{"listen not addrport", base + "cluster:\n  listen: 198.18.30.2\n  key_file: k\n", `cluster.listen: want an address and port such as "198.18.0.1:4790", got "198.18.30.2"`},
		{"index too big", head + "  node_index: 2\n  peers: [198.18.30.1:4790]\n", "cluster.node_index: want 0..1"},
		{"index negative", head + "  node_index: -1\n", "cluster.node_index: want 0..0"},
		{"peer is self", head + "  peers: [198.18.30.2:4790]\n", "cluster.peers[0]: 198.18.30.2:4790 listed twice"},
		{"peer twice", head + "  peers: [198.18.30.1:4790, 198.18.30.1:4790]\n", "cluster.peers[1]: 198.18.30.1:4790 listed twice"},
		{"peer unspecified", head + "  peers: [0.0.0.0:4790]\n", "cluster.peers[0]: want a peer's address"},
		{"peer multicast", head + "  peers: [224.0.0.1:4790]\n", "cluster.peers[0]: 224.0.0.1 is not a usable unicast address"},
		{"slices too small", strings.Replace(head, "nat:\n", "nat:\n  port_range: 1024-1500\n", 1) + "  peers: [198.18.30.1:4790]\n",
			"nat.port_range: 1024-1500 leaves fewer than 256 ports to each of the 2 cluster nodes"},
		{"unknown key", head + "  hash-seed: 1\n", `unknown key "hash-seed" (did you mean "hash_seed"?)`},
		{"listen unspecified", base + "cluster:\n  listen: 0.0.0.0:4790\n  key_file: k\n", "cluster.listen: want this node's own address (its peers list it), not 0.0.0.0"},
		{"peer of another family", head + "  peers: [\"[2001:db8::3]:4790\"]\n", "cluster.peers[0]: [2001:db8::3]:4790 is not of cluster.listen's address family"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantParseError(t, tt.yaml, tt.want) })
	}
}
