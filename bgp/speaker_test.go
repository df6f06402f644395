package bgp

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	gobgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/edgegate/edgegate/config"
)

// The speaker talks to a second GoBGP server, the "router", over loopback. Both keep their
// listeners on lo; the router listens on 127.0.0.2, the speaker connects from 127.0.0.1.

const (
	routerAddr = "127.0.0.2"
	nodeAddr   = "127.0.0.1"
	routerASN  = 65000
	nodeASN    = 65100
	waitFor    = 10 * time.Second // GoBGP reconnects every connectRetry; sessions come up in ~1 s
)

var routerLeak = netip.MustParsePrefix("203.0.113.0/24") // announced by the router; the node must not take it

func freePort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", routerAddr+":0")
	if err != nil {
		t.Skipf("no %s on loopback: %v", routerAddr, err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.DiscardHandler)
}

// startRouter runs a passive GoBGP router that accepts the node and announces routerLeak.
func startRouter(t *testing.T, port uint16) *server.BgpServer {
	t.Helper()
	r := server.NewBgpServer()
	go r.Serve()
	t.Cleanup(r.Stop)
	ctx := context.Background()
	if err := r.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: routerASN, RouterId: "192.0.2.254",
		ListenPort: int32(port), ListenAddresses: []string{routerAddr}, BindToDevice: "lo"}}); err != nil {
		t.Fatal(err)
	}
	if err := r.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: nodeAddr, PeerAsn: nodeASN},
		Transport: &api.Transport{PassiveMode: true},
	}}); err != nil {
		t.Fatal(err)
	}
	nlri, _ := gobgp.NewIPAddrPrefix(routerLeak)
	nh, _ := gobgp.NewPathAttributeNextHop(netip.MustParseAddr(routerAddr))
	if _, err := r.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{{Family: gobgp.RF_IPv4_UC, Nlri: nlri,
		Attrs: []gobgp.PathAttributeInterface{gobgp.NewPathAttributeOrigin(0), nh}}}}); err != nil {
		t.Fatal(err)
	}
	return r
}

