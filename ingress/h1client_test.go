package ingress

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgegate/edgegate/config"
)

// connCountingBackend serves h and counts new and closed backend connections.
func connCountingBackend(t *testing.T, h http.Handler, idle time.Duration) (netip.AddrPort, *atomic.Int64, chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opened atomic.Int64
	closed := make(chan struct{}, 100)
	srv := &http.Server{Handler: h, IdleTimeout: idle, ConnState: func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			opened.Add(1)
		case http.StateClosed:
			select {
			case closed <- struct{}{}:
			default:
			}
		}
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return mustAddrPort(ln.Addr()), &opened, closed
}

func oneRoute(svc string, rule config.Rule) *config.Ingress {
	if len(rule.Backends) == 0 {
		rule.Backends = []config.BackendRef{ref(svc, 80, 1)}
	}
	return &config.Ingress{Listeners: plainListener(), Routes: []config.HTTPRoute{{Name: svc, Rules: []config.Rule{rule}}}}
}

// TestFastPathConnections: keep-alive reuse, a backend closing idle connections (stale pooled
// connection retried transparently), and a backend answering "Connection: close".
func TestFastPathConnections(t *testing.T) {
	var closeNext atomic.Bool
	addr, opened, closed := connCountingBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if closeNext.Swap(false) {
			w.Header().Set("Connection", "close")
		}
		io.WriteString(w, "ok")
	}), 100*time.Millisecond)
	s := startIngress(t, oneRoute("b", config.Rule{}), newFixed().add("b", 80, addr), Options{})
	base := "http://" + addrOf(t, s, "main") + "/"
	for range 5 {
		if resp, body := get(t, "GET", base, ""); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	}
	if n := opened.Load(); n != 1 {
		t.Fatalf("5 sequential requests used %d backend connections, want 1", n)
	}
	// The backend closes the idle connection; the next request must not see an error.
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("backend never closed the idle connection")
	}
	if resp, body := get(t, "GET", base, ""); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("after backend idle close: %d %q", resp.StatusCode, body)
	}
	closeNext.Store(true)
	if resp, _ := get(t, "GET", base, ""); resp.StatusCode != 200 {
		t.Fatalf("Connection: close response: %d", resp.StatusCode)
	}
	if resp, body := get(t, "GET", base, ""); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("after Connection: close: %d %q", resp.StatusCode, body)
	}
}

// TestFastPathResponses: HEAD, 1xx interim responses, chunked bodies with trailers, 204/304.
func TestFastPathResponses(t *testing.T) {
	addr, _, _ := connCountingBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/head":
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(200)
		case "/hints":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			io.WriteString(w, "final")
		case "/trailers":
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "part1 ")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part2")
			w.Header().Set("X-Sum", "42")
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		}
	}), 0)
	s := startIngress(t, oneRoute("b", config.Rule{}), newFixed().add("b", 80, addr), Options{})
	base := "http://" + addrOf(t, s, "main")
	if resp, body := get(t, "HEAD", base+"/head", ""); resp.StatusCode != 200 || body != "" || resp.ContentLength != 100 {
		t.Errorf("HEAD: %d %q len %d", resp.StatusCode, body, resp.ContentLength)
	}
	if resp, body := get(t, "GET", base+"/hints", ""); resp.StatusCode != 200 || body != "final" {
		t.Errorf("103 then 200: %d %q", resp.StatusCode, body)
	}
	resp, err := http.Get(base + "/trailers")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "part1 part2" || resp.Trailer.Get("X-Sum") != "42" {
		t.Errorf("chunked with trailer: %q trailer %v", body, resp.Trailer)
	}
	for _, p := range []string{"/204", "/304"} {
		if resp, body := get(t, "GET", base+p, ""); resp.StatusCode != map[string]int{"/204": 204, "/304": 304}[p] || body != "" {
			t.Errorf("%s: %d %q", p, resp.StatusCode, body)
		}
	}
	// Everything still works on the same pooled connections afterwards.
	if resp, body := get(t, "GET", base+"/hints", ""); resp.StatusCode != 200 || body != "final" {
		t.Errorf("after: %d %q", resp.StatusCode, body)
	}
}

// TestClientGoneCancelsBackend: when the client disconnects while the backend is still working,
// the proxy abandons the backend request (the backend sees its context cancelled).
func TestClientGoneCancelsBackend(t *testing.T) {
	cancelled := make(chan struct{})
	started := make(chan struct{})
	addr, _, _ := connCountingBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(10 * time.Second):
		}
	}), 0)
	s := startIngress(t, oneRoute("b", config.Rule{}), newFixed().add("b", 80, addr), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addrOf(t, s, "main")+"/", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("request never reached the backend")
	}
	cancel()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("backend request not cancelled after the client left")
	}
	<-errc
}

// TestPoolSweep: idle connections to a backend that is no longer used are closed by the sweep.
func TestPoolSweep(t *testing.T) {
	a, _, aClosed := connCountingBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), 0)
	b, _, _ := connCountingBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), 0)
	c := newH1Client()
	c.idleTimeout = 50 * time.Millisecond
	req, _ := http.NewRequest("GET", "http://x/", nil)
	roundTrip := func(addr netip.AddrPort) {
		var x h1Exchange
		resp, err := c.roundTrip(context.Background(), &x, addr, req, "x", "/", "", &forwarded{ip: "192.0.2.1", proto: "http", host: "x"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		x.end(!resp.Close)
	}
	roundTrip(a)
	deadline := time.Now().Add(5 * time.Second)
	for {
		roundTrip(b) // only b is used from now on; a's idle connection must be swept
		select {
		case <-aClosed:
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("idle connection to the unused backend never closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClientGoneMidStream: a client that leaves during an endless streamed response releases the
// backend connection (the proxy must not drain the rest of the body first).
func TestClientGoneMidStream(t *testing.T) {
	backendDone := make(chan struct{})
	addr, _, _ := connCountingBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(backendDone)
		for range 2000 { // bounded: 20 s at most
			if _, err := io.WriteString(w, "tick\n"); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(10 * time.Millisecond)
		}
	}), 0)
	s := startIngress(t, oneRoute("b", config.Rule{}), newFixed().add("b", 80, addr), Options{})
	conn, err := net.Dial("tcp", addrOf(t, s, "main"))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
	buf := make([]byte, 512)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(buf); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	select {
	case <-backendDone:
	case <-time.After(10 * time.Second):
		t.Fatal("backend still streaming long after the client left")
	}
}
