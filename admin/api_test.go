package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/gateway"
)

func TestParseFlowFilter(t *testing.T) {
	tests := []struct {
		q       string
		want    FlowFilter
		wantErr string
	}{
		{q: "", want: FlowFilter{}},
		{q: "protocol=tcp&port=80", want: FlowFilter{Filter: conntrack.Filter{Proto: 6, Port: 80}}},
		{q: "protocol=17", want: FlowFilter{Filter: conntrack.Filter{Proto: 17}}},
		{q: "address=::ffff:192.0.2.1", want: FlowFilter{Filter: conntrack.Filter{Addr: netip.MustParseAddr("192.0.2.1")}}},
		{q: "backend=2001:db8::1&state=ESTABLISHED&service=web", want: FlowFilter{Filter: conntrack.Filter{Backend: netip.MustParseAddr("2001:db8::1"), State: conntrack.StateEstablished}, Service: "web"}},
		{q: "protocol=sctp", wantErr: "protocol"},
		{q: "protocol=0", wantErr: "protocol"},
		{q: "port=70000", wantErr: "port"},
		{q: "port=0", wantErr: "port"},
		{q: "address=nope", wantErr: "address"},
		{q: "state=open", wantErr: "state"},
	}
	for _, tc := range tests {
		q, _ := url.ParseQuery(tc.q)
		got, err := ParseFlowFilter(q)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want one about %s", tc.q, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.q, got, err, tc.want)
			continue
		}
		// Values round-trips.
		back, err := ParseFlowFilter(got.Values())
		if err != nil || back != got {
			t.Errorf("%q: round trip %+v, %v", tc.q, back, err)
		}
	}
}

func TestFormatFlow(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		f    Flow
		want string
	}{
		{Flow{Protocol: "tcp", State: "established", Timeout: 431999, Assured: true, Replied: true,
			Original: Endpoint{a("198.18.1.2"), a("198.18.200.10"), 40000, 80},
			Reply:    Endpoint{a("198.19.1.2"), a("198.18.250.1"), 8080, 31000}, Kind: "service", Service: "web", Backend: "198.19.1.2"},
			"tcp      6 431999 ESTABLISHED src=198.18.1.2 dst=198.18.200.10 sport=40000 dport=80 src=198.19.1.2 dst=198.18.250.1 sport=8080 dport=31000 [ASSURED] service=web"},
		{Flow{Protocol: "udp", State: "unreplied", Timeout: 29,
			Original: Endpoint{a("2001:db8::1"), a("2001:db8::2"), 5353, 53},
			Reply:    Endpoint{a("2001:db8::2"), a("2001:db8::1"), 53, 5353}, Kind: "egress"},
			"udp      17 29 src=2001:db8::1 dst=2001:db8::2 sport=5353 dport=53 [UNREPLIED] src=2001:db8::2 dst=2001:db8::1 sport=53 dport=5353 kind=egress"},
		{Flow{Protocol: "icmp", State: "replied", Timeout: 3, Replied: true,
			Original: Endpoint{a("192.0.2.1"), a("192.0.2.2"), 7, 0},
			Reply:    Endpoint{a("192.0.2.2"), a("203.0.113.1"), 0, 9}, Kind: "egress"},
			"icmp     1 3 src=192.0.2.1 dst=192.0.2.2 id=7 src=192.0.2.2 dst=203.0.113.1 id=9 kind=egress"},
	}
	for _, tc := range tests {
		if got := FormatFlow(tc.f); got != tc.want {
			t.Errorf("got\n%s\nwant\n%s", got, tc.want)
		}
	}
}

func newTestServer(t *testing.T, src Source) *httptest.Server {
	t.Helper()
	s := NewServer(Options{Source: src, Registry: NewRegistry(NewCollector(src), "test")})
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts
}

func TestConntrackAPI(t *testing.T) {
	src := newFakeSource(t)
	for i := range 4 {
		src.open(t, uint16(40000+i))
	}
	ts := newTestServer(t, src)
	c := &Client{Base: ts.URL, HTTP: ts.Client()}
	ctx := t.Context()

	all, err := c.Flows(ctx, FlowFilter{})
	if err != nil || len(all) != 4 {
		t.Fatalf("list all: %d flows, %v", len(all), err)
	}
	for _, f := range all {
		if f.Service != "web" || f.Kind != "service" || f.State != "syn_sent" || f.Original.Dst != vip || f.Reply.Dst != masq {
			t.Errorf("flow %+v", f)
		}
	}
	b1, err := c.Flows(ctx, FlowFilter{Filter: conntrack.Filter{Backend: back1}})
	if err != nil || len(b1) != 2 {
		t.Fatalf("backend filter: %d, %v", len(b1), err)
	}
	if none, _ := c.Flows(ctx, FlowFilter{Service: "nope"}); len(none) != 0 {
		t.Errorf("unknown service matched %d", len(none))
	}
	if one, _ := c.Flows(ctx, FlowFilter{Filter: conntrack.Filter{Port: 40001}}); len(one) != 1 || one[0].Original.SPort != 40001 {
		t.Errorf("port filter: %+v", one)
	}

	if _, err := c.DeleteFlows(ctx, FlowFilter{}, false); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("delete without filter: %v, want 400", err)
	}
	n, err := c.DeleteFlows(ctx, FlowFilter{Filter: conntrack.Filter{Backend: back1}}, false)
	if err != nil || n != 2 {
		t.Fatalf("delete backend flows: %d, %v", n, err)
	}
	n, err = c.DeleteFlows(ctx, FlowFilter{Service: "web"}, false)
	if err != nil || n != 2 || src.ct.Len() != 0 {
		t.Fatalf("delete service flows: %d, %v, %d left", n, err, src.ct.Len())
	}
	resp, err := ts.Client().Get(ts.URL + "/conntrack?state=bogus")
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad filter: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
}

