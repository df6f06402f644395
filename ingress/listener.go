package ingress

import (
	"errors"
	"net"
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
