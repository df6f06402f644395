package ingress

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgegate/edgegate/config"
)

// rawConn dials the ingress and returns the connection with a reader for responses.
func rawConn(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func readResp(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, string(b)
}

// expectClosed asserts that the server closes the connection (after what was already read).
func expectClosed(t *testing.T, br *bufio.Reader) {
	t.Helper()
	if b, err := br.ReadByte(); err != io.EOF {
		t.Errorf("connection still open (read %q, %v), want EOF", b, err)
	}
}

// TestH1ServerProtocol: the HTTP/1.x connection loop of plain listeners, driven by a raw client.
func TestH1ServerProtocol(t *testing.T) {
	web := startBackend(t, "web", nil)
	s := startIngress(t, oneRoute("web", config.Rule{}), newFixed().add("web", 80, web.addr), Options{})
	addr := addrOf(t, s, "main")

	t.Run("pipelined requests answered in order", func(t *testing.T) {
		c, br := rawConn(t, addr)
		io.WriteString(c, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /3 HTTP/1.1\r\nHost: a\r\n\r\n")
		for _, want := range []string{"web GET 0", "web POST 5", "web GET 0"} {
			resp, body := readResp(t, br, "GET")
			if resp.StatusCode != 200 || body != want {
				t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, want)
			}
		}
	})

	t.Run("HTTP/1.0 is answered in 1.0 and closed", func(t *testing.T) {
		c, br := rawConn(t, addr)
		io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
		resp, body := readResp(t, br, "GET")
		if resp.ProtoMinor != 0 || resp.StatusCode != 200 || body != "web GET 0" {
			t.Fatalf("got %s %d %q", resp.Proto, resp.StatusCode, body)
		}
		expectClosed(t, br)
	})

	for _, tt := range []struct {
		name, req string
		status    int
	}{
		{"missing Host", "GET / HTTP/1.1\r\n\r\n", http.StatusBadRequest},
		{"malformed request line", "GET\r\nHost: a\r\n\r\n", http.StatusBadRequest},
		{"unsupported Expect", "GET / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n", http.StatusExpectationFailed},
		{"HTTP/2 request line without the preface", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", http.StatusHTTPVersionNotSupported},
	} {
		t.Run(tt.name+" is refused and closes", func(t *testing.T) {
			c, br := rawConn(t, addr)
			io.WriteString(c, tt.req)
			if resp, _ := readResp(t, br, "GET"); resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			expectClosed(t, br)
		})
	}

	t.Run("100-continue before the body", func(t *testing.T) {
		c, br := rawConn(t, addr)
		io.WriteString(c, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
			t.Fatalf("interim response %q, %v; want 100 Continue", line, err)
		}
		if blank, _ := br.ReadString('\n'); blank != "\r\n" {
			t.Fatalf("100 Continue not followed by a blank line: %q", blank)
		}
		io.WriteString(c, "abcd")
		if resp, body := readResp(t, br, "POST"); resp.StatusCode != 200 || body != "web POST 4" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
	})

	t.Run("chunked request body", func(t *testing.T) {
		c, br := rawConn(t, addr)
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
		if resp, body := readResp(t, br, "POST"); resp.StatusCode != 200 || body != "web POST 7" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
	})

	t.Run("HEAD has no body and keeps the connection", func(t *testing.T) {
		c, br := rawConn(t, addr)
		io.WriteString(c, "HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
		if resp, body := readResp(t, br, "HEAD"); resp.StatusCode != 200 || body != "" {
			t.Fatalf("HEAD: %d %q", resp.StatusCode, body)
		}
		if resp, body := readResp(t, br, "GET"); resp.StatusCode != 200 || body != "web GET 0" {
			t.Fatalf("GET after HEAD: %d %q", resp.StatusCode, body)
		}
	})

	t.Run("Connection close is honoured", func(t *testing.T) {
		c, br := rawConn(t, addr)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		resp, _ := readResp(t, br, "GET")
		if !resp.Close {
			t.Error("response lacks Connection: close")
		}
		expectClosed(t, br)
	})

	t.Run("small local response gets Content-Length", func(t *testing.T) {
		c, br := rawConn(t, addr)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		resp, body := readResp(t, br, "GET")
		if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) != 0 {
			t.Errorf("Content-Length %d, TE %v for a %d-byte body", resp.ContentLength, resp.TransferEncoding, len(body))
		}
		if resp.Header.Get("Date") == "" {
			t.Error("no Date header")
		}
	})
}

// TestH1ServerClientGone: a client that leaves while its request waits on a slow backend cancels
// the upstream request (the background read notices the departure).
func TestH1ServerClientGone(t *testing.T) {
	var cancelled atomic.Int64
	started := make(chan struct{}, 1)
	slow := startBackend(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-r.Context().Done():
			cancelled.Add(1)
		case <-time.After(20 * time.Second):
		}
	}))
	s := startIngress(t, oneRoute("slow", config.Rule{}), newFixed().add("slow", 80, slow.addr), Options{})
	c, _ := rawConn(t, addrOf(t, s, "main"))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("request never reached the backend")
	}
	c.Close()
	eventually(t, 5*time.Second, func() bool { return cancelled.Load() == 1 }, "upstream request not cancelled after the client left")
}

