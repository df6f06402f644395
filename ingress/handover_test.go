package ingress

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgegate/edgegate/config"
)

// keepAliveLoad is a client like wrk: each worker sends requests back to back on one keep-alive
// connection, sends the next as soon as it read a response, and reconnects only when a response
// says Connection: close. Every other end of a connection (reset, EOF before a response, refused
// connect) is an error, as wrk counts it; no request is retried.
type keepAliveLoad struct {
	ok, errs, non200 atomic.Int64
	firstErr         atomic.Value
	stop             chan struct{}
	wg               sync.WaitGroup
}

func startKeepAliveLoad(dial func() (net.Conn, error), workers int) *keepAliveLoad {
	l := &keepAliveLoad{stop: make(chan struct{})}
	for range workers {
		l.wg.Go(func() { l.worker(dial) })
	}
	return l
}

func (l *keepAliveLoad) fail(err error) {
	l.errs.Add(1)
	l.firstErr.CompareAndSwap(nil, err.Error())
}

func (l *keepAliveLoad) worker(dial func() (net.Conn, error)) {
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		c, err := dial()
		if err != nil {
			l.fail(err)
			continue
		}
		l.serveConn(c)
		c.Close()
	}
}

// serveConn runs requests on c until a response closes it, an error, or stop.
func (l *keepAliveLoad) serveConn(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
			l.fail(err)
			return
		}
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if err != nil {
			l.fail(err)
			return
		}
		if resp.StatusCode != 200 {
			l.non200.Add(1)
		} else {
			l.ok.Add(1)
		}
		if resp.Close {
			return
		}
	}
}

func (l *keepAliveLoad) finish() {
	close(l.stop)
	l.wg.Wait()
}

// TestAdoptUnderLoad: the listening socket passes from server to server three times (as in a
// hand-over upgrade: the successor adopts a duplicate, the predecessor shuts down) while
// keep-alive clients send requests back to back. No request fails: the predecessor answers what
// it has in flight with Connection: close, serves requests that arrive on its idle connections
// within idleGrace the same way, and the connections the clients open meanwhile wait in the
// shared socket's queue for whichever server accepts. Before idleGrace, a connection idle for
// microseconds (between a response and the client's next request) was closed under that request.
func TestAdoptUnderLoad(t *testing.T) {
	pki := newPKI(t)
	cert := pki.leaf(t, "a.test", "a.test")
	pool := x509.NewCertPool()
	pool.AddCert(pki.caCert)
	for _, tc := range []struct {
		name string
		l    config.Listener
		dial func(addr string) (net.Conn, error)
	}{
		{"plain", plainListener()[0], func(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) }},
		// net/http serves TLS listeners: their drain (tlsDrain) has the same grace.
		{"tls", config.Listener{Name: "main", Address: "127.0.0.1:0", Protocol: "https", TLS: []config.Certificate{cert}},
			func(addr string) (net.Conn, error) {
				d := &net.Dialer{Timeout: 5 * time.Second}
				return tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: "a.test"})
			}},
	} {
		t.Run(tc.name, func(t *testing.T) { adoptUnderLoad(t, tc.l, tc.dial) })
	}
}

func adoptUnderLoad(t *testing.T, ln config.Listener, dial func(addr string) (net.Conn, error)) {
	web := startBackend(t, "web", nil)
	ups := newFixed().add("web", 80, web.addr)
	cfg := &config.Config{Ingress: oneRoute("web", config.Rule{})}
	cfg.Ingress.Listeners = []config.Listener{ln}
	cur := startIngress(t, cfg.Ingress, ups, Options{})
	addr := addrOf(t, cur, "main")
	load := startKeepAliveLoad(func() (net.Conn, error) { return dial(addr) }, 8)
	for i := range 3 {
		waitServed(t, load, 200)
		addrs, files, err := cur.ListenerFiles()
		if err != nil || len(files) != 1 || addrs[0] != cfg.Ingress.Listeners[0].Address {
			t.Fatalf("ListenerFiles: %v %v", addrs, err)
		}
		next, err := New(cfg, ups, Options{Logger: cur.log})
		if err != nil {
			t.Fatal(err)
		}
		next.Adopt(map[string]*os.File{addrs[0]: files[0]})
		if err := next.Start(); err != nil {
			t.Fatal(err)
		}
		if got := addrOf(t, next, "main"); got != addr {
			t.Fatalf("hand-over %d: successor listens on %s, want %s", i+1, got, addr)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = cur.Shutdown(ctx)
		cancel()
		if err != nil {
			t.Fatalf("hand-over %d: predecessor's drain: %v", i+1, err)
		}
		cur = next
	}
	waitServed(t, load, 200) // the last successor serves alone
	load.finish()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cur.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d requests, %d errors, %d not 200", load.ok.Load(), load.errs.Load(), load.non200.Load())
	if load.errs.Load() != 0 || load.non200.Load() != 0 {
		t.Fatalf("%d errors (first: %v), %d responses not 200 across 3 hand-overs", load.errs.Load(), load.firstErr.Load(), load.non200.Load())
	}
}

// waitServed waits until the load has had n more successful requests.
func waitServed(t *testing.T, l *keepAliveLoad, n int64) {
	t.Helper()
	want := l.ok.Load() + n
	eventually(t, 10*time.Second, func() bool { return l.ok.Load() >= want }, "load not served")
}

// TestAdoptUnusedSocketClosed: an adopted socket no listener of the configuration uses is closed
// by Start (the address then refuses connections), and one of another kind is an error.
func TestAdoptUnusedSocketClosed(t *testing.T) {
	web := startBackend(t, "web", nil)
	ups := newFixed().add("web", 80, web.addr)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	s, err := New(&config.Config{Ingress: oneRoute("web", config.Rule{})}, ups, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	s.Adopt(map[string]*os.File{"127.0.0.1:1": f})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	if _, err := f.Stat(); err == nil {
		t.Error("the unused adopted socket is still open")
	}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	s2, err := New(&config.Config{Ingress: oneRoute("web", config.Rule{})}, ups, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	s2.Adopt(map[string]*os.File{plainListener()[0].Address: r})
	if err := s2.Start(); err == nil || !strings.Contains(err.Error(), "adopted socket") {
		t.Errorf("Start with a pipe adopted: %v, want an adopted-socket error", err)
	}
}

// TestTrackH1: a TLS listener's drain waits for HTTP/1 connections only: HTTP/2 ones (wrapped by
// configureH2) end with GOAWAY and are not tracked; an HTTP/1 connection is tracked while active
// and idle, and forgotten when closed or hijacked.
func TestTrackH1(t *testing.T) {
	l := &listener{h1conns: map[net.Conn]h1mark{}}
	h2 := &h2Guard{}
	l.trackH1(h2, http.StateActive)
	l.trackH1(h2, http.StateIdle)
	if len(l.h1conns) != 0 {
		t.Fatal("an HTTP/2 connection is tracked")
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	for _, tc := range []struct {
		st      http.ConnState
		tracked bool
		active  bool
	}{
		{http.StateNew, false, false}, {http.StateActive, true, true}, {http.StateIdle, true, false},
		{http.StateHijacked, false, false}, {http.StateActive, true, true}, {http.StateClosed, false, false},
	} {
		l.trackH1(a, tc.st)
		m, ok := l.h1conns[a]
		if ok != tc.tracked || m.active != tc.active {
			t.Errorf("after %v: tracked %v active %v, want %v %v", tc.st, ok, m.active, tc.tracked, tc.active)
		}
	}
}
