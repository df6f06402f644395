package takeover

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"
)

// Source is the predecessor's data path.
type Source interface {
	// Freeze stops serving packets (nothing removed) and returns the descriptors and the state
	// to hand over.
	Freeze() (fds []int, state any, err error)
	// Thaw serves again after a failed hand-over.
	Thaw() error
	// Release gives up what the successor must own alone (listening sockets it binds
	// itself, such as the admin API), once the successor is ready.
	Release()
}

// Listener is the predecessor's hand-over socket.
type Listener struct {
	ln   *net.UnixListener
	path string
	info Info
}

// SetInfo sets what an info request is answered (before Serve).
func (l *Listener) SetInfo(info Info) { l.info = info }

// Listen creates the hand-over socket at path (mode 0600: the successor runs as root, or as
// the same user). A stale socket (nobody listening) is replaced.
func Listen(path string) (*Listener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("takeover socket %s: another edgegate is listening", path)
	}
	os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("takeover socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("takeover socket: %w", err)
	}
	return &Listener{ln: ln, path: path}, nil
}

// Close stops listening and removes the socket.
func (l *Listener) Close() error { return l.ln.Close() }

// Serve answers successors until one takes over (nil: the caller exits) or the listener is
// closed (an error). A successor that fails leaves src serving; the next one may try again.
func (l *Listener) Serve(src Source, log *slog.Logger) error {
	for {
		c, err := l.ln.AcceptUnix()
		if err != nil {
			return err
		}
		done, err := l.handle(c, src, log)
		c.Close()
		if done {
			return nil
		}
		if err != nil {
			log.Warn("hand-over failed: still serving", "err", err)
		}
	}
}

// handle runs one hand-over, or answers an info request; done reports the successor took over.
func (l *Listener) handle(c *net.UnixConn, src Source, log *slog.Logger) (done bool, err error) {
	req, fds, err := recv(c, time.Now().Add(ioTimeout))
	closeAll(fds)
	if err != nil {
		return false, err
	}
	if req.Op == "info" {
		info := l.info
		return false, send(c, Message{Op: "info", Version: Version, Info: &info}, nil)
	}
	if req.Op != "takeover" || req.Version != Version {
		send(c, Message{Op: "refused", Version: Version, Error: fmt.Sprintf("want op takeover, version %d", Version)}, nil)
		return false, fmt.Errorf("successor asked %q version %d", req.Op, req.Version)
	}
	log.Info("hand-over: successor connected, freezing the data path")
	frozeAt := time.Now()
	out, state, err := src.Freeze()
	if err != nil {
		send(c, Message{Op: "refused", Version: Version, Error: err.Error()}, nil)
		return false, err
	}
	fail := func(err error) (bool, error) {
		if terr := src.Thaw(); terr != nil {
			return false, errors.Join(err, terr)
		}
		return false, err
	}
	b, err := json.Marshal(state)
	if err != nil {
		return fail(err)
	}
	if err := send(c, Message{Op: "state", Version: Version, State: b}, out); err != nil {
		return fail(fmt.Errorf("send state: %w", err))
	}
	m, fds, err := recv(c, time.Now().Add(ReadyTimeout))
	closeAll(fds)
	if err != nil || m.Op != "ready" {
		return fail(fmt.Errorf("successor not ready: op %q, %v", m.Op, err))
	}
	log.Info("hand-over: successor ready", "frozen", time.Since(frozeAt).Round(time.Millisecond))
	src.Release()
	if err := send(c, Message{Op: "released", Version: Version}, nil); err != nil {
		log.Warn("hand-over: telling the successor", "err", err)
	}
	return true, nil
}
