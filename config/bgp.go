package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The bgp section: the node announces its service addresses to routers (ECMP in front of N
// nodes). Types, defaults and validation of this section live here; the bgp package runs it.

// BGP is the speaker's configuration.
type BGP struct {
	ASN      uint32     `yaml:"asn"`
	RouterID netip.Addr `yaml:"router_id"` // an IPv4 address unique among the routers' peers
	// ListenPort is the TCP port for sessions the peers open (0, the default: no listener; the
	// node opens every session itself).
	ListenPort  uint16      `yaml:"listen_port"`
	Peers       []BGPPeer   `yaml:"peers"`
	Communities []Community `yaml:"communities"` // attached to every announced prefix
	// WithdrawDelay is how long a stopping node waits after withdrawing its prefixes before it
	// stops taking new flows, so the routers have moved traffic away (default 2s).
	WithdrawDelay Duration `yaml:"withdraw_delay"`
}

// BGPPeer is one router the node keeps a session with.
type BGPPeer struct {
	Address   netip.Addr `yaml:"address"`
	ASN       uint32     `yaml:"asn"`
	Port      uint16     `yaml:"port"`      // default 179
	HoldTime  Duration   `yaml:"hold_time"` // default 90s; whole seconds, 3s..65535s
	Keepalive Duration   `yaml:"keepalive"` // default hold_time / 3; whole seconds below hold_time
	BFD       BFD        `yaml:"bfd"`
	Password  string     `yaml:"password"` // TCP MD5 signature (RFC 2385); empty: none
}

// BFD is the peer's Bidirectional Forwarding Detection session (RFC 5880/5881, single hop).
type BFD struct {
	Enabled    bool     `yaml:"enabled"`
	MinTx      Duration `yaml:"min_tx"`     // desired minimum transmit interval, default 300ms
	MinRx      Duration `yaml:"min_rx"`     // required minimum receive interval, default 300ms
	Multiplier int      `yaml:"multiplier"` // detection multiplier, default 3
}

// Defaults and limits of the bgp section.
const (
	DefaultBGPPort          = 179
	DefaultBGPHoldTime      = Duration(90 * time.Second)
	DefaultBGPWithdrawDelay = Duration(2 * time.Second)
	DefaultBFDInterval      = Duration(300 * time.Millisecond)
	DefaultBFDMultiplier    = 3

	MinBGPHoldTime      = Duration(3 * time.Second) // RFC 4271 4.2: 0 or at least 3 s
	MaxBGPHoldTime      = Duration(65535 * time.Second)
	MaxBGPWithdrawDelay = Duration(5 * time.Minute)
	MinBFDInterval      = Duration(10 * time.Millisecond) // what FRR and BIRD accept
	MaxBFDInterval      = Duration(60 * time.Second)
	MinBFDMultiplier    = 2
	MaxBFDMultiplier    = 255
	MaxBGPPeers         = 64
	MaxBGPCommunities   = 32
	MaxBGPPasswordLen   = 80 // TCP_MD5SIG_MAXKEYLEN
	asTrans             = 23456
)

// Community is a standard BGP community (RFC 1997): "ASN:value" or a well-known name.
type Community uint32

// Well-known communities by name (RFC 1997, RFC 7999).
var wellKnownCommunities = map[string]Community{
	"no-export":           0xFFFFFF01,
	"no-advertise":        0xFFFFFF02,
	"no-export-subconfed": 0xFFFFFF03,
	"blackhole":           0xFFFF029A,
}

// String prints "hi:lo" (or the well-known name).
func (c Community) String() string {
	for name, v := range wellKnownCommunities {
		if v == c {
			return name
		}
	}
	return fmt.Sprintf("%d:%d", uint32(c)>>16, uint32(c)&0xFFFF)
}

// ParseCommunity reads "ASN:value" (each 0..65535) or a well-known name.
func ParseCommunity(s string) (Community, error) {
	s = strings.TrimSpace(s)
	if v, ok := wellKnownCommunities[strings.ToLower(s)]; ok {
		return v, nil
	}
	hi, lo, ok := strings.Cut(s, ":")
	a, err1 := strconv.ParseUint(hi, 10, 16)
	b, err2 := strconv.ParseUint(lo, 10, 16)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("want a community such as \"65000:100\" or no-export, got %q", s)
	}
	return Community(a<<16 | b), nil
}

// UnmarshalYAML reads a community.
func (c *Community) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("want a community such as \"65000:100\"")
	}
	v, err := ParseCommunity(n.Value)
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// MarshalYAML writes the form UnmarshalYAML reads.
func (c Community) MarshalYAML() (any, error) { return c.String(), nil }

// Announced says whether the node announces the service's addresses by BGP (the default when a
// bgp section exists).
func (s *Service) Announced() bool { return s.Announce }

