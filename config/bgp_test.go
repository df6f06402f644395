package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const bgpBase = base + `bgp:
  asn: 65100
  router_id: 198.18.21.2
  peers:
    - address: 198.18.21.1
      asn: 65000
`

func TestBGPDefaults(t *testing.T) {
	c, err := Parse([]byte(bgpBase), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b := c.BGP
	if b.ListenPort != 0 || b.WithdrawDelay != DefaultBGPWithdrawDelay || len(b.Communities) != 0 {
		t.Errorf("bgp defaults: %+v", b)
	}
	want := BGPPeer{Address: b.Peers[0].Address, ASN: 65000, Port: 179, HoldTime: Duration(90 * time.Second),
		Keepalive: Duration(30 * time.Second), BFD: BFD{MinTx: DefaultBFDInterval, MinRx: DefaultBFDInterval, Multiplier: 3}}
	if b.Peers[0] != want {
		t.Errorf("peer = %+v, want %+v", b.Peers[0], want)
	}
	if !c.Services[0].Announced() {
		t.Error("announce does not default to true with a bgp section")
	}
	c, err = Parse([]byte(base), "t.yaml")
	if err != nil || c.Services[0].Announced() || c.BGP != nil {
		t.Errorf("without bgp: announced=%v bgp=%v err=%v", c.Services[0].Announced(), c.BGP, err)
	}
}

func TestBGPValid(t *testing.T) {
	c, err := Parse([]byte(strings.Replace(bgpBase, "    backends:", "    announce: false\n    backends:", 1)+`      hold_time: 3
      keepalive: 1s
      bfd: {enabled: true, min_tx: 100ms, min_rx: 100ms, multiplier: 3}
      password: secret
    - address: 2001:db8::1
      asn: 65001
      port: 1179
  listen_port: 179
  communities: ["65100:200", no-export]
  withdraw_delay: 0
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b := c.BGP
	p := b.Peers[0]
	if p.HoldTime.D() != 3*time.Second || p.Keepalive.D() != time.Second || !p.BFD.Enabled ||
		p.BFD.MinTx.D() != 100*time.Millisecond || p.Password != "secret" {
		t.Errorf("peer 0 = %+v", p)
	}
	if b.Peers[1].Port != 1179 || b.ListenPort != 179 || b.WithdrawDelay != 0 {
		t.Errorf("bgp = %+v", b)
	}
	if len(b.Communities) != 2 || b.Communities[0] != Community(65100<<16|200) || b.Communities[1] != 0xFFFFFF01 {
		t.Errorf("communities = %v", b.Communities)
	}
	if c.Services[0].Announced() {
		t.Error("announce: false ignored")
	}
	out, err := c.Effective()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "65100:200") || !strings.Contains(string(out), "no-export") {
		t.Errorf("effective config lost the communities:\n%s", out)
	}
}

func TestBGPInvalid(t *testing.T) {
	peer := "    - address: 198.18.21.1\n      asn: 65000\n"
	head := base + "bgp:\n  asn: 65100\n  router_id: 198.18.21.2\n  peers:\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"no peers", base + "bgp:\n  asn: 65100\n  router_id: 198.18.21.2\n", "bgp.peers: at least one peer is required"},
		{"asn zero", base + "bgp:\n  router_id: 198.18.21.2\n  peers:\n" + peer, "bgp.asn: want 1..4294967295"},
		{"as_trans", head + "    - address: 198.18.21.1\n      asn: 23456\n", "bgp.peers[0].asn: want 1..4294967295"},
		{"router id v6", base + "bgp:\n  asn: 1\n  router_id: 2001:db8::1\n  peers:\n" + peer, "bgp.router_id: want an IPv4 address"},
		{"router id missing", base + "bgp:\n  asn: 1\n  peers:\n" + peer, "bgp.router_id: want an IPv4 address"},
		{"duplicate peer", head + peer + peer, "bgp.peers[1]: duplicate peer 198.18.21.1"},
		{"peer multicast", head + "    - address: 224.0.0.5\n      asn: 1\n", "bgp.peers[0].address"},
		{"hold too short", head + peer + "      hold_time: 2\n", "bgp.peers[0].hold_time: want whole seconds in 3s..18h12m15s, got 2s"},
		{"hold fraction", head + peer + "      hold_time: 3500ms\n", "bgp.peers[0].hold_time: want whole seconds"},
		{"keepalive not below hold", head + peer + "      hold_time: 3\n      keepalive: 3\n", "bgp.peers[0].keepalive: must be shorter than hold_time (3s)"},
		{"bfd too fast", head + peer + "      bfd: {enabled: true, min_tx: 1ms}\n", "bgp.peers[0].bfd.min_tx: want 10ms..1m0s, got 1ms"},
		{"bfd multiplier", head + peer + "      bfd: {multiplier: 1}\n", "bgp.peers[0].bfd.multiplier: want 2..255, got 1"},
		{"password too long", head + peer + "      password: " + strings.Repeat("x", 81) + "\n", "bgp.peers[0].password: at most 80 bytes"},
		{"bad community", head + peer + "  communities: [\"70000:1\"]\n", `bgp.communities[0]: want a community such as "65000:100" or no-export, got "70000:1"`},
		{"withdraw delay", head + peer + "  withdraw_delay: 1h\n", "bgp.withdraw_delay: at most 5m0s"},
		{"announce without bgp", base + "    announce: true\n", "services[0].announce: needs a bgp section"},
		{"unknown key", head + peer + "      bfd: {enable: true}\n", `unknown key "enable" (did you mean "enabled"?)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantParseError(t, tt.yaml, tt.want) })
	}
}

// wantParseError parses yaml and fails unless it is refused with validation Errors, one of
// whose lines contains want.
func wantParseError(t *testing.T, yaml, want string) {
	t.Helper()
	_, err := Parse([]byte(yaml), "t.yaml")
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("want Errors, got %v", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("errors:\n%v\nwant a line containing:\n%s", err, want)
	}
}

func FuzzParseCommunity(f *testing.F) {
	for _, s := range []string{"65000:100", "no-export", "0:0", "65535:65535", "1:", ":1", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCommunity(s)
		if err != nil {
			return
		}
		back, err := ParseCommunity(c.String())
		if err != nil || back != c {
			t.Fatalf("%q -> %v -> %v, %v", s, c, back, err)
		}
	})
}
