package ingress

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
)

// ownedListener is a listener's kernel socket. The listener owns it: it alone closes it, once,
// when it stops accepting (shutdown, or a reload that removes or changes it). The servers that
// accept from it close it too (http.Server.Shutdown closes the listeners it serves, and Serve
// closes its listener when it returns); those closes come second, find it closed and are not
// errors. Without this, whichever close lost the race reported net.ErrClosed as a shutdown error.
type ownedListener struct {
	net.Listener
	once   sync.Once
	closed atomic.Bool
}

// Close closes the socket the first time; later calls do nothing and return nil.
func (o *ownedListener) Close() error {
	var err error
	o.once.Do(func() {
		o.closed.Store(true)
		err = o.Listener.Close()
	})
	return err
}

// stopped reports whether err is an accept loop's error after Close: the loop ended because the
// listener stopped accepting, which is not a failure.
func (o *ownedListener) stopped(err error) bool {
	return o.closed.Load() && errors.Is(err, net.ErrClosed)
}

// tlsListener is what a TLS listener's http.Server accepts from (below crypto/tls): its
// connections fail every write at once after one has timed out (see writeTimeoutConn).
type tlsListener struct{ *ownedListener }

func (l tlsListener) Accept() (net.Conn, error) {
	c, err := l.ownedListener.Accept()
	if err != nil {
		return nil, err
	}
	return &writeTimeoutConn{Conn: c}, nil
}

// writeTimeoutConn is a client connection under TLS whose writes, after one has timed out
// (send_timeout), fail at once. net/http closes a connection on a failed write, and a *tls.Conn's
// Close first writes a close_notify alert with a 5 s deadline of its own: to a client that does not
// read (which is why the write timed out) that alert waited those 5 s more, so send_timeout was
// really send_timeout + 5 s.
type writeTimeoutConn struct {
	net.Conn
	timedOut atomic.Bool
}

func (c *writeTimeoutConn) Write(p []byte) (int, error) {
	if c.timedOut.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	n, err := c.Conn.Write(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.timedOut.Store(true)
	}
	return n, err
}