func TestEndpoints(t *testing.T) {
	src := newFakeSource(t)
	src.open(t, 40000)
	ts := newTestServer(t, src)
	for _, tc := range []struct {
		path, contains string
		code           int
	}{
		{"/healthz", "ok", 200},
		{"/readyz", "ready", 200},
		{"/config", "masquerade_addresses", 200},
		{"/metrics", "edgegate_conntrack_entries{protocol=\"tcp\",state=\"syn_sent\"} 1", 200},
		{"/metrics", "go_goroutines", 200},
		{"/debug/pprof/", "", 404}, // pprof is off unless admin.pprof
	} {
		resp, err := ts.Client().Get(ts.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.contains) {
			t.Errorf("%s: %d %.200q, want %d containing %q", tc.path, resp.StatusCode, b, tc.code, tc.contains)
		}
	}
	c := &Client{Base: ts.URL, HTTP: ts.Client()}
	st, err := c.Status(t.Context())
	if err != nil || len(st.Services) != 1 || len(st.Services[0].Backends) != 2 || st.Flows != 1 {
		t.Fatalf("status %+v, %v", st, err)
	}
	var active int64
	for _, b := range st.Services[0].Backends {
		active += b.ActiveFlows
		if b.Health != "unchecked" || b.State != "active" {
			t.Errorf("backend %+v", b)
		}
	}
	if active != 1 {
		t.Errorf("active flows %d, want 1", active)
	}
	var out bytes.Buffer
	FormatStatus(&out, st)
	if !strings.Contains(out.String(), "web") || !strings.Contains(out.String(), "198.51.100.2") {
		t.Errorf("status text:\n%s", out.String())
	}

	pp := httptest.NewServer(NewServer(Options{Source: src, Pprof: true}).Handler())
	defer pp.Close()
	resp, err := pp.Client().Get(pp.URL + "/debug/pprof/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("pprof enabled: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
}

func TestParseCaptureFilter(t *testing.T) {
	for _, bad := range []string{"host", "port x", "host 1.2.3", "frob", "port 70000"} {
		if _, err := ParseCaptureFilter(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, good := range []string{"", "tcp and port 80", "host 192.0.2.1 and after", "src 2001:db8::1 && dst 2001:db8::2 udp before"} {
		if _, err := ParseCaptureFilter(good); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
}

func TestCapture(t *testing.T) {
	src := newFakeSource(t)
	ts := newTestServer(t, src)
	pkt := syn(t, netip.MustParseAddr("198.18.0.5"), vip, 40000, 80)
	other := syn(t, netip.MustParseAddr("198.18.0.5"), vip, 40000, 443)
	// Feed packets as a worker would until the capture has what it wants.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if tp := src.tap.Load(); tp != nil {
				(*tp).Packet(gateway.BeforeNAT, other)
				(*tp).Packet(gateway.BeforeNAT, pkt)
				(*tp).Packet(gateway.AfterNAT, pkt)
			}
		}
	}()
	var buf bytes.Buffer
	c := &Client{Base: ts.URL, HTTP: ts.Client()}
	if _, err := c.Capture(t.Context(), CaptureRequest{Count: 3, Filter: "port 80 and before"}, &buf); err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeRaw {
		t.Errorf("link type %v", r.LinkType())
	}
	n := 0
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		n++
		if !bytes.Equal(data, pkt) || ci.Length != len(pkt) {
			t.Errorf("packet %d: %x", n, data)
		}
	}
	if n != 3 {
		t.Errorf("read %d packets, want 3", n)
	}
	if src.tap.Load() != nil {
		t.Error("tap still installed after the capture")
	}
}

func TestCaptureBusy(t *testing.T) {
	src := newFakeSource(t)
	ts := newTestServer(t, src)
	// The first capture runs until cancelled, so it is still running whenever the second comes.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := (&Client{Base: ts.URL, HTTP: ts.Client()}).Capture(ctx, CaptureRequest{}, io.Discard)
		done <- err
	}()
	waitTap := func(what string, installed bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); (src.tap.Load() != nil) != installed; {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitTap("the first capture's tap", true)
	resp, err := ts.Client().Get(ts.URL + "/capture?count=1")
	if err != nil {
		t.Fatal(err)
	}
	var e struct{ Error string }
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("second capture: %d %q, want 409", resp.StatusCode, e.Error)
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("first capture: %v", err)
	}
	waitTap("the cancelled capture to remove its tap", false)
}

// BenchmarkTapPacket: what a worker pays per packet while a capture runs (copy into a
// preallocated slot; no allocation).
func BenchmarkTapPacket(b *testing.B) {
	tp := newTap(65535)
	pkt := syn(b, netip.MustParseAddr("198.18.0.5"), vip, 40000, 80)
	b.ReportAllocs()
	for b.Loop() {
		tp.Packet(gateway.BeforeNAT, pkt)
		select {
		case buf := <-tp.full:
			tp.free <- buf
		default:
		}
	}
}

// BenchmarkCollect: one scrape over a table of 10k flows.
func BenchmarkCollect(b *testing.B) {
	src := newFakeSource(b)
	for i := range 10000 {
		src.open(b, uint16(10000+i))
	}
	c := NewCollector(src)
	ch := make(chan prometheus.Metric, 1024)
	go func() {
		for range ch {
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		c.Collect(ch)
	}
	close(ch)
}
