package ingress

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/config"
)

// upgradeEcho is a backend that accepts every Upgrade request with a 101 whose X-Seen-* headers
// report what it received, then closes.
func upgradeEcho(t *testing.T) *backend {
	return startBackend(t, "up", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nc, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer nc.Close()
		fmt.Fprintf(bw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n"+
			"X-Seen-Req: %s\r\nX-Seen-Xff: %s\r\nX-Seen-Xfp: %s\r\nX-Seen-Xfh: %s\r\nX-Seen-Real: %s\r\nX-Seen-Fwd: %s\r\nX-Seen-Path: %s\r\n\r\n",
			r.Header.Get("Upgrade"), r.Header.Get("X-Req"), r.Header.Get("X-Forwarded-For"),
			r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Real-Ip"),
			r.Header.Get("Forwarded"), r.URL.RequestURI())
		bw.Flush()
	}))
}

// rawUpgrade sends an Upgrade request head (extra header lines included) over a raw connection and
// returns the 101 response.
func rawUpgrade(t *testing.T, addr, path, extra string) *http.Response {
	t.Helper()
	c, br := rawConn(t, addr)
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: front.test\r\nUpgrade: websocket\r\n%s\r\n", path, extra)
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %d", resp.StatusCode)
	}
	return resp
}

// curlHeaders runs curl against url with extra arguments and returns the response headers.
func curlHeaders(t *testing.T, args ...string) http.Header {
	t.Helper()
	curl := needTool(t, "curl")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, curl, append([]string{"-sS", "--max-time", "5", "-D", "-", "-o", "/dev/null"}, args...)...).Output()
	if err != nil {
		t.Fatalf("curl %v: %v", args, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(strings.Replace(string(out), "HTTP/2 ", "HTTP/2.0 ", 1))), nil)
	if err != nil {
		t.Fatalf("curl output %q: %v", out, err)
	}
	return resp.Header
}

// TestConnectionHeaderCannotRemoveFilteredHeader: a client's "Connection: X-Req" must not remove
// the X-Req that the route's request_headers filter sets, on the fast path (GET), the Transport
// path (POST with a body) and the Upgrade path.
func TestConnectionHeaderCannotRemoveFilteredHeader(t *testing.T) {
	web := startBackend(t, "web", nil)
	up := upgradeEcho(t)
	filter := []config.Filter{{RequestHeaders: &config.HeaderFilter{Set: map[string]string{"X-Req": "set"}}}}
	ing := &config.Ingress{Listeners: plainListener(), Routes: []config.HTTPRoute{{Name: "r", Rules: []config.Rule{
		{Matches: []config.Match{{Path: prefix("/ws")}}, Filters: filter, Backends: []config.BackendRef{ref("up", 80, 1)}},
		{Filters: filter, Backends: []config.BackendRef{ref("web", 80, 1)}},
	}}}}
	s := startIngress(t, ing, newFixed().add("web", 80, web.addr).add("up", 80, up.addr), Options{})
	addr := addrOf(t, s, "main")
	for _, method := range []string{"GET", "POST"} {
		args := []string{"-X", method, "-H", "Connection: X-Req", "-H", "X-Req: client", "http://" + addr + "/p"}
		if method == "POST" {
			args = append(args, "--data", "body")
		}
		if got := curlHeaders(t, args...).Get("X-Seen-Req"); got != "set" {
			t.Errorf("%s: backend saw X-Req %q, want the filter's \"set\"", method, got)
		}
	}
	resp := rawUpgrade(t, addr, "/ws", "Connection: Upgrade, X-Req\r\nX-Req: client\r\n")
	if got := resp.Header.Get("X-Seen-Req"); got != "set" {
		t.Errorf("upgrade: backend saw X-Req %q, want the filter's \"set\"", got)
	}
}

