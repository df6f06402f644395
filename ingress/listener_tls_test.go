package ingress

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestWriteTimeoutConnCloseAfterTimeout: a TLS server connection whose write to a client that does
// not read timed out closes at once (crypto/tls's close_notify would otherwise wait its own 5 s
// on the full send buffer), later writes fail at once with the timeout, and the client sees the
// connection end.
func TestWriteTimeoutConnCloseAfterTimeout(t *testing.T) {
	pki := newPKI(t)
	leaf := pki.leaf(t, "a.test", "a.test")
	cert, err := tls.LoadX509KeyPair(leaf.CertFile, leaf.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tl := tlsListener{&ownedListener{Listener: ln}}
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cc.(*net.TCPConn).SetReadBuffer(16 << 10)
	sc, err := tl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	sc.(*writeTimeoutConn).Conn.(*net.TCPConn).SetWriteBuffer(16 << 10)
	srv := tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{cert}})
	client := tls.Client(cc, &tls.Config{ServerName: "a.test", RootCAs: poolOf(pki)})
	hs := make(chan error, 1)
	go func() { hs <- client.Handshake() }()
	if err := srv.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-hs; err != nil {
		t.Fatal(err)
	}

	// The client reads nothing: the server writes until its send deadline passes.
	srv.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	chunk := make([]byte, 32<<10)
	var werr error
	for deadline := time.Now().Add(10 * time.Second); werr == nil && time.Now().Before(deadline); {
		_, werr = srv.Write(chunk)
	}
	var ne net.Error
	if !errors.As(werr, &ne) || !ne.Timeout() {
		t.Fatalf("write to a client that does not read: %v, want a timeout", werr)
	}

	// Below TLS, a later write fails at once with the same error, whatever the deadline.
	sc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if _, err := sc.Write([]byte{21, 3, 3, 0, 2, 1, 0}); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("write after the timeout: %v, want the timeout again", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("write after the timeout took %v", d)
	}

	start = time.Now()
	srv.Close() // close_notify fails at once; the socket is closed
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close after a write timeout took %v (close_notify waited on the full buffer)", d)
	}
	cc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, cc); err != nil && errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("client still connected after the server's Close: %v", err)
	}
}

func poolOf(p *testPKI) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.caCert)
	return pool
}
