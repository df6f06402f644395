package main

import (
	"errors"
	"fmt"

	"github.com/edgegate/edgegate/internal/netns"
)

// Addresses of the bench topology, all inside 198.18.0.0/15 (RFC 2544 benchmarking space):
//
//	client ns  c0 198.18.1.2/24 ── g0 198.18.1.1/24  gateway ns  g1 198.19.1.1/24 ── s0 198.19.1.2/24  server ns
//
// The client reaches the server directly (kernel routing) or through the virtual address vipAddr
// (NAT, HAProxy, edgegate); edgegate masquerades to masqAddr, which the server routes back via
// the gateway.
const (
	clientAddr   = "198.18.1.2"
	gwClientAddr = "198.18.1.1"
	gwServerAddr = "198.19.1.1"
	serverAddr   = "198.19.1.2"
	vipAddr      = "198.18.200.10"
	vipPrefix    = "198.18.200.0/24"
	masqAddr     = "198.18.250.1"
	masqPrefix   = "198.18.250.0/24"

	ifClient   = "c0"
	ifGWClient = "g0"
	ifGWServer = "g1"
	ifServer   = "s0"

	iperfPort    = 5201
	connRatePort = 8080
)

// topology is one client -> gateway -> server chain of fresh namespaces. Each target gets its
// own, so no state (nft rules, conntrack, a TUN device) leaks from one target into the next.
type topology struct {
	client, gw, server *netns.NS
}

// newTopology creates and wires the three namespaces; on error nothing is left behind.
func newTopology(mtu int) (_ *topology, err error) {
	t := &topology{}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.Close())
		}
	}()
	if t.client, err = netns.Create(netns.UniqueName("egbc")); err != nil {
		return nil, err
	}
	if t.gw, err = netns.Create(netns.UniqueName("egbg")); err != nil {
		return nil, err
	}
	if t.server, err = netns.Create(netns.UniqueName("egbs")); err != nil {
		return nil, err
	}
	steps := []func() error{
		func() error { return netns.Link(t.client, ifClient, t.gw, ifGWClient, mtu) },
		func() error { return netns.Link(t.gw, ifGWServer, t.server, ifServer, mtu) },
		func() error { return t.client.Addr(ifClient, clientAddr+"/24") },
		func() error { return t.gw.Addr(ifGWClient, gwClientAddr+"/24") },
		func() error { return t.gw.Addr(ifGWServer, gwServerAddr+"/24") },
		func() error { return t.server.Addr(ifServer, serverAddr+"/24") },
		func() error { return t.client.Route("198.19.1.0/24", "via", gwClientAddr) },
		func() error { return t.client.Route(vipPrefix, "via", gwClientAddr) },
		func() error { return t.server.Route("198.18.1.0/24", "via", gwServerAddr) },
		func() error { return t.server.Route(masqPrefix, "via", gwServerAddr) },
		func() error { return t.gw.Sysctl("net.ipv4.ip_forward", "1") },
		// A TUN device created later must not drop forwarded packets on reverse-path checks.
		func() error { return t.gw.Sysctl("net.ipv4.conf.all.rp_filter", "0") },
		func() error { return t.gw.Sysctl("net.ipv4.conf.default.rp_filter", "0") },
	}
	for _, n := range []*netns.NS{t.client, t.gw, t.server} {
		// Connection-rate runs open tens of thousands of connections: use all ephemeral ports
		// and let TIME_WAIT ports be reused, in every namespace (HAProxy connects from gw).
		steps = append(steps,
			func() error { return n.Sysctl("net.ipv4.ip_local_port_range", "1024 65535") },
			func() error { return n.Sysctl("net.ipv4.tcp_tw_reuse", "1") },
		)
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, fmt.Errorf("topology: %w", err)
		}
	}
	return t, nil
}

// names lists the namespaces (for cleanup checks).
func (t *topology) names() []string {
	var s []string
	for _, n := range []*netns.NS{t.client, t.gw, t.server} {
		if n != nil {
			s = append(s, n.Name)
		}
	}
	return s
}

// Close stops every process started in the namespaces and deletes them.
func (t *topology) Close() error {
	var errs []error
	for _, n := range []*netns.NS{t.client, t.gw, t.server} {
		if n != nil {
			errs = append(errs, n.Close())
		}
	}
	return errors.Join(errs...)
}
