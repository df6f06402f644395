package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	gobgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/edgegate/edgegate/config"
)

// Timers the config does not expose (GoBGP's defaults are 120 s and 30 s, which keep a node
// out of ECMP for half a minute after a BFD-triggered reset).
const (
	connectRetry       = 3 * time.Second // between attempts to open a session
	idleHoldAfterReset = 1 * time.Second // before reconnecting after a session went down
	opTimeout          = 5 * time.Second // bounds one call into the GoBGP server
)

// importPolicy accepts only the node's own paths into its RIB: a node learns nothing from its
// routers, so it can never pass one router's routes on to another (no accidental transit).
const importPolicy = "edgegate-local-only"

// Speaker is the node's BGP speaker. Its methods are safe for concurrent use.
type Speaker struct {
	log        *slog.Logger
	bindDevice string // tests: keep the listeners (BGP, BFD) on one device

	mu        sync.Mutex
	srv       *server.BgpServer
	cfg       config.BGP
	want      []netip.Prefix        // what the node should announce (kept while held)
	announced map[netip.Prefix]bool // what is in the RIB
	held      bool                  // Withdraw was called: announce nothing any more
	stopped   bool
}

// Start runs a speaker for cfg: it opens a session to each peer (and listens when
// cfg.ListenPort is set). It announces nothing until Announce.
func Start(cfg *config.BGP, log *slog.Logger) (*Speaker, error) {
	return start(cfg, log, "")
}

func start(cfg *config.BGP, log *slog.Logger, bindDevice string) (*Speaker, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Speaker{log: log.With("component", "bgp"), bindDevice: bindDevice, announced: map[netip.Prefix]bool{}}
	srv, err := s.startServer(cfg)
	if err != nil {
		return nil, err
	}
	s.srv, s.cfg = srv, *cfg
	return s, nil
}

func (s *Speaker) startServer(cfg *config.BGP) (*server.BgpServer, error) {
	lvl := new(slog.LevelVar)
	srv := server.NewBgpServer(server.LoggerOption(s.log, lvl))
	go srv.Serve()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	port := int32(cfg.ListenPort)
	if port == 0 {
		port = -1 // GoBGP: no listener
	}
	err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: cfg.ASN, RouterId: cfg.RouterID.String(), ListenPort: port, BindToDevice: s.bindDevice,
	}})
	if err == nil {
		err = installImportPolicy(ctx, srv)
	}
	for i := 0; err == nil && i < len(cfg.Peers); i++ {
		err = srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peerOf(&cfg.Peers[i])})
	}
	if err != nil {
		srv.Stop()
		return nil, fmt.Errorf("bgp: start speaker (as %d, router id %s): %w", cfg.ASN, cfg.RouterID, err)
	}
	return srv, nil
}

func installImportPolicy(ctx context.Context, srv *server.BgpServer) error {
	err := srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{Name: importPolicy, Statements: []*api.Statement{{
		Name:       importPolicy + "-accept",
		Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
		Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT},
	}}}})
	if err != nil {
		return err
	}
	return srv.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_POLICY_DIRECTION_IMPORT,
		Policies: []*api.Policy{{Name: importPolicy}}, DefaultAction: api.RouteAction_ROUTE_ACTION_REJECT,
	}})
}

// peerOf translates a configured peer; each session carries the unicast family of its address.
func peerOf(p *config.BGPPeer) *api.Peer {
	afi := api.Family_AFI_IP
	if p.Address.Is6() {
		afi = api.Family_AFI_IP6
	}
	secs := func(d config.Duration) uint64 { return uint64(d.D() / time.Second) }
	micros := func(d config.Duration) uint32 { return uint32(d.D() / time.Microsecond) }
	return &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.ASN, AuthPassword: p.Password},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime: secs(p.HoldTime), KeepaliveInterval: secs(p.Keepalive),
			ConnectRetry: uint64(connectRetry / time.Second), IdleHoldTimeAfterReset: uint64(idleHoldAfterReset / time.Second),
		}},
		Transport: &api.Transport{RemotePort: uint32(p.Port)},
		AfiSafis:  []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}, Enabled: true}}},
		Bfd: &api.BfdPeerConfig{
			Enabled: p.BFD.Enabled, DesiredMinimumTxInterval: micros(p.BFD.MinTx),
			RequiredMinimumReceive: micros(p.BFD.MinRx), DetectionMultiplier: uint32(p.BFD.Multiplier),
		},
	}
}

// Announce makes the announced prefixes equal to want (host prefixes of the node's service
// addresses; see Prefixes). After Withdraw it only remembers want.
func (s *Speaker) Announce(want []netip.Prefix) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.want = slices.Clone(want)
	if s.held || s.stopped {
		return nil
	}
	return s.sync(false)
}

