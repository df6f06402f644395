package takeover

import (
	"encoding/json"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// Handover is the successor's side of one hand-over in progress.
type Handover struct {
	c   *net.UnixConn
	FDs []int // received descriptors, in the predecessor's order; the caller owns them
}

// Request asks the edgegate listening at path to hand over: it freezes and sends its
// descriptors, and its state is decoded into state.
func Request(path string, state any) (*Handover, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("takeover: connect to the running edgegate at %s: %w", path, err)
	}
	if err := send(c, Message{Op: "takeover", Version: Version}, nil); err != nil {
		c.Close()
		return nil, fmt.Errorf("takeover: %w", err)
	}
	m, fds, err := recv(c, time.Now().Add(ioTimeout))
	if err == nil && m.Op != "state" {
		err = fmt.Errorf("predecessor answered %q: %s", m.Op, m.Error)
	}
	if err == nil {
		err = json.Unmarshal(m.State, state)
	}
	if err != nil {
		closeAll(fds)
		c.Close()
		return nil, fmt.Errorf("takeover: %w", err)
	}
	return &Handover{c: c, FDs: fds}, nil
}

// Ready tells the predecessor the successor serves; it returns once the predecessor released
// what it must (its admin listeners), so the caller can bind them.
func (h *Handover) Ready() error {
	defer h.c.Close()
	if err := send(h.c, Message{Op: "ready", Version: Version}, nil); err != nil {
		return fmt.Errorf("takeover: %w", err)
	}
	m, fds, err := recv(h.c, time.Now().Add(ioTimeout))
	closeAll(fds)
	if err != nil || m.Op != "released" {
		return fmt.Errorf("takeover: predecessor did not release: op %q, %v", m.Op, err)
	}
	return nil
}

// Abort gives up: the predecessor thaws and serves on.
func (h *Handover) Abort() { h.c.Close() }

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// Query asks the edgegate listening at path what it is (Info), without a hand-over.
func Query(path string) (Info, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return Info{}, fmt.Errorf("takeover: connect to the running edgegate at %s: %w", path, err)
	}
	defer c.Close()
	if err := send(c, Message{Op: "info", Version: Version}, nil); err != nil {
		return Info{}, fmt.Errorf("takeover: %w", err)
	}
	m, fds, err := recv(c, time.Now().Add(ioTimeout))
	closeAll(fds)
	switch {
	case err != nil:
		return Info{}, fmt.Errorf("takeover: %w", err)
	case m.Op != "info" || m.Info == nil:
		return Info{}, fmt.Errorf("takeover: the running edgegate answered %q: %s", m.Op, m.Error)
	}
	return *m.Info, nil
}
