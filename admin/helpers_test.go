package admin

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/gateway"
	"github.com/edgegate/edgegate/lb"
	"github.com/edgegate/edgegate/nat"
	"github.com/edgegate/edgegate/packet"
)

// fakeSource is a data path without a TUN: real rules, table and translator, counters set by
// the test.
type fakeSource struct {
	ct    *conntrack.Table
	rules *nat.Rules
	cfg   *config.Config
	snap  gateway.Snapshot
	tap   atomic.Pointer[gateway.Tap]
	tr    nat.Translator
	mu    sync.Mutex
	ended map[flowKey]uint64
}

var (
	vip   = netip.MustParseAddr("192.0.2.10")
	masq  = netip.MustParseAddr("203.0.113.1")
	back1 = netip.MustParseAddr("198.51.100.1")
	back2 = netip.MustParseAddr("198.51.100.2")
)

func newFakeSource(t testing.TB) *fakeSource {
	t.Helper()
	f := &fakeSource{ended: map[flowKey]uint64{}}
	f.ct = conntrack.New(conntrack.Config{MaxEntries: 1024, OnDelete: func(e *conntrack.Entry) {
		f.mu.Lock()
		f.ended[flowKey{e.Service, e.Tuple[conntrack.Reply].SrcAddr()}]++
		f.mu.Unlock()
	}})
	f.tr.CT = f.ct
	set, err := lb.Build(lb.Spec{Scheduler: "round_robin", Backends: []lb.Backend{{Addr: back1, Weight: 1}, {Addr: back2, Weight: 1}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.rules = nat.NewRules(nat.Spec{
		Services: []nat.Service{{ID: 1, Name: "web", Addrs: []netip.Addr{vip}, Masquerade: true, Set4: set,
			Ports: []nat.Port{{Name: "http", Proto: packet.ProtoTCP, Port: 80, TargetPort: 8080}}}},
		Masquerade: []netip.Addr{masq}, PortLo: 1024, PortHi: 65535,
	})
	cfg, err := config.Parse([]byte(`
nat: {masquerade_addresses: [203.0.113.1], port_range: 20000-29999}
services:
  - name: web
    addresses: [192.0.2.10]
    ports: [{port: 80, target_port: 8080}]
    backends: [{address: 198.51.100.1}, {address: 198.51.100.2}]
`), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f.cfg = cfg
	return f
}

func (f *fakeSource) Counters() gateway.Snapshot { return f.snap }
func (f *fakeSource) Table() *conntrack.Table    { return f.ct }
func (f *fakeSource) Rules() *nat.Rules          { return f.rules }
func (f *fakeSource) Config() *config.Config     { return f.cfg }
func (f *fakeSource) Ready() bool                { return true }
func (f *fakeSource) ServiceName(id uint32) string {
	if id == 1 {
		return "web"
	}
	return ""
}
func (f *fakeSource) EndedFlows(fn func(uint32, netip.Addr, uint64)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, n := range f.ended {
		fn(k.service, k.backend, n)
	}
}
func (f *fakeSource) SetTap(t gateway.Tap) {
	if t == nil {
		f.tap.Store(nil)
		return
	}
	f.tap.Store(&t)
}

// syn builds a TCP SYN from client:sport to dst:dport.
func syn(t testing.TB, client, dst netip.Addr, sport, dport uint16) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: client.AsSlice(), DstIP: dst.AsSlice()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: true, Seq: 1, Window: 65535}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, tcp); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// open sends a SYN through the translator, creating a flow; it returns the translated packet.
func (f *fakeSource) open(t testing.TB, sport uint16) []byte {
	t.Helper()
	b := syn(t, netip.MustParseAddr("198.18.0.5"), vip, sport, 80)
	var p packet.Packet
	if r := p.Parse(b); r != packet.OK {
		t.Fatalf("parse: %v", r)
	}
	if v, why := f.tr.Translate(&p, f.rules, time.Now().UnixNano()); v != nat.Forward {
		t.Fatalf("translate: %v %v", v, why)
	}
	return p.B
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