// sync brings the RIB to s.want; all re-adds every prefix (new path attributes).
func (s *Speaker) sync(all bool) error {
	want := make(map[netip.Prefix]bool, len(s.want))
	for _, p := range s.want {
		want[p] = true
	}
	var errs []error
	for _, p := range slices.SortedFunc(maps.Keys(s.announced), comparePrefix) {
		if !want[p] {
			if err := s.srv.DeletePath(apiutil.DeletePathRequest{Paths: []*apiutil.Path{s.path(p)}}); err != nil {
				errs = append(errs, fmt.Errorf("bgp: withdraw %s: %w", p, err))
				continue
			}
			delete(s.announced, p)
			s.log.Info("withdrawn", "prefix", p)
		}
	}
	for _, p := range s.want {
		if s.announced[p] && !all {
			continue
		}
		if _, err := s.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{s.path(p)}}); err != nil {
			errs = append(errs, fmt.Errorf("bgp: announce %s: %w", p, err))
			continue
		}
		if !s.announced[p] {
			s.log.Info("announced", "prefix", p)
		}
		s.announced[p] = true
	}
	return errors.Join(errs...)
}

// path is the local path for host prefix p: origin IGP, the configured communities, and an
// unspecified next hop that GoBGP replaces with the session's local address for each peer.
func (s *Speaker) path(p netip.Prefix) *apiutil.Path {
	nlri, _ := gobgp.NewIPAddrPrefix(p) // p is valid: built from a service address
	attrs := []gobgp.PathAttributeInterface{gobgp.NewPathAttributeOrigin(gobgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	fam := gobgp.RF_IPv4_UC
	if p.Addr().Is4() {
		nh, _ := gobgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
		attrs = append(attrs, nh)
	} else {
		fam = gobgp.RF_IPv6_UC
		mp, _ := gobgp.NewPathAttributeMpReachNLRI(fam, []gobgp.PathNLRI{{NLRI: nlri}}, netip.IPv6Unspecified())
		attrs = append(attrs, mp)
	}
	if len(s.cfg.Communities) > 0 {
		cs := make([]uint32, len(s.cfg.Communities))
		for i, c := range s.cfg.Communities {
			cs[i] = uint32(c)
		}
		attrs = append(attrs, gobgp.NewPathAttributeCommunities(cs))
	}
	// Family must be set explicitly: GoBGP v4.8 refuses a path without it.
	return &apiutil.Path{Family: fam, Nlri: nlri, Attrs: attrs}
}

// Withdraw withdraws every prefix and keeps them withdrawn (the first step of a shutdown:
// routers move new flows to the other nodes while this one still serves what it has).
func (s *Speaker) Withdraw() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held = true
	if s.stopped {
		return nil
	}
	want := s.want
	s.want = nil
	err := s.sync(false)
	s.want = want
	return err
}

// Reconfigure applies a reloaded bgp section: added peers get a session, removed ones lose it,
// a peer whose settings changed is re-established; a new asn, router_id or listen_port restarts
// the speaker (every session flaps). New communities are sent with every prefix.
func (s *Speaker) Reconfigure(cfg *config.BGP) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("bgp: speaker stopped")
	}
	old := s.cfg
	if old.ASN != cfg.ASN || old.RouterID != cfg.RouterID || old.ListenPort != cfg.ListenPort {
		s.srv.Stop() // first: the new server needs the listen port and BFD's UDP port
		srv, err := s.startServer(cfg)
		if err != nil {
			s.stopped = true
			return err
		}
		s.srv, s.cfg, s.announced = srv, *cfg, map[netip.Prefix]bool{}
		s.log.Info("speaker restarted for a new asn, router_id or listen_port", "asn", cfg.ASN, "router_id", cfg.RouterID)
		return s.resync(true)
	}
	s.cfg = *cfg
	if err := s.reconcilePeers(old.Peers, cfg.Peers); err != nil {
		return err
	}
	return s.resync(!slices.Equal(old.Communities, cfg.Communities))
}

func (s *Speaker) resync(all bool) error {
	if s.held {
		return nil
	}
	return s.sync(all)
}

func (s *Speaker) reconcilePeers(old, next []config.BGPPeer) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	was := map[netip.Addr]config.BGPPeer{}
	for _, p := range old {
		was[p.Address] = p
	}
	var errs []error
	for i := range next {
		p := &next[i]
		prev, existed := was[p.Address]
		delete(was, p.Address)
		if existed && prev == *p {
			continue
		}
		if existed {
			if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: p.Address.String()}); err != nil {
				errs = append(errs, fmt.Errorf("bgp: re-establish peer %s: %w", p.Address, err))
				continue
			}
		}
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peerOf(p)}); err != nil {
			errs = append(errs, fmt.Errorf("bgp: add peer %s: %w", p.Address, err))
			continue
		}
		s.log.Info("peer configured", "peer", p.Address, "asn", p.ASN, "bfd", p.BFD.Enabled)
	}
	for a := range was {
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()}); err != nil {
			errs = append(errs, fmt.Errorf("bgp: remove peer %s: %w", a, err))
			continue
		}
		s.log.Info("peer removed", "peer", a)
	}
	return errors.Join(errs...)
}

// Stop closes every session (a Cease to each peer, which withdraws what is left) and stops the
// speaker.
func (s *Speaker) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.stopped = true
	s.srv.Stop()
	s.announced = map[netip.Prefix]bool{}
}

// WithdrawDelay is how long a stopping node waits after Withdraw (config bgp.withdraw_delay).
func (s *Speaker) WithdrawDelay() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.WithdrawDelay.D()
}