// TestDotSegments: "." and ".." segments (also percent-encoded) are resolved before routing and the
// resolved path is forwarded; a path climbing above the root gets 400. Real clients: curl with
// --path-as-is over HTTP/1.1 and over TLS with HTTP/2.
func TestDotSegments(t *testing.T) {
	pki := newPKI(t)
	web := startBackend(t, "web", nil)
	ing := &config.Ingress{
		Listeners: []config.Listener{{Name: "main", Address: "127.0.0.1:0"},
			{Name: "tls", Address: "127.0.0.1:0", Protocol: "https", TLS: []config.Certificate{pki.leaf(t, "a.test", "a.test")}}},
		Routes: []config.HTTPRoute{{Name: "r", Rules: []config.Rule{
			{Matches: []config.Match{{Path: prefix("/public")}}, Backends: []config.BackendRef{ref("web", 80, 1)}},
			{Matches: []config.Match{{Path: prefix("/admin"), Headers: hdr("X-Admin-Key", "k")}}, Backends: []config.BackendRef{ref("web", 80, 1)}},
		}}},
	}
	s := startIngress(t, ing, newFixed().add("web", 80, web.addr), Options{})
	_, tlsPort, _ := net.SplitHostPort(addrOf(t, s, "tls"))
	bases := map[string][]string{
		"http/1.1": {"http://" + addrOf(t, s, "main")},
		"h2":       {"--http2", "--cacert", pki.caFile, "--resolve", "a.test:" + tlsPort + ":127.0.0.1", "https://a.test:" + tlsPort},
	}
	for proto, base := range bases {
		for _, c := range []struct {
			path     string
			code     int
			seenPath string
		}{
			{"/public/../admin", 404, ""},
			{"/public/%2e%2e/admin", 404, ""},
			{"/public/.%2E/admin", 404, ""},
			{"/public/..%2fadmin", 404, ""},
			{"/public/./a/../b?q=1", 200, "/public/b?q=1"},
			{"/public/a%2Fb/c", 200, "/public/a%2Fb/c"}, // no dot segment: forwarded as sent
			{"/public/.well-known/x", 200, "/public/.well-known/x"},
			{"/../etc/passwd", 400, ""},
			{"/public/../../etc", 400, ""},
			{"/public/%2e%2e/%2e%2e/etc", 400, ""},
		} {
			args := append([]string{"--path-as-is", "-w", "%{http_code}"}, base[:len(base)-1]...)
			args = append(args, base[len(base)-1]+c.path)
			code, hdr := curlStatus(t, args...)
			if code != c.code || hdr.Get("X-Seen-Path") != c.seenPath {
				t.Errorf("%s %s: %d, backend saw %q; want %d, %q", proto, c.path, code, hdr.Get("X-Seen-Path"), c.code, c.seenPath)
			}
		}
	}
}

// curlStatus runs curl (args end with the URL; -w %{http_code} among them) and returns the status
// and the response headers.
func curlStatus(t *testing.T, args ...string) (int, http.Header) {
	t.Helper()
	curl := needTool(t, "curl")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, curl, append([]string{"-sS", "--max-time", "5", "-D", "-", "-o", "/dev/null"}, args...)...).Output()
	if err != nil {
		t.Fatalf("curl %v: %v", args, err)
	}
	s := string(out)
	code, _ := strconv.Atoi(s[len(s)-3:])
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(strings.Replace(s[:len(s)-3], "HTTP/2", "HTTP/2.0", 1))), nil)
	if err != nil {
		t.Fatalf("curl output %q: %v", out, err)
	}
	return code, resp.Header
}

// fwdEcho is a backend reporting the forwarding headers it received.
func fwdEcho(t *testing.T) *backend {
	return startBackend(t, "fwd", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		for name, hdr := range map[string]string{"Xff": "X-Forwarded-For", "Xfp": "X-Forwarded-Proto",
			"Xfh": "X-Forwarded-Host", "Real": "X-Real-Ip", "Fwd": "Forwarded"} {
			w.Header().Set("X-Seen-"+name, strings.Join(r.Header.Values(hdr), "|"))
		}
	}))
}

