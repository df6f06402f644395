package ingress

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/edgegate/edgegate/config"
)

// slowSetup is an ingress with a plain and a TLS listener (HTTP/1.1 and h2 by ALPN) routing
// /ws to upstream "up" and everything else to "web".
type slowSetup struct {
	s      *Server
	plain  string
	tlsAdr string
	pool   *x509.CertPool
}

func startSlowSetup(t *testing.T, ing *config.Ingress, web, up http.Handler) *slowSetup {
	t.Helper()
	pki := newPKI(t)
	ing.Listeners = []config.Listener{{Name: "main", Address: "127.0.0.1:0"},
		{Name: "tls", Address: "127.0.0.1:0", Protocol: "https", TLS: []config.Certificate{pki.leaf(t, "a.test", "a.test")}}}
	ing.Routes = []config.HTTPRoute{{Name: "r", Rules: []config.Rule{
		{Matches: []config.Match{{Path: prefix("/ws")}}, Backends: []config.BackendRef{ref("up", 80, 1)}},
		{Matches: []config.Match{{Path: prefix("/p")}}, Backends: []config.BackendRef{ref("web", 80, 1)}},
	}}}
	ups := newFixed().add("web", 80, startBackend(t, "web", web).addr)
	if up != nil {
		ups.add("up", 80, startBackend(t, "up", up).addr)
	}
	s := startIngress(t, ing, ups, Options{})
	pool := x509.NewCertPool()
	pool.AddCert(pki.caCert)
	return &slowSetup{s: s, plain: addrOf(t, s, "main"), tlsAdr: addrOf(t, s, "tls"), pool: pool}
}

// dial opens a raw client connection: plain, or TLS offering only http/1.1.
func (st *slowSetup) dial(t *testing.T, tlsOn bool) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	if tlsOn {
		c, err = tls.Dial("tcp", st.tlsAdr, &tls.Config{ServerName: "a.test", RootCAs: st.pool, NextProtos: []string{"http/1.1"}})
	} else {
		c, err = net.Dial("tcp", st.plain)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// h2Client is a Go HTTP/2 client of the TLS listener.
func (st *slowSetup) h2Client() *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "a.test", RootCAs: st.pool}, ForceAttemptHTTP2: true}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestRequestBodyTimeout: a client that stops sending its body gets 408 after
// request_body_timeout instead of holding the connection forever, on the HTTP/1 loop, on
// HTTP/1.1 over TLS and on HTTP/2.
func TestRequestBodyTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	st := startSlowSetup(t, &config.Ingress{RequestBodyTimeout: config.Duration(timeout)}, nil, nil)
	for _, tlsOn := range []bool{false, true} {
		c := st.dial(t, tlsOn)
		start := time.Now()
		c.SetDeadline(start.Add(5 * time.Second))
		fmt.Fprintf(c, "POST /p HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\n0123456789")
		resp, err := http.ReadResponse(bufioReader(c), &http.Request{Method: "POST"})
		if err != nil {
			t.Fatalf("tls=%v: no answer to a stalled body after %v: %v", tlsOn, time.Since(start), err)
		}
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("tls=%v: stalled body answered %d, want 408", tlsOn, resp.StatusCode)
		}
	}
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write([]byte("0123456789"))
	req, _ := http.NewRequest("POST", "https://a.test/p", pr)
	req.URL.Host = st.tlsAdr
	req.Host = "a.test"
	start := time.Now()
	resp, err := st.h2Client().Do(req)
	if err != nil {
		t.Fatalf("h2: %v after %v", err, time.Since(start))
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("h2: stalled body answered %s %d, want HTTP/2 408", resp.Proto, resp.StatusCode)
	}
}

// TestUnreadBodyAnsweredFirst: the response to a request whose body the ingress does not read
// (no route) is sent before the body is drained, and the drain is bounded: a client that stops
// sending gets its 404 at once and the connection closes within bodyDrainTime plus the linger.
func TestUnreadBodyAnsweredFirst(t *testing.T) {
	st := startSlowSetup(t, &config.Ingress{}, nil, nil) // request_body_timeout 60s
	c := st.dial(t, false)
	start := time.Now()
	c.SetDeadline(start.Add(5 * time.Second))
	fmt.Fprintf(c, "POST /nowhere HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1000\r\n\r\n0123456789")
	br := bufioReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("answer to an unread, stalled body: %v %v after %v", resp, err, time.Since(start))
	}
	io.Copy(io.Discard, resp.Body)
	if d := time.Since(start); d > 2*bodyDrainTime {
		t.Errorf("404 took %v", d)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("connection not closed after the bounded drain: %v after %v", err, time.Since(start))
	}
}

// bigBody is a backend streaming up to 64 MiB (more than every socket buffer on the way) that
// reports when its handler has returned.
func bigBody(done chan<- struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { done <- struct{}{} }()
		chunk := make([]byte, 32<<10)
		for range 64 << 20 / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
}

