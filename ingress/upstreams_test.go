package ingress

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/edgegate/edgegate/config"
)

// startBackendAt serves the echo handler on a given address (for services whose backends share a
// target port on different loopback addresses).
func startBackendAt(t *testing.T, name string, addr string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	ln.Close()
	b := startBackend(t, name, nil) // on another port: re-serve its handler on addr too
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: b.srv.Handler}
	go srv.Serve(ln2)
	t.Cleanup(func() { srv.Close() })
	b.addr = netip.MustParseAddrPort(ln2.Addr().String())
	return b
}

// TestStaticUpstreams: routes resolve through lb sets built from the services section: target_port
// is dialled, round robin alternates, a draining backend gets nothing, and a backend refusing
// connections is retried elsewhere.
func TestStaticUpstreams(t *testing.T) {
	a := startBackend(t, "a", nil)
	port := a.addr.Port()
	b := startBackendAt(t, "b", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), port).String())
	c := startBackendAt(t, "c", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.3"), port).String())
	dead := netip.MustParseAddr("127.0.0.4") // nobody listens there: connection refused
	cfg := &config.Config{
		Services: []config.Service{{
			Name: "web", Scheduler: "round_robin",
			Ports: []config.ServicePort{{Port: 80, TargetPort: port}},
			Backends: []config.Backend{
				{Address: a.addr.Addr(), Weight: 1}, {Address: b.addr.Addr(), Weight: 1}, {Address: dead, Weight: 1},
				{Address: c.addr.Addr(), Weight: 1, Drain: true},
			},
		}},
		Ingress: &config.Ingress{Listeners: plainListener(), Routes: []config.HTTPRoute{{Name: "web",
			Rules: []config.Rule{{Retries: 1, Backends: []config.BackendRef{ref("web", 80, 1)}}}}}},
	}
	ups, err := StaticUpstreams(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ups.Pick("web", 8080, netip.MustParseAddr("192.0.2.1")); ok {
		t.Error("picked a backend for a port the service does not have")
	}
	if _, ok := ups.Pick("nope", 80, netip.MustParseAddr("192.0.2.1")); ok {
		t.Error("picked a backend for an unknown service")
	}
	s := startIngress(t, cfg.Ingress, ups, Options{})
	counts := map[string]int{}
	for range 60 {
		resp, body := get(t, "GET", "http://"+addrOf(t, s, "main")+"/", "")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d (the dead backend must be retried elsewhere)", resp.StatusCode)
		}
		counts[strings.Fields(body)[0]]++
	}
	if counts["c"] != 0 {
		t.Errorf("draining backend served %d requests", counts["c"])
	}
	if counts["a"] < 20 || counts["b"] < 20 {
		t.Errorf("round robin over a, b (+ dead retried elsewhere): %v", counts)
	}
	if _, ok := ups.(ActiveUpstreams); !ok {
		t.Error("StaticUpstreams does not count requests in flight")
	}
}
