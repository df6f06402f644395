package ingress

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgegate/edgegate/config"
)

func plainListener() []config.Listener {
	return []config.Listener{{Name: "main", Address: "127.0.0.1:0"}}
}

func ref(svc string, port uint16, w int) config.BackendRef {
	return config.BackendRef{Service: svc, Port: port, Weight: w}
}

func TestProxyHeadersFiltersRewrite(t *testing.T) {
	web := startBackend(t, "web", nil)
	ups := newFixed().add("web", 80, web.addr)
	logs := &logBuffer{}
	reg := prometheus.NewRegistry()
	ing := &config.Ingress{
		Listeners: plainListener(),
		AccessLog: true,
		Routes: []config.HTTPRoute{
			{Name: "api", Rules: []config.Rule{{
				Matches: []config.Match{{Path: prefix("/api/")}},
				Filters: []config.Filter{
					{RequestHeaders: &config.HeaderFilter{Set: map[string]string{"x-req": "set"}, Remove: []string{"x-remove-me"}}},
					{ResponseHeaders: &config.HeaderFilter{Add: map[string]string{"x-resp": "added"}, Remove: []string{"x-resp-remove"}}},
					{URLRewrite: &config.RewriteFilter{Hostname: "internal.test", Path: &config.PathRewrite{Type: "prefix", Value: "/"}}},
				},
				Backends: []config.BackendRef{ref("web", 80, 1)},
			}}},
			{Name: "full", Rules: []config.Rule{{
				Matches:  []config.Match{{Path: exact("/old")}},
				Filters:  []config.Filter{{URLRewrite: &config.RewriteFilter{Path: &config.PathRewrite{Type: "full", Value: "/new"}}}},
				Backends: []config.BackendRef{ref("web", 80, 1)},
			}}},
			{Name: "hosted", Hostnames: []string{"*.example.com"}, Rules: []config.Rule{{Backends: []config.BackendRef{ref("web", 80, 1)}}}},
		},
	}
	s := startIngress(t, ing, ups, Options{Logger: slog.New(slog.NewJSONHandler(logs, nil)), Registerer: reg})
	base := "http://" + addrOf(t, s, "main")

	resp, body := get(t, "GET", base+"/api/v1/items?x=1", "front.test",
		"X-Remove-Me", "secret", "X-Req", "client", "Connection", "X-Hop", "X-Hop", "1", "Keep-Alive", "timeout=5",
		"X-Forwarded-For", "192.0.2.1")
	if resp.StatusCode != 200 || body != "web GET 0" {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	for k, want := range map[string]string{
		"X-Seen-Path":    "/v1/items?x=1", // prefix /api/ replaced by /
		"X-Seen-Host":    "internal.test", // hostname rewrite
		"X-Seen-Xff":     "127.0.0.1",     // the client's own X-Forwarded-For is replaced (not trusted)
		"X-Seen-Xfp":     "http",
		"X-Seen-Xfh":     "front.test",
		"X-Seen-Hop":     "|", // named in Connection, and Keep-Alive: both removed
		"X-Seen-Req":     "set",
		"X-Seen-Removed": "",
		"X-Resp":         "added",
		"X-Resp-Remove":  "",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if resp, _ := get(t, "GET", base+"/api", ""); resp.Header.Get("X-Seen-Path") != "/" {
		t.Errorf("/api rewritten to %q, want /", resp.Header.Get("X-Seen-Path"))
	}
	if resp, _ := get(t, "GET", base+"/old", ""); resp.Header.Get("X-Seen-Path") != "/new" {
		t.Errorf("/old rewritten to %q, want /new", resp.Header.Get("X-Seen-Path"))
	}
	if resp, body := get(t, "GET", base+"/elsewhere", "a.b.example.com"); resp.StatusCode != 200 || body != "web GET 0" {
		t.Errorf("wildcard host: %d %q", resp.StatusCode, body)
	}
	if resp, _ := get(t, "GET", base+"/elsewhere", "example.com"); resp.StatusCode != 404 {
		t.Errorf("unmatched request: %d, want 404", resp.StatusCode)
	}
	// POST body passes through.
	pr, err := http.Post(base+"/api/p", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := io.ReadAll(pr.Body)
	pr.Body.Close()
	if string(pb) != "web POST 5" {
		t.Errorf("POST body %q", pb)
	}

	// One structured access-log line per request with the promised fields.
	var lines []map[string]any
	for l := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "http" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 6 {
		t.Fatalf("%d access-log lines, want 6:\n%s", len(lines), logs.String())
	}
	first := lines[0]
	for k, want := range map[string]any{"host": "front.test", "method": "GET", "path": "/api/v1/items",
		"status": float64(200), "bytes": float64(9), "route": "api", "upstream": web.addr.String()} {
		if first[k] != want {
			t.Errorf("access log %s = %v, want %v", k, first[k], want)
		}
	}
	if _, ok := first["duration"]; !ok {
		t.Error("access log without duration")
	}
	if got := counterValue(t, s.metrics.requests, "api", "200"); got != 3 {
		t.Errorf("requests_total{api,200} = %v, want 3", got)
	}
	if got := counterValue(t, s.metrics.requests, "", "404"); got != 1 {
		t.Errorf("requests_total{,404} = %v, want 1", got)
	}
	if n := histogramCount(t, reg, "edgegate_http_request_duration_seconds", "api"); n != 3 {
		t.Errorf("duration histogram{api} count = %d, want 3", n)
	}
	if n := histogramCountFor(t, reg, "edgegate_http_request_duration_seconds", "", "404"); n != 1 {
		t.Errorf("duration histogram{route=\"\",code=404} count = %d, want 1", n)
	}
}

func TestRedirects(t *testing.T) {
	var routes []config.HTTPRoute
	for _, code := range []int{301, 302, 307, 308} {
		routes = append(routes, config.HTTPRoute{Name: fmt.Sprint(code), Rules: []config.Rule{{
			Matches: []config.Match{{Path: prefix(fmt.Sprintf("/r%d", code))}},
			Filters: []config.Filter{{Redirect: &config.RedirectFilter{StatusCode: code}}},
		}}})
	}
	routes = append(routes,
		config.HTTPRoute{Name: "https", Rules: []config.Rule{{
			Matches: []config.Match{{Path: prefix("/secure")}},
			Filters: []config.Filter{{Redirect: &config.RedirectFilter{Scheme: "https", StatusCode: 301}}},
		}}},
		config.HTTPRoute{Name: "all", Rules: []config.Rule{{
			Matches: []config.Match{{Path: prefix("/old")}},
			Filters: []config.Filter{{Redirect: &config.RedirectFilter{Scheme: "https", Hostname: "new.test", Port: 8443,
				Path: &config.PathRewrite{Type: "prefix", Value: "/new"}, StatusCode: 308}}},
		}}},
		config.HTTPRoute{Name: "full", Rules: []config.Rule{{
			Matches: []config.Match{{Path: prefix("/full")}},
			Filters: []config.Filter{{Redirect: &config.RedirectFilter{Path: &config.PathRewrite{Type: "full", Value: "/x y"}}}},
		}}},
	)
	s := startIngress(t, &config.Ingress{Listeners: plainListener(), Routes: routes}, newFixed(), Options{})
	addr := addrOf(t, s, "main")
	_, port, _ := net.SplitHostPort(addr)
	cases := []struct {
		path     string
		status   int
		location string
	}{
		{"/r301/a?q=1", 301, "http://site.test:" + port + "/r301/a?q=1"},
		{"/r302", 302, "http://site.test:" + port + "/r302"},
		{"/r307", 307, "http://site.test:" + port + "/r307"},
		{"/r308", 308, "http://site.test:" + port + "/r308"},
		{"/secure/x", 301, "https://site.test/secure/x"}, // scheme set: its well-known port, omitted
		{"/old/page?a=b", 308, "https://new.test:8443/new/page?a=b"},
		{"/full/ignored", 302, "http://site.test:" + port + "/x%20y"},
	}
	for _, c := range cases {
		resp, _ := get(t, "GET", "http://"+addr+c.path, "site.test:"+port)
		if resp.StatusCode != c.status || resp.Header.Get("Location") != c.location {
			t.Errorf("%s: %d %q, want %d %q", c.path, resp.StatusCode, resp.Header.Get("Location"), c.status, c.location)
		}
	}
}

func TestWeights(t *testing.T) {
	a := startBackend(t, "a", nil)
	b := startBackend(t, "b", nil)
	ups := newFixed().add("a", 80, a.addr).add("b", 80, b.addr)
	ing := &config.Ingress{Listeners: plainListener(), Routes: []config.HTTPRoute{{Name: "w", Rules: []config.Rule{{
		Backends: []config.BackendRef{ref("a", 80, 90), ref("b", 80, 10), ref("zero", 80, 0)},
	}}}}}
	s := startIngress(t, ing, ups, Options{})
	base := "http://" + addrOf(t, s, "main")
	const n = 1000
	counts := map[string]int{}
	for range n {
		resp, body := get(t, "GET", base+"/", "")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		counts[strings.Fields(body)[0]]++
	}
	if got := float64(counts["a"]) / n; got < 0.85 || got > 0.95 {
		t.Errorf("share of a = %.3f, want 0.90 ± 0.05 (%v)", got, counts)
	}
	if got := float64(counts["b"]) / n; got < 0.05 || got > 0.15 {
		t.Errorf("share of b = %.3f, want 0.10 ± 0.05 (%v)", got, counts)
	}
	if counts["a"]+counts["b"] != n {
		t.Errorf("weight-0 backend served requests: %v", counts)
	}
}

func TestRetryConnectFailureAnd503(t *testing.T) {
	good := startBackend(t, "good", nil)
	var unavailable int
	var mu sync.Mutex
	flaky := startBackend(t, "flaky", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		unavailable++
		mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	dead := refusedAddr(t)
	ups := newFixed().add("web", 80, dead, good.addr).add("flaky", 80, flaky.addr, good.addr).add("dead", 80, dead)
	reg := prometheus.NewRegistry()
	ing := &config.Ingress{Listeners: plainListener(), Routes: []config.HTTPRoute{
		{Name: "web", Rules: []config.Rule{{Matches: []config.Match{{Path: prefix("/web")}}, Retries: 1, Backends: []config.BackendRef{ref("web", 80, 1)}}}},
		{Name: "flaky", Rules: []config.Rule{{Matches: []config.Match{{Path: prefix("/flaky")}}, Retries: 2, Backends: []config.BackendRef{ref("flaky", 80, 1)}}}},
		{Name: "dead", Rules: []config.Rule{{Matches: []config.Match{{Path: prefix("/dead")}}, Retries: 3, Backends: []config.BackendRef{ref("dead", 80, 1)}}}},
		{Name: "noretry", Rules: []config.Rule{{Matches: []config.Match{{Path: prefix("/noretry")}}, Retries: 0, Backends: []config.BackendRef{ref("web", 80, 1)}}}},
	}}
	s := startIngress(t, ing, ups, Options{Registerer: reg})
	base := "http://" + addrOf(t, s, "main")
	for i := range 10 {
		if resp, body := get(t, "GET", base+"/web", ""); resp.StatusCode != 200 || !strings.HasPrefix(body, "good") {
			t.Fatalf("request %d: %d %q (retry should land on the live backend)", i, resp.StatusCode, body)
		}
	}
	if got := counterValue(t, s.metrics.errors, "web", "connect"); got < 4 {
		t.Errorf("connect errors = %v, want about 5 (every other pick is the dead backend)", got)
	}
	for i := range 6 {
		if resp, body := get(t, "GET", base+"/flaky", ""); resp.StatusCode != 200 || !strings.HasPrefix(body, "good") {
			t.Fatalf("GET %d: %d %q (503 should be retried elsewhere)", i, resp.StatusCode, body)
		}
	}
	// POST is not idempotent: a 503 goes back to the client when the flaky backend is picked.
	saw503 := false
	for range 6 {
		resp, err := http.Post(base+"/flaky", "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		saw503 = saw503 || resp.StatusCode == 503
	}
	if !saw503 {
		t.Error("POST never saw the backend's 503: it was retried")
	}
	if resp, _ := get(t, "GET", base+"/dead", ""); resp.StatusCode != 502 {
		t.Errorf("only dead backends: %d, want 502", resp.StatusCode)
	}
	if got := counterValue(t, s.metrics.errors, "dead", "connect"); got != 4 {
		t.Errorf("dead route connect errors = %v, want 4 (1 + 3 retries, bounded)", got)
	}
	fails := 0
	for range 10 {
		if resp, _ := get(t, "GET", base+"/noretry", ""); resp.StatusCode == 502 {
			fails++
		}
	}
	if fails == 0 {
		t.Error("retries 0: no request failed although half the picks are dead")
	}
}

func TestTimeouts(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slow := startBackend(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	ups := newFixed().add("slow", 80, slow.addr)
	reg := prometheus.NewRegistry()
	ing := &config.Ingress{Listeners: plainListener(), Routes: []config.HTTPRoute{
		{Name: "backend", Rules: []config.Rule{{Matches: []config.Match{{Path: prefix("/b")}},
			BackendTimeout: config.Duration(150 * time.Millisecond), Retries: 1, Backends: []config.BackendRef{ref("slow", 80, 1)}}}},
		{Name: "request", Rules: []config.Rule{{Matches: []config.Match{{Path: prefix("/r")}},
			Timeout: config.Duration(150 * time.Millisecond), Backends: []config.BackendRef{ref("slow", 80, 1)}}}},
	}}
	s := startIngress(t, ing, ups, Options{Registerer: reg})
	base := "http://" + addrOf(t, s, "main")
	for _, p := range []string{"/b", "/r"} {
		start := time.Now()
		resp, _ := get(t, "GET", base+p, "")
		if resp.StatusCode != http.StatusGatewayTimeout {
			t.Errorf("%s: status %d, want 504", p, resp.StatusCode)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: answered after %v", p, d)
		}
	}
	if got := counterValue(t, s.metrics.errors, "backend", "timeout"); got != 1 {
		t.Errorf("timeout errors = %v, want 1 (timeouts are not retried)", got)
	}
}

// TestSlowloris: a client that trickles its header is cut off by the read-header timeout while
// other clients are served normally.
func TestSlowloris(t *testing.T) {
	web := startBackend(t, "web", nil)
	ing := &config.Ingress{Listeners: plainListener(), ReadHeaderTimeout: config.Duration(300 * time.Millisecond),
		Routes: []config.HTTPRoute{{Name: "web", Rules: []config.Rule{{Backends: []config.BackendRef{ref("web", 80, 1)}}}}}}
	s := startIngress(t, ing, newFixed().add("web", 80, web.addr), Options{})
	addr := addrOf(t, s, "main")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closed := make(chan time.Duration, 1)
	start := time.Now()
	go func() {
		// Trickle one header line every 100 ms, never finishing the header.
		if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n")); err != nil {
			closed <- time.Since(start)
			return
		}
		for i := 0; ; i++ {
			time.Sleep(100 * time.Millisecond)
			if _, err := fmt.Fprintf(conn, "X-Slow-%d: y\r\n", i); err != nil || time.Since(start) > 5*time.Second {
				break
			}
		}
		closed <- time.Since(start)
	}()
	go func() {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, conn) // returns when the server closes
		conn.Close()
	}()
	// Meanwhile others are served.
	for range 5 {
		if resp, _ := get(t, "GET", "http://"+addr+"/", ""); resp.StatusCode != 200 {
			t.Fatalf("normal client got %d", resp.StatusCode)
		}
	}
	select {
	case d := <-closed:
		if d > 3*time.Second {
			t.Fatalf("slowloris connection lived %v", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("slowloris connection never cut")
	}
}

// TestStreaming: a response of unknown length reaches the client chunk by chunk, not buffered,
// with chunked framing and its trailer.
func TestStreaming(t *testing.T) {
	next := make(chan struct{})
	stream := startBackend(t, "stream", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		for i := range 3 {
			fmt.Fprintf(w, "chunk%d\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-time.After(5 * time.Second):
				return
			}
		}
		w.Header().Set("X-Sum", "3")
	}))
	ing := &config.Ingress{Listeners: plainListener(), Routes: []config.HTTPRoute{{Name: "s", Rules: []config.Rule{{Backends: []config.BackendRef{ref("s", 80, 1)}}}}}}
	s := startIngress(t, ing, newFixed().add("s", 80, stream.addr), Options{})
	resp, err := http.Get("http://" + addrOf(t, s, "main") + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("Transfer-Encoding %v, want chunked", resp.TransferEncoding)
	}
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		line, err := br.ReadString('\n')
		if err != nil || line != fmt.Sprintf("chunk%d\n", i) {
			t.Fatalf("chunk %d: %q %v", i, line, err)
		}
		next <- struct{}{} // the backend writes the next chunk only after we saw this one
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after the chunks: %q, %v", rest, err)
	}
	if got := resp.Trailer.Get("X-Sum"); got != "3" {
		t.Errorf("trailer X-Sum = %q, want 3", got)
	}
}

func TestShutdownDrains(t *testing.T) {
	started := make(chan struct{})
	slow := startBackend(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "done")
	}))
	ing := &config.Ingress{Listeners: plainListener(), Routes: []config.HTTPRoute{{Name: "s", Rules: []config.Rule{{Backends: []config.BackendRef{ref("s", 80, 1)}}}}}}
	ing.DrainTimeout = config.Duration(7 * time.Second)
	s, err := New(&config.Config{Ingress: ing}, newFixed().add("s", 80, slow.addr), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if d := s.DrainTimeout(); d != 7*time.Second {
		t.Fatalf("DrainTimeout = %v", d)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	addr := addrOf(t, s, "main")
	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			res <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{string(b), err}
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil || r.body != "done" {
		t.Fatalf("in-flight request during shutdown: %q %v", r.body, r.err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("listener still accepting after Shutdown")
	}
}

func TestReload(t *testing.T) {
	a := startBackend(t, "a", nil)
	b := startBackend(t, "b", nil)
	ups := newFixed().add("a", 80, a.addr).add("b", 80, b.addr)
	mk := func(svc string, listeners ...config.Listener) *config.Ingress {
		return &config.Ingress{Listeners: listeners, Routes: []config.HTTPRoute{{Name: "r", Rules: []config.Rule{{Backends: []config.BackendRef{ref(svc, 80, 1)}}}}}}
	}
	s := startIngress(t, mk("a", config.Listener{Name: "main", Address: "127.0.0.1:0"}), ups, Options{})
	addr := addrOf(t, s, "main")
	if _, body := get(t, "GET", "http://"+addr+"/", ""); !strings.HasPrefix(body, "a ") {
		t.Fatalf("before reload: %q", body)
	}
	// Same listener (kept, same socket), new route target, plus a second listener.
	err := s.Reload(&config.Config{Ingress: mk("b", config.Listener{Name: "main", Address: "127.0.0.1:0"},
		config.Listener{Name: "extra", Address: "127.0.0.1:0"})}, ups)
	if err != nil {
		t.Fatal(err)
	}
	if got := addrOf(t, s, "main"); got != addr {
		t.Fatalf("kept listener moved: %s -> %s", addr, got)
	}
	if _, body := get(t, "GET", "http://"+addr+"/", ""); !strings.HasPrefix(body, "b ") {
		t.Fatalf("after reload: %q", body)
	}
	extra := addrOf(t, s, "extra")
	if _, body := get(t, "GET", "http://"+extra+"/", ""); !strings.HasPrefix(body, "b ") {
		t.Fatalf("new listener: %q", body)
	}
	if len(s.Addrs()) != 2 {
		t.Fatalf("Addrs = %v", s.Addrs())
	}
	// A bad config changes nothing.
	bad := mk("b", config.Listener{Name: "main", Address: "127.0.0.1:0", Protocol: "gopher"})
	if err := s.Reload(&config.Config{Ingress: bad}, ups); err == nil {
		t.Fatal("reload accepted an unknown protocol")
	}
	// Remove the extra listener: it stops accepting.
	if err := s.Reload(&config.Config{Ingress: mk("a", config.Listener{Name: "main", Address: "127.0.0.1:0"})}, ups); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", extra, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	}, "removed listener still accepting")
	if _, body := get(t, "GET", "http://"+addr+"/", ""); !strings.HasPrefix(body, "a ") {
		t.Fatalf("after second reload: %q", body)
	}
}

func TestMirror(t *testing.T) {
	web := startBackend(t, "web", nil)
	got := make(chan string, 4)
	shadow := startBackend(t, "shadow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r.Method + " " + r.URL.Path + " " + string(b)
	}))
	ups := newFixed().add("web", 80, web.addr).add("shadow", 80, shadow.addr)
	ing := &config.Ingress{Listeners: plainListener(), Routes: []config.HTTPRoute{{Name: "m", Rules: []config.Rule{{
		Filters:  []config.Filter{{Mirror: &config.BackendRef{Service: "shadow", Port: 80, Weight: 1}}},
		Backends: []config.BackendRef{ref("web", 80, 1)},
	}}}}}
	s := startIngress(t, ing, ups, Options{})
	resp, err := http.Post("http://"+addrOf(t, s, "main")+"/m", "text/plain", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "web POST 7" {
		t.Fatalf("main response %q", b)
	}
	select {
	case m := <-got:
		if m != "POST /m payload" {
			t.Fatalf("mirror saw %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("mirror request never arrived")
	}
}

// TestLimits: oversized request headers get 431 and idle client connections are closed after
// idle_timeout.
func TestLimits(t *testing.T) {
	web := startBackend(t, "web", nil)
	ing := oneRoute("web", config.Rule{})
	ing.MaxHeaderBytes = 1024
	ing.IdleTimeout = config.Duration(200 * time.Millisecond)
	s := startIngress(t, ing, newFixed().add("web", 80, web.addr), Options{})
	addr := addrOf(t, s, "main")
	if resp, _ := get(t, "GET", "http://"+addr+"/", "", "X-Big", strings.Repeat("b", 16<<10)); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("16 KiB header: %d, want 431", resp.StatusCode)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("first request: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: %v, want EOF from the server", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("idle connection closed after %v", d)
	}
}

// TestReloadUnderLoad: reloads swap the table while requests are in flight; no request fails and
// each is served by one of the two configurations.
func TestReloadUnderLoad(t *testing.T) {
	a := startBackend(t, "a", nil)
	b := startBackend(t, "b", nil)
	ups := newFixed().add("a", 80, a.addr).add("b", 80, b.addr)
	s := startIngress(t, oneRoute("a", config.Rule{}), ups, Options{})
	url := "http://" + addrOf(t, s, "main") + "/"
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := noRedirectClient.Get(url)
				if err != nil {
					errs <- err.Error()
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !(strings.HasPrefix(string(body), "a ") || strings.HasPrefix(string(body), "b ")) {
					errs <- fmt.Sprintf("%d %q", resp.StatusCode, body)
					return
				}
			}
		}()
	}
	for i := range 30 {
		svc := []string{"a", "b"}[i%2]
		if err := s.Reload(&config.Config{Ingress: oneRoute(svc, config.Rule{})}, ups); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // let requests run on this table
	}
	close(stop)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if a.hits.Load() == 0 || b.hits.Load() == 0 {
		t.Errorf("hits a=%d b=%d: both tables should have served", a.hits.Load(), b.hits.Load())
	}
}