func (v *validator) bgpDefaults() {
	b := v.c.BGP
	for i := range v.c.Services {
		setDefault(v, &v.c.Services[i].Announce, b != nil)
	}
	if b == nil {
		return
	}
	setDefault(v, &b.WithdrawDelay, DefaultBGPWithdrawDelay)
	for i := range b.Peers {
		p := &b.Peers[i]
		setDefault(v, &p.Port, DefaultBGPPort)
		setDefault(v, &p.HoldTime, DefaultBGPHoldTime)
		setDefault(v, &p.Keepalive, Duration((p.HoldTime.D() / 3).Truncate(time.Second)))
		setDefault(v, &p.BFD.MinTx, DefaultBFDInterval)
		setDefault(v, &p.BFD.MinRx, DefaultBFDInterval)
		setDefault(v, &p.BFD.Multiplier, DefaultBFDMultiplier)
	}
}

func (v *validator) validateBGP() {
	b := v.c.BGP
	if b == nil {
		for i := range v.c.Services {
			if s := &v.c.Services[i]; s.Announced() {
				v.errorf(v.at(&s.Announce), "services[%d].announce: needs a bgp section", i)
			}
		}
		return
	}
	if b.ASN == 0 || b.ASN == asTrans {
		v.errorf(v.at(&b.ASN, b), "bgp.asn: want 1..4294967295 (not 23456, AS_TRANS)")
	}
	if !b.RouterID.Is4() || b.RouterID.IsUnspecified() {
		v.errorf(v.at(&b.RouterID, b), "bgp.router_id: want an IPv4 address unique among the peers' neighbours, got %q", b.RouterID)
	}
	if b.WithdrawDelay > MaxBGPWithdrawDelay {
		v.errorf(v.at(&b.WithdrawDelay), "bgp.withdraw_delay: at most %s", MaxBGPWithdrawDelay)
	}
	if len(b.Peers) == 0 {
		v.errorf(v.at(&b.Peers, b), "bgp.peers: at least one peer is required")
	}
	if len(b.Peers) > MaxBGPPeers {
		v.errorf(v.at(&b.Peers), "bgp.peers: at most %d peers", MaxBGPPeers)
	}
	if len(b.Communities) > MaxBGPCommunities {
		v.errorf(v.at(&b.Communities), "bgp.communities: at most %d", MaxBGPCommunities)
	}
	seen := map[netip.Addr]*yaml.Node{}
	for i := range b.Peers {
		p := &b.Peers[i]
		what := fmt.Sprintf("bgp.peers[%d]", i)
		if v.unicast(&p.Address, what+".address") {
			if first, dup := seen[p.Address]; dup {
				v.errorf(v.at(&p.Address), "%s: duplicate peer %s (first at line %d)", what, p.Address, first.Line)
			}
			seen[p.Address] = v.at(&p.Address)
		}
		v.validatePeer(p, what)
	}
}

func (v *validator) validatePeer(p *BGPPeer, what string) {
	if p.ASN == 0 || p.ASN == asTrans {
		v.errorf(v.at(&p.ASN, p), "%s.asn: want 1..4294967295 (not 23456, AS_TRANS)", what)
	}
	if p.Port == 0 {
		v.errorf(v.at(&p.Port), "%s.port: want 1..65535", what)
	}
	wholeSeconds := func(d *Duration, key string, lo, hi Duration) {
		if *d < lo || *d > hi || d.D()%time.Second != 0 {
			v.errorf(v.at(d), "%s.%s: want whole seconds in %s..%s, got %s", what, key, lo, hi, *d)
		}
	}
	wholeSeconds(&p.HoldTime, "hold_time", MinBGPHoldTime, MaxBGPHoldTime)
	wholeSeconds(&p.Keepalive, "keepalive", Duration(time.Second), MaxBGPHoldTime)
	if p.Keepalive >= p.HoldTime {
		v.errorf(v.at(&p.Keepalive), "%s.keepalive: must be shorter than hold_time (%s)", what, p.HoldTime)
	}
	if len(p.Password) > MaxBGPPasswordLen {
		v.errorf(v.at(&p.Password), "%s.password: at most %d bytes (TCP MD5 key)", what, MaxBGPPasswordLen)
	}
	f := &p.BFD
	for _, d := range []struct {
		p   *Duration
		key string
	}{{&f.MinTx, "min_tx"}, {&f.MinRx, "min_rx"}} {
		if *d.p < MinBFDInterval || *d.p > MaxBFDInterval || d.p.D()%time.Microsecond != 0 {
			v.errorf(v.at(d.p), "%s.bfd.%s: want %s..%s, got %s", what, d.key, MinBFDInterval, MaxBFDInterval, *d.p)
		}
	}
	if f.Multiplier < MinBFDMultiplier || f.Multiplier > MaxBFDMultiplier {
		v.errorf(v.at(&f.Multiplier), "%s.bfd.multiplier: want %d..%d, got %d", what, MinBFDMultiplier, MaxBFDMultiplier, f.Multiplier)
	}
}
