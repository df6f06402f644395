package ingress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/edgegate/edgegate/config"
)

// needTool skips outside CI when a client program is missing; in CI its absence fails the test.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not installed (required in CI)", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

// TestHTTPSWithCurl: two SNI host names each get their own certificate (curl verifies the name
// against our test CA), an unknown name gets the default one, and HTTP/2 is negotiated via ALPN.
func TestHTTPSWithCurl(t *testing.T) {
	curl := needTool(t, "curl")
	pki := newPKI(t)
	certA := pki.leaf(t, "a.test", "a.test")
	certB := pki.leaf(t, "b.test", "b.test", "*.b.test")
	def := pki.leaf(t, "default.test", "default.test")
	web := startBackend(t, "web", nil)
	ing := &config.Ingress{
		Listeners: []config.Listener{{Name: "tls", Address: "127.0.0.1:0", Protocol: "https",
			TLS: []config.Certificate{def, certA, certB}}},
		Routes: []config.HTTPRoute{{Name: "web", Rules: []config.Rule{{Backends: []config.BackendRef{ref("web", 80, 1)}}}}},
	}
	s := startIngress(t, ing, newFixed().add("web", 80, web.addr), Options{})
	_, port, _ := net.SplitHostPort(addrOf(t, s, "tls"))

	run := func(host string, extra ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		args := append([]string{"-sS", "--max-time", "5", "--resolve", host + ":" + port + ":127.0.0.1",
			"--cacert", pki.caFile, "-o", "/dev/null", "-w", "%{http_code} %{http_version} %{ssl_verify_result}",
			"-H", "X-Test: 1"}, extra...)
		args = append(args, "https://"+host+":"+port+"/")
		out, err := exec.CommandContext(ctx, curl, args...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	for _, host := range []string{"a.test", "b.test", "x.b.test"} {
		out, err := run(host, "--http1.1")
		if err != nil || out != "200 1.1 0" {
			t.Errorf("curl https://%s (HTTP/1.1): %q %v", host, out, err)
		}
		out, err = run(host, "--http2")
		if err != nil || out != "200 2 0" {
			t.Errorf("curl --http2 https://%s: %q %v", host, out, err)
		}
	}
	// Which certificate each name got, seen directly.
	pool := x509.NewCertPool()
	pool.AddCert(pki.caCert)
	for sni, cn := range map[string]string{"a.test": "a.test", "b.test": "b.test", "deep.x.b.test": "b.test", "other.test": "default.test", "": "default.test"} {
		c, err := tls.Dial("tcp", "127.0.0.1:"+port, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		got := c.ConnectionState().PeerCertificates[0].Subject.CommonName
		c.Close()
		if got != cn {
			t.Errorf("SNI %q got certificate %q, want %q", sni, got, cn)
		}
	}
	// A name without a certificate fails verification (the default cert does not cover it).
	if out, err := run("c.test"); err == nil {
		t.Errorf("curl accepted the default certificate for c.test: %q", out)
	}

	// Certificates reload with the config: a.test now gets a new certificate.
	certA2 := pki.leaf(t, "a2.test", "a.test")
	ing2 := *ing
	ing2.Listeners = []config.Listener{{Name: "tls", Address: ing.Listeners[0].Address, Protocol: "https",
		TLS: []config.Certificate{def, certA2, certB}}}
	if err := s.Reload(&config.Config{Ingress: &ing2}, newFixed().add("web", 80, web.addr)); err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", "127.0.0.1:"+port, &tls.Config{ServerName: "a.test", RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.ConnectionState().PeerCertificates[0].Subject.CommonName; got != "a2.test" {
		t.Errorf("after reload a.test got %q", got)
	}
	if out, err := run("a.test", "--http2"); err != nil || out != "200 2 0" {
		t.Errorf("curl after reload: %q %v", out, err)
	}
}

// TestWebSocket: an echo through the proxy (HTTP/1.1 Upgrade, hijacked both ways).
// wsTunnel starts a WebSocket echo backend behind an ingress and opens a tunnel through it; the
// context bounds the test's WebSocket calls.
func wsTunnel(t *testing.T) (*Server, *websocket.Conn, context.Context) {
	echo := startBackend(t, "ws", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		ctx := r.Context()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, append([]byte("echo:"), msg...)); err != nil {
				return
			}
		}
	}))
	ing := &config.Ingress{Listeners: plainListener(), Routes: []config.HTTPRoute{{Name: "ws", Rules: []config.Rule{{
		Matches:  []config.Match{{Path: prefix("/ws")}},
		Backends: []config.BackendRef{ref("ws", 80, 1)},
	}}}}}
	s := startIngress(t, ing, newFixed().add("ws", 80, echo.addr), Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	c, _, err := websocket.Dial(ctx, "ws://"+addrOf(t, s, "main")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	c.SetReadLimit(1 << 20)
	return s, c, ctx
}

// wsEchoes sends m through the tunnel and checks the echo.
func wsEchoes(t *testing.T, ctx context.Context, c *websocket.Conn, m string) {
	t.Helper()
	if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
		t.Fatal(err)
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "echo:"+m {
		t.Fatalf("echo %q, want %q", trunc(string(got)), trunc("echo:"+m))
	}
}

func TestWebSocket(t *testing.T) {
	_, c, ctx := wsTunnel(t)
	for _, m := range []string{"hello", "world", strings.Repeat("x", 100000)} {
		wsEchoes(t, ctx, c, m)
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// TestShutdownEndsTunnels: Shutdown with a WebSocket tunnel open returns once its context ends,
// reports the tunnel, and ends it.
func TestShutdownEndsTunnels(t *testing.T) {
	s, c, ctx := wsTunnel(t)
	wsEchoes(t, ctx, c, "up")
	sctx, scancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer scancel()
	start := time.Now()
	if err := s.Shutdown(sctx); err == nil {
		t.Error("Shutdown with an open tunnel: want an error naming it")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v with a 300ms context", d)
	}
	if _, _, err := c.Read(ctx); err == nil {
		t.Error("tunnel still carries messages after Shutdown")
	}
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// TestGRPCHealth: a gRPC health check through the proxy, h2c on both sides (trailers carry the
// gRPC status, so this also proves trailers pass).
func TestGRPCHealth(t *testing.T) {
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("edgegate.Test", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	ups := newFixed().add("grpc", 50051, mustAddrPort(ln.Addr()))
	ing := &config.Ingress{Listeners: plainListener(), Routes: []config.HTTPRoute{{Name: "grpc", Rules: []config.Rule{{
		Matches:  []config.Match{{Path: prefix("/grpc.health.v1.Health")}},
		Backends: []config.BackendRef{{Service: "grpc", Port: 50051, Weight: 1, Protocol: "h2c"}},
	}}}}}
	s := startIngress(t, ing, ups, Options{})
	cc, err := grpc.NewClient(addrOf(t, s, "main"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := healthpb.NewHealthClient(cc)
	resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "edgegate.Test"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("status %v", resp.Status)
	}
	// An error status travels in the trailers.
	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "unknown"}); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Fatalf("unknown service: %v, want NotFound", err)
	}
	// A server stream (Watch) receives an update pushed later: streaming through the proxy.
	w, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "edgegate.Test"})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := w.Recv(); err != nil || m.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch first: %v %v", m, err)
	}
	hs.SetServingStatus("edgegate.Test", healthpb.HealthCheckResponse_NOT_SERVING)
	if m, err := w.Recv(); err != nil || m.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch update: %v %v", m, err)
	}
}

// TestGRPCOverTLS: the gRPC client speaks HTTP/2 over TLS (ALPN h2) to an https listener; the
// proxy reaches the backend with h2c.
func TestGRPCOverTLS(t *testing.T) {
	gs := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	pki := newPKI(t)
	ing := &config.Ingress{
		Listeners: []config.Listener{{Name: "tls", Address: "127.0.0.1:0", Protocol: "https",
			TLS: []config.Certificate{pki.leaf(t, "grpc.test", "grpc.test")}}},
		Routes: []config.HTTPRoute{{Name: "grpc", Rules: []config.Rule{{
			Backends: []config.BackendRef{{Service: "grpc", Port: 50051, Weight: 1, Protocol: "h2c"}},
		}}}},
	}
	s := startIngress(t, ing, newFixed().add("grpc", 50051, mustAddrPort(ln.Addr())), Options{})
	pool := x509.NewCertPool()
	pool.AddCert(pki.caCert)
	creds := credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "grpc.test"})
	cc, err := grpc.NewClient(addrOf(t, s, "tls"), grpc.WithTransportCredentials(creds), grpc.WithAuthority("grpc.test"))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health over TLS: %v %v", resp, err)
	}
}