// TestH1ServerShutdownClosesIdle: shutdown closes idle keep-alive connections at once and answers
// a request in flight with Connection: close.
func TestH1ServerShutdownClosesIdle(t *testing.T) {
	web := startBackend(t, "web", nil)
	s := startIngress(t, oneRoute("web", config.Rule{}), newFixed().add("web", 80, web.addr), Options{})
	c, br := rawConn(t, addrOf(t, s, "main"))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, _ := readResp(t, br, "GET"); resp.StatusCode != 200 || resp.Close {
		t.Fatalf("first response: %d close=%v", resp.StatusCode, resp.Close)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	expectClosed(t, br)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return")
	}
}

// FuzzH1Conn: arbitrary client bytes never crash the connection loop, it always ends once the
// client has sent everything and closed, and whatever it answers is an HTTP/1.x response stream.
func FuzzH1Conn(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.0\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc"))
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if r.URL.Path == "/flush" {
			w.(http.Flusher).Flush()
		}
		fmt.Fprintf(w, "%s %d", r.Method, len(b))
	})
	lim := limits{readHeader: time.Second, idle: time.Second, drain: time.Second, maxHeader: 4096}
	srv := newH1Server(h, slog.New(slog.NewTextHandler(io.Discard, nil)), lim, context.Background(), nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	f.Fuzz(func(t *testing.T, in []byte) {
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		server, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c := srv.newConn(server)
		done := make(chan struct{})
		go func() { c.serve(); close(done) }()
		client.SetDeadline(time.Now().Add(5 * time.Second))
		go func() {
			client.Write(in)
			client.(*net.TCPConn).CloseWrite() // the server sees EOF after the input
		}()
		out, _ := io.ReadAll(client)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("connection loop did not end")
		}
		if len(out) > 0 && !strings.HasPrefix(string(out), "HTTP/1.") {
			t.Fatalf("output does not start with a status line: %q", out)
		}
	})
}

// TestH1ServerUnreadBody: a large body the ingress never reads (no route matches) does not cost
// the client its 404: the connection is half-closed and drained, not reset under the response.
func TestH1ServerUnreadBody(t *testing.T) {
	web := startBackend(t, "web", nil)
	ing := oneRoute("web", config.Rule{Matches: []config.Match{{Path: prefix("/only")}}})
	s := startIngress(t, ing, newFixed().add("web", 80, web.addr), Options{})
	c, br := rawConn(t, addrOf(t, s, "main"))
	const size = 4 << 20
	fmt.Fprintf(c, "POST /elsewhere HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", size)
	go func() {
		chunk := make([]byte, 64<<10)
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				return // the server stopped reading: expected
			}
		}
	}()
	resp, body := readResp(t, br, "POST")
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "404") {
		t.Fatalf("got %d %q, want the 404", resp.StatusCode, body)
	}
	if !resp.Close {
		t.Error("response to an undrained body lacks Connection: close")
	}
}