// TestSendTimeout: a client that stops reading is disconnected after send_timeout (the backend's
// response is abandoned), on the HTTP/1 loop, on HTTP/1.1 over TLS and on HTTP/2.
func TestSendTimeout(t *testing.T) {
	done := make(chan struct{}, 4)
	st := startSlowSetup(t, &config.Ingress{SendTimeout: config.Duration(300 * time.Millisecond)}, bigBody(done), nil)
	wait := func(what string) {
		t.Helper()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the ingress still waits on a client that does not read", what)
		}
	}
	for _, tlsOn := range []bool{false, true} {
		c := st.dial(t, tlsOn)
		fmt.Fprintf(c, "GET /p HTTP/1.1\r\nHost: a.test\r\n\r\n")
		wait(fmt.Sprintf("HTTP/1.1 tls=%v", tlsOn))
	}
	req, _ := http.NewRequest("GET", "https://"+st.tlsAdr+"/p", nil)
	req.Host = "a.test"
	resp, err := st.h2Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	wait("h2")
}

// TestClientKeepAlive: accepted client sockets have TCP keep-alive with the documented timers
// (ss shows the keepalive timer), on plain and TLS listeners.
func TestClientKeepAlive(t *testing.T) {
	ss := needTool(t, "ss")
	st := startSlowSetup(t, &config.Ingress{}, nil, nil)
	for _, tlsOn := range []bool{false, true} {
		c := st.dial(t, tlsOn)
		fmt.Fprintf(c, "GET /p HTTP/1.1\r\nHost: a.test\r\n\r\n")
		if _, err := http.ReadResponse(bufioReader(c), nil); err != nil {
			t.Fatal(err)
		}
		local := c.LocalAddr().String()
		server := st.plain
		if tlsOn {
			server = st.tlsAdr
		}
		// Another timer (retransmission, while the last segment is unacknowledged) hides the
		// keep-alive one for a moment.
		var out []byte
		deadline := time.Now().Add(3 * time.Second)
		for !strings.Contains(string(out), "timer:(keepalive,") && time.Now().Before(deadline) {
			var err error
			if out, err = exec.Command(ss, "-tnoH", "state", "established", "src", server, "dst", local).CombinedOutput(); err != nil {
				t.Fatalf("ss: %v: %s", err, out)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !strings.Contains(string(out), "timer:(keepalive,") {
			t.Errorf("tls=%v: accepted socket without keep-alive timer: %q", tlsOn, out)
		}
	}
}

// TestUpgradeIdleAndLimit: a WebSocket tunnel that carries messages outlives
// upgrade_idle_timeout, an idle one is closed after it, and max_upgraded_connections refuses
// tunnels beyond the limit with 503. The limit is checked on a listener whose idle timeout is
// long: with the 400 ms one, a second handshake that took longer than that on a loaded machine
// found the first tunnel already closed for idleness and was admitted (1 in 20 runs under -race).
func TestUpgradeIdleAndLimit(t *testing.T) {
	const idle = 400 * time.Millisecond
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	lim := startSlowSetup(t, &config.Ingress{UpgradeIdleTimeout: config.Duration(time.Minute), MaxUpgradedConnections: 1}, nil, echo)
	first, _, err := websocket.Dial(ctx, "ws://"+lim.plain+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, resp, err := websocket.Dial(ctx, "ws://"+lim.plain+"/ws", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("second tunnel with max_upgraded_connections 1: %v %v, want 503", resp, err)
	}
	first.CloseNow()
	eventually(t, 5*time.Second, func() bool { return lim.s.tunnels.Load() == 0 }, "closed tunnel still counted")
	again, _, err := websocket.Dial(ctx, "ws://"+lim.plain+"/ws", nil)
	if err != nil {
		t.Fatalf("a tunnel after the first ended: %v", err)
	}
	again.CloseNow()

	st := startSlowSetup(t, &config.Ingress{UpgradeIdleTimeout: config.Duration(idle)}, nil, echo)
	c, _, err := websocket.Dial(ctx, "ws://"+st.plain+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for start := time.Now(); time.Since(start) < 3*idle; time.Sleep(idle / 4) {
		if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
			t.Fatalf("active tunnel: %v", err)
		}
		if _, _, err := c.Read(ctx); err != nil {
			t.Fatalf("active tunnel closed after %v: %v", time.Since(start), err)
		}
	}
	var closed atomic.Bool
	start := time.Now()
	if _, _, err := c.Read(ctx); err != nil && ctx.Err() == nil {
		closed.Store(true)
	}
	if !closed.Load() || time.Since(start) > 3*time.Second {
		t.Errorf("idle tunnel not closed (after %v)", time.Since(start))
	}
	eventually(t, 5*time.Second, func() bool { return st.s.tunnels.Load() == 0 }, "idle-closed tunnel still counted")
}

func bufioReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
