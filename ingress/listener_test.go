package ingress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/config"
)

// TestOwnedListenerClosesOnce: the first Close closes the socket; the closes that come second
// (http.Server's, Serve's deferred one) return nil, and the accept loop's error after it counts
// as stopped, an accept error before it does not.
func TestOwnedListenerClosesOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &ownedListener{Listener: ln}
	if o.stopped(net.ErrClosed) {
		t.Error("stopped before Close")
	}
	if err := o.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	for i := range 2 {
		if err := o.Close(); err != nil {
			t.Errorf("Close #%d after the first: %v", i+2, err)
		}
	}
	_, err = o.Accept()
	if !o.stopped(err) {
		t.Errorf("Accept after Close: %v, not reported as stopped", err)
	}
	if o.stopped(errors.New("accept: too many open files")) {
		t.Error("an unrelated accept error counted as stopped")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("socket still accepting after Close")
	}
}

// TestShutdownAndReloadCloseListenersOnce: for every listener kind (plain HTTP/1.1, TLS with
// HTTP/2, h2c), Shutdown, and a reload that replaces the listener (its drain) followed by
// Shutdown, end without an error and without an error or warning logged. Each listener socket
// has two closers (the listener, and net/http's server or the h1 loop); whichever came second
// used to report "use of closed network connection" (issue 16: 1 in 50 TLS shutdowns under
// load). Several cycles, because the loser of that race varied from run to run.
func TestShutdownAndReloadCloseListenersOnce(t *testing.T) {
	const cycles = 10
	pki := newPKI(t)
	cert := pki.leaf(t, "a.test", "a.test")
	pool := x509.NewCertPool()
	pool.AddCert(pki.caCert)
	web := startBackend(t, "web", nil)
	ups := newFixed().add("web", 80, web.addr)
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	kinds := []struct {
		name, scheme, proto string
		listener            func(name string) config.Listener
		transport           func() *http.Transport
	}{
		{"plain", "http", "HTTP/1.1",
			func(n string) config.Listener { return config.Listener{Name: n, Address: "127.0.0.1:0"} },
			func() *http.Transport { return &http.Transport{} }},
		{"tls", "https", "HTTP/2.0",
			func(n string) config.Listener {
				return config.Listener{Name: n, Address: "127.0.0.1:0", Protocol: "https", TLS: []config.Certificate{cert}}
			},
			func() *http.Transport {
				return &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "a.test"}}
			}},
		{"h2c", "http", "HTTP/2.0",
			func(n string) config.Listener { return config.Listener{Name: n, Address: "127.0.0.1:0"} },
			func() *http.Transport { return &http.Transport{Protocols: &h2c} }},
	}
	for _, k := range kinds {
		for _, reload := range []bool{false, true} {
			name := k.name + "/shutdown"
			if reload {
				name = k.name + "/reload"
			}
			t.Run(name, func(t *testing.T) {
				ing := func(listener string) *config.Config {
					return &config.Config{Ingress: &config.Ingress{Listeners: []config.Listener{k.listener(listener)},
						Routes: []config.HTTPRoute{{Name: "web", Rules: []config.Rule{{Backends: []config.BackendRef{ref("web", 80, 1)}}}}}}}
				}
				for range cycles {
					logs := &logBuffer{}
					s, err := New(ing("one"), ups, Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
					if err != nil {
						t.Fatal(err)
					}
					if err := s.Start(); err != nil {
						t.Fatal(err)
					}
					client := &http.Client{Transport: k.transport(), Timeout: 5 * time.Second}
					request(t, client, k.scheme, addrOf(t, s, "one"), k.proto)
					if reload { // "one" is replaced by "two" and drains
						client.CloseIdleConnections() // see below
						if err := s.Reload(ing("two"), ups); err != nil {
							t.Fatal(err)
						}
						request(t, client, k.scheme, addrOf(t, s, "two"), k.proto)
					}
					// The client leaves first: an HTTP/2 server waits a second after its GOAWAY
					// for a client that stays.
					client.CloseIdleConnections()
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					err = s.Shutdown(ctx)
					cancel()
					if err != nil {
						t.Fatalf("Shutdown: %v", err)
					}
					if l := logs.String(); strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN") {
						t.Fatalf("logged at shutdown:\n%s", l)
					}
				}
			})
		}
	}
}

func request(t *testing.T, c *http.Client, scheme, addr, proto string) {
	t.Helper()
	resp, err := c.Get(scheme + "://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || resp.Proto != proto || !strings.HasPrefix(string(body), "web ") {
		t.Fatalf("%s://%s: %d %s %q %v", scheme, addr, resp.StatusCode, resp.Proto, body, err)
	}
}

// TestShutdownClosesUnusedConn: a connection that never sends a byte (Go's Transport dials spare
// connections it may never use) does not hold Shutdown for the read-header timeout: it is closed
// like an idle one once newConnGrace has passed since its accept. TestReloadUnderLoad's shutdown
// failed on such a connection (its 5 s context ended before the 10 s read-header timeout).
func TestShutdownClosesUnusedConn(t *testing.T) {
	web := startBackend(t, "web", nil)
	s := startIngress(t, oneRoute("web", config.Rule{}), newFixed().add("web", 80, web.addr), Options{})
	if got := s.lim.readHeader; got <= 2*newConnGrace {
		t.Fatalf("read-header timeout %v: the test needs it well above newConnGrace", got)
	}
	_, br := rawConn(t, addrOf(t, s, "main"))
	late, lateBr := rawConn(t, addrOf(t, s, "main"))
	h1 := s.listeners["main"].h1
	eventually(t, 5*time.Second, func() bool { return conns(h1) == 2 }, "connections not accepted")
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*newConnGrace+time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	// A request that starts within the grace, after shutdown began, is still served (and told to
	// close).
	eventually(t, 5*time.Second, h1.closing.Load, "shutdown did not begin")
	io.WriteString(late, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, body := readResp(t, lateBr, "GET"); resp.StatusCode != 200 || !resp.Close || !strings.HasPrefix(body, "web ") {
		t.Errorf("request within the grace: %d close=%v %q", resp.StatusCode, resp.Close, body)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v (after %v)", err, time.Since(start))
	}
	expectClosed(t, br)
}

// conns counts the connections an h1 server tracks.
func conns(h1 *h1Server) int {
	h1.mu.Lock()
	defer h1.mu.Unlock()
	return len(h1.conns)
}