// TestForwardedHeaders: a client cannot forge the address the backend sees. By default its
// X-Forwarded-* are replaced and X-Real-IP and Forwarded dropped; from a trusted proxy they are
// kept and the address appended. One behaviour for HTTP/1.1 (fast and Transport paths), HTTP/2
// over TLS and WebSocket upgrades; curl and a raw-TCP upgrade as clients.
func TestForwardedHeaders(t *testing.T) {
	pki := newPKI(t)
	cert := pki.leaf(t, "a.test", "a.test")
	web, up := fwdEcho(t), upgradeEcho(t)
	ups := newFixed().add("web", 80, web.addr).add("up", 80, up.addr)
	forged := []string{"X-Forwarded-For: 192.0.2.66", "X-Forwarded-Proto: gopher", "X-Forwarded-Host: evil.test",
		"X-Real-IP: 192.0.2.66", "Forwarded: for=192.0.2.66"}
	for _, c := range []struct {
		name    string
		trusted []netip.Prefix
		want    map[string]string // X-Seen-* header -> value; {proto} is the listener's scheme
	}{
		{"default", nil, map[string]string{"Xff": "127.0.0.1", "Xfp": "{proto}", "Xfh": "{host}", "Real": "", "Fwd": ""}},
		{"other proxy trusted", []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
			map[string]string{"Xff": "127.0.0.1", "Xfp": "{proto}", "Xfh": "{host}", "Real": "", "Fwd": ""}},
		{"client trusted", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			map[string]string{"Xff": "192.0.2.66, 127.0.0.1", "Xfp": "gopher", "Xfh": "evil.test", "Real": "192.0.2.66", "Fwd": "for=192.0.2.66"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ing := &config.Ingress{
				Listeners: []config.Listener{{Name: "main", Address: "127.0.0.1:0"},
					{Name: "tls", Address: "127.0.0.1:0", Protocol: "https", TLS: []config.Certificate{cert}}},
				Routes: []config.HTTPRoute{{Name: "r", Rules: []config.Rule{
					{Matches: []config.Match{{Path: prefix("/ws")}}, Backends: []config.BackendRef{ref("up", 80, 1)}},
					{Backends: []config.BackendRef{ref("web", 80, 1)}},
				}}},
				TrustedProxies: c.trusted,
			}
			s := startIngress(t, ing, ups, Options{})
			plain := addrOf(t, s, "main")
			_, tlsPort, _ := net.SplitHostPort(addrOf(t, s, "tls"))
			check := func(what, proto string, hdr http.Header) {
				host := "a.test"
				if proto == "https" {
					host += ":" + tlsPort // curl sends the port in :authority
				}
				for k, want := range c.want {
					want = strings.NewReplacer("{proto}", proto, "{host}", host).Replace(want)
					if got := hdr.Get("X-Seen-" + k); got != want {
						t.Errorf("%s: backend saw %s %q, want %q", what, k, got, want)
					}
				}
			}
			var hargs []string
			for _, f := range forged {
				hargs = append(hargs, "-H", f)
			}
			h1 := append(append([]string{}, hargs...), "-H", "Host: a.test", "http://"+plain+"/p")
			check("HTTP/1.1 GET", "http", curlHeaders(t, h1...))
			check("HTTP/1.1 POST", "http", curlHeaders(t, append([]string{"--data", "x"}, h1...)...))
			h2 := append(append([]string{}, hargs...), "--http2", "--cacert", pki.caFile,
				"--resolve", "a.test:"+tlsPort+":127.0.0.1", "https://a.test:"+tlsPort+"/p")
			check("h2 GET", "https", curlHeaders(t, h2...))
			check("h2 POST", "https", curlHeaders(t, append([]string{"--data", "x"}, h2...)...))
			c, br := rawConn(t, plain)
			fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n%s\r\n\r\n", strings.Join(forged, "\r\n"))
			resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("upgrade: %v %v", resp, err)
			}
			check("WebSocket", "http", resp.Header)
		})
	}
}

// rawBackend answers every request with a response whose X-Big header has the size the path
// names (/big: 100 KiB, else 32 KiB), from a raw TCP server.
func rawBackend(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					size := 32 << 10
					if req.URL.Path == "/big" {
						size = 100 << 10
					}
					if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nX-Big: %s\r\nContent-Length: 2\r\n\r\nok", strings.Repeat("b", size)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// TestUpstreamHeaderLimit: a backend's response head larger than maxResponseHeaderBytes is
// answered 502 on the fast path (GET) and the Transport path (POST); a 32 KiB one passes.
func TestUpstreamHeaderLimit(t *testing.T) {
	s := startIngress(t, oneRoute("raw", config.Rule{}), newFixed().add("raw", 80, rawBackend(t)), Options{})
	base := "http://" + addrOf(t, s, "main")
	for _, c := range []struct {
		method, path string
		code         int
	}{{"GET", "/ok", 200}, {"POST", "/ok", 200}, {"GET", "/big", 502}, {"POST", "/big", 502}} {
		args := []string{"-w", "%{http_code}", "-X", c.method, base + c.path}
		if c.method == "POST" {
			args = append([]string{"--data", "x"}, args...)
		}
		code, hdr := curlStatus(t, args...)
		if code != c.code {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, code, c.code)
		}
		if code == 200 && len(hdr.Get("X-Big")) != 32<<10 {
			t.Errorf("%s %s: X-Big of %d bytes, want 32 KiB", c.method, c.path, len(hdr.Get("X-Big")))
		}
	}
}

// TestRequestTargetEscaped: an HTTP/2 :path with a space and other bytes an HTTP/1.1 request line
// cannot carry reaches the backend percent-encoded, on the fast path (GET) and the Transport path
// (POST). The client is Go's HTTP/2 client over TLS.
func TestRequestTargetEscaped(t *testing.T) {
	st := startSlowSetup(t, &config.Ingress{}, nil, nil)
	for _, method := range []string{"GET", "POST"} {
		req, _ := http.NewRequest(method, "https://"+st.tlsAdr, strings.NewReader("body"))
		if method == "GET" {
			req.Body, req.ContentLength = nil, 0
		}
		req.Host = "a.test"
		req.URL.Opaque = "/p/a b"
		req.URL.RawQuery = "x y=\"\xc3\xa9\"&z#w"
		resp, err := st.h2Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := "/p/a%20b?x%20y=\"%C3%A9\"&z%23w"; resp.StatusCode != 200 || resp.Header.Get("X-Seen-Path") != want || resp.ProtoMajor != 2 {
			t.Errorf("%s: %s %d, backend saw %q, want HTTP/2 200 and %q", method, resp.Proto, resp.StatusCode, resp.Header.Get("X-Seen-Path"), want)
		}
	}
}