// learned returns what srv has in its global IPv4 RIB: prefix -> "nexthop communities".
func learned(t *testing.T, srv *server.BgpServer) map[netip.Prefix]string {
	t.Helper()
	out := map[netip.Prefix]string{}
	err := srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: gobgp.RF_IPv4_UC},
		func(n gobgp.NLRI, paths []*apiutil.Path) {
			for _, p := range paths {
				var nh, cs string
				for _, a := range p.Attrs {
					switch a := a.(type) {
					case *gobgp.PathAttributeNextHop:
						nh = a.Value.String()
					case *gobgp.PathAttributeCommunities:
						for _, c := range a.Value {
							cs += " " + config.Community(c).String()
						}
					}
				}
				out[netip.MustParsePrefix(n.String())] = nh + cs
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitFor, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func nodeConfig(port uint16) *config.BGP {
	return &config.BGP{ASN: nodeASN, RouterID: netip.MustParseAddr("192.0.2.1"),
		Communities: []config.Community{nodeASN<<16 | 7},
		Peers: []config.BGPPeer{{Address: netip.MustParseAddr(routerAddr), ASN: routerASN, Port: port,
			HoldTime: config.Duration(9 * time.Second), Keepalive: config.Duration(3 * time.Second),
			BFD: config.BFD{MinTx: config.DefaultBFDInterval, MinRx: config.DefaultBFDInterval, Multiplier: 3}}}}
}

func TestSpeakerAnnouncesAndWithdraws(t *testing.T) {
	port := freePort(t)
	router := startRouter(t, port)
	s, err := start(nodeConfig(port), testLogger(t), "lo")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	vip1, vip2 := netip.MustParsePrefix("198.18.200.10/32"), netip.MustParsePrefix("198.18.200.11/32")
	if err := s.Announce([]netip.Prefix{vip1, vip2}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the session and both prefixes at the router", func() bool {
		l := learned(t, router)
		return l[vip1] == nodeAddr+" 65100:7" && l[vip2] == nodeAddr+" 65100:7"
	})
	st := s.Status()
	if len(st.Peers) != 1 || st.Peers[0].State != "established" || st.Peers[0].BFD != "" || !slices.Equal(st.Announced, []netip.Prefix{vip1, vip2}) {
		t.Fatalf("status = %+v", st)
	}
	if l := learned(t, s.srv); len(l) != 2 {
		t.Errorf("the node took routes from its router (transit risk): %v", l)
	}
	if err := s.Announce([]netip.Prefix{vip1}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "vip2 withdrawn", func() bool { _, ok := learned(t, router)[vip2]; return !ok })
	if err := s.Withdraw(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every prefix withdrawn", func() bool { _, ok := learned(t, router)[vip1]; return !ok })
	if err := s.Announce([]netip.Prefix{vip1, vip2}); err != nil { // a health flip during shutdown
		t.Fatal(err)
	}
	if st := s.Status(); len(st.Announced) != 0 || !st.Withdrawn {
		t.Fatalf("announced after Withdraw: %+v", st)
	}
	var out strings.Builder
	if err := FormatStatus(&out, s.Status()); err != nil || !strings.Contains(out.String(), "127.0.0.2  65000  established") {
		t.Errorf("FormatStatus: %v\n%s", err, out.String())
	}
}

func TestSpeakerReconfigure(t *testing.T) {
	port := freePort(t)
	router := startRouter(t, port)
	cfg := nodeConfig(port)
	s, err := start(cfg, testLogger(t), "lo")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	vip := netip.MustParsePrefix("198.18.200.10/32")
	if err := s.Announce([]netip.Prefix{vip}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the prefix at the router", func() bool { return learned(t, router)[vip] != "" })

	next := *cfg
	next.Communities = []config.Community{0xFFFFFF01}
	if err := s.Reconfigure(&next); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new community", func() bool { return learned(t, router)[vip] == nodeAddr+" no-export" })

	noPeers := next
	noPeers.Peers = nil
	if err := s.Reconfigure(&noPeers); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the session closed", func() bool { return len(learned(t, router)) == 1 })
	if st := s.Status(); len(st.Peers) != 0 || len(st.Announced) != 1 {
		t.Fatalf("status without peers = %+v", st)
	}

	restart := next // a new router id restarts the speaker; announcements survive it
	restart.RouterID = netip.MustParseAddr("192.0.2.2")
	if err := s.Reconfigure(&restart); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the prefix back after the restart", func() bool { return learned(t, router)[vip] == nodeAddr+" no-export" })
}

func TestPrefixes(t *testing.T) {
	c, err := config.Parse([]byte(`services:
  - name: web
    addresses: [198.18.200.10, 2001:db8::10]
    ports: [{port: 80}]
    backends: [{address: 198.19.1.2}, {address: 198.19.1.3}, {address: "2001:db8:1::2"}]
  - name: drained
    addresses: [198.18.200.11]
    ports: [{port: 80}]
    backends: [{address: 198.19.1.2, drain: true}, {address: 198.19.1.3, weight: 0}]
  - name: quiet
    announce: false
    addresses: [198.18.200.12]
    ports: [{port: 80}]
    backends: [{address: 198.19.1.2}]
nat: {masquerade_addresses: [198.18.250.1, 2001:db8::250]}
bgp:
  asn: 65100
  router_id: 198.18.21.2
  peers: [{address: 198.18.21.1, asn: 65000}]
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := netip.MustParsePrefix
	down := netip.MustParseAddr("198.19.1.2")
	tests := []struct {
		name    string
		ready   bool
		healthy Healthy
		want    []netip.Prefix
	}{
		{"ready, all healthy", true, nil, []netip.Prefix{p("198.18.200.10/32"), p("2001:db8::10/128")}},
		{"not ready", false, nil, nil},
		{"one backend down", true, func(_ string, b netip.Addr) bool { return b != down }, []netip.Prefix{p("198.18.200.10/32"), p("2001:db8::10/128")}},
		{"all backends down", true, func(string, netip.Addr) bool { return false }, nil},
		{"IPv6 backends down", true, func(_ string, b netip.Addr) bool { return b.Is4() }, []netip.Prefix{p("198.18.200.10/32")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Prefixes(c, tt.ready, tt.healthy); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	if got := Prefixes(&config.Config{Services: c.Services}, true, nil); got != nil {
		t.Errorf("without a bgp section: %v", got)
	}
}

// TestSpeakerIPv6 announces a /128 over an IPv6 session (router and node both on ::1; the
// router accepts the node passively).
func TestSpeakerIPv6(t *testing.T) {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	r := server.NewBgpServer()
	go r.Serve()
	defer r.Stop()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: routerASN, RouterId: "192.0.2.254",
		ListenPort: int32(port), ListenAddresses: []string{"::1"}, BindToDevice: "lo"}}))
	v6 := &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
	must(r.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: "::1", PeerAsn: nodeASN},
		Transport: &api.Transport{PassiveMode: true},
		AfiSafis:  []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: v6, Enabled: true}}},
	}}))
	cfg := nodeConfig(port)
	cfg.Peers[0].Address = netip.MustParseAddr("::1")
	s, err := start(cfg, testLogger(t), "lo")
	must(err)
	defer s.Stop()
	vip := netip.MustParsePrefix("2001:db8::10/128")
	must(s.Announce([]netip.Prefix{vip, netip.MustParsePrefix("198.18.200.10/32")}))
	nexthop := func() string {
		var nh string
		must(r.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: gobgp.RF_IPv6_UC},
			func(n gobgp.NLRI, paths []*apiutil.Path) {
				for _, p := range paths {
					for _, a := range p.Attrs {
						if mp, ok := a.(*gobgp.PathAttributeMpReachNLRI); ok && n.String() == vip.String() {
							nh = mp.Nexthop.String()
						}
					}
				}
			}))
		return nh
	}
	eventually(t, "the /128 at the router with next hop ::1", func() bool { return nexthop() == "::1" })
	if l := learned(t, r); len(l) != 0 {
		t.Errorf("IPv4 prefixes sent over an IPv6 session: %v", l)
	}
	must(s.Withdraw())
	eventually(t, "the /128 withdrawn", func() bool { return nexthop() == "" })
}
