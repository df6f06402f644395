package bgp

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/prometheus/client_golang/prometheus"
)

// Status is what `edgegate status` and /status show of the speaker.
type Status struct {
	ASN       uint32         `json:"asn"`
	RouterID  netip.Addr     `json:"router_id"`
	Withdrawn bool           `json:"withdrawn"` // withdrawn for shutdown: announces nothing any more
	Announced []netip.Prefix `json:"announced"`
	Peers     []PeerStatus   `json:"peers"`
}

// PeerStatus is one session.
type PeerStatus struct {
	Address netip.Addr `json:"address"`
	ASN     uint32     `json:"asn"`
	// State is the BGP FSM state: idle, connect, active, opensent, openconfirm, established.
	State string `json:"state"`
	// Since is when the session last came up (established) or went down (otherwise); zero when
	// it never did.
	Since time.Time `json:"since,omitzero"`
	Flaps uint32    `json:"flaps"`
	// BFD is the BFD session state (up, down, init, admin_down), "" when BFD is off.
	BFD string `json:"bfd,omitempty"`
}

// Status reports the sessions and the announced prefixes.
func (s *Speaker) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{ASN: s.cfg.ASN, RouterID: s.cfg.RouterID, Withdrawn: s.held, Announced: []netip.Prefix{}, Peers: []PeerStatus{}}
	for p := range s.announced {
		st.Announced = append(st.Announced, p)
	}
	slices.SortFunc(st.Announced, comparePrefix)
	if s.stopped {
		return st
	}
	bfd := map[netip.Addr]bool{}
	for _, p := range s.cfg.Peers {
		bfd[p.Address] = p.BFD.Enabled
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		st.Peers = append(st.Peers, peerStatus(p, bfd))
	})
	slices.SortFunc(st.Peers, func(a, b PeerStatus) int { return a.Address.Compare(b.Address) })
	return st
}

func peerStatus(p *api.Peer, bfd map[netip.Addr]bool) PeerStatus {
	ps := PeerStatus{State: "unknown"}
	if c := p.GetConf(); c != nil {
		ps.Address, _ = netip.ParseAddr(c.NeighborAddress)
		ps.ASN = c.PeerAsn
	}
	if st := p.GetState(); st != nil {
		ps.State = strings.ToLower(strings.TrimPrefix(st.SessionState.String(), "SESSION_STATE_"))
		ps.Flaps = st.Flops
		if bfd[ps.Address] {
			ps.BFD = strings.ToLower(strings.TrimPrefix(st.GetBfdState().GetSessionState().String(), "BFD_SESSION_STATE_"))
		}
	}
	if ts := p.GetTimers().GetState(); ts != nil {
		t := ts.GetDowntime()
		if ps.State == "established" {
			t = ts.GetUptime()
		}
		if t != nil && t.GetSeconds() > 0 {
			ps.Since = t.AsTime()
		}
	}
	return ps
}

// FormatStatus prints the speaker's part of `edgegate status`.
func FormatStatus(w io.Writer, st Status) error {
	prefixes := make([]string, len(st.Announced))
	for i, p := range st.Announced {
		prefixes[i] = p.String()
	}
	what := strings.Join(prefixes, " ")
	if what == "" {
		what = "nothing"
	}
	if st.Withdrawn {
		what += " (withdrawn for shutdown)"
	}
	fmt.Fprintf(w, "\nbgp: as %d, router id %s, announcing %s\n", st.ASN, st.RouterID, what)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tASN\tSTATE\tSINCE\tFLAPS\tBFD")
	for _, p := range st.Peers {
		since, bfd := "-", p.BFD
		if !p.Since.IsZero() {
			since = p.Since.UTC().Format(time.RFC3339)
		}
		if bfd == "" {
			bfd = "off"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\n", p.Address, p.ASN, p.State, since, p.Flaps, bfd)
	}
	return tw.Flush()
}

var (
	sessionDesc   = prometheus.NewDesc("edgegate_bgp_session_established", "1 while the BGP session with the peer is established, else 0.", []string{"peer"}, nil)
	flapsDesc     = prometheus.NewDesc("edgegate_bgp_session_flaps_total", "Times the BGP session with the peer went down after being established.", []string{"peer"}, nil)
	bfdDesc       = prometheus.NewDesc("edgegate_bgp_bfd_up", "1 while the peer's BFD session is up, else 0 (only peers with BFD enabled).", []string{"peer"}, nil)
	announcedDesc = prometheus.NewDesc("edgegate_bgp_announced", "1 for each prefix the node announces to its BGP peers.", []string{"prefix"}, nil)
)

// Describe implements prometheus.Collector.
func (s *Speaker) Describe(ch chan<- *prometheus.Desc) {
	ch <- sessionDesc
	ch <- flapsDesc
	ch <- bfdDesc
	ch <- announcedDesc
}

// Collect implements prometheus.Collector.
func (s *Speaker) Collect(ch chan<- prometheus.Metric) {
	st := s.Status()
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, p := range st.Peers {
		peer := p.Address.String()
		ch <- prometheus.MustNewConstMetric(sessionDesc, prometheus.GaugeValue, b(p.State == "established"), peer)
		ch <- prometheus.MustNewConstMetric(flapsDesc, prometheus.CounterValue, float64(p.Flaps), peer)
		if p.BFD != "" {
			ch <- prometheus.MustNewConstMetric(bfdDesc, prometheus.GaugeValue, b(p.BFD == "up"), peer)
		}
	}
	for _, p := range st.Announced {
		ch <- prometheus.MustNewConstMetric(announcedDesc, prometheus.GaugeValue, 1, p.String())
	}
}
