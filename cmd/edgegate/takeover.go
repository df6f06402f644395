package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/edgegate/edgegate/admin"
	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/gateway"
	"github.com/edgegate/edgegate/health"
	"github.com/edgegate/edgegate/ingress"
	"github.com/edgegate/edgegate/takeover"
)

// takeoverSocket is the hand-over socket: takeover.sock next to the admin socket.
func takeoverSocket(cfg *config.Config) string {
	dir := filepath.Dir(admin.DefaultSocket)
	if cfg.Admin.SocketEnabled() {
		dir = filepath.Dir(cfg.Admin.Socket)
	}
	return filepath.Join(dir, "takeover.sock")
}

// takeOver (run --takeover) makes the gateway Start take over from the running edgegate: once
// the rest is set up it asks for the TUN queues, the instance lock and the flows; the
// predecessor is frozen from then until finishHandover or until this process exits.
func (d *daemon) takeOver(cfg *config.Config) {
	d.takingOver = true
	d.inherit = func(g *gateway.Gateway) error {
		g.Inherit(func() ([]int, int, *gateway.Handover, error) {
			var st upgradeState
			ho, err := takeover.Request(takeoverSocket(cfg), &st)
			if err != nil {
				return nil, -1, nil, err
			}
			d.handover = ho
			q, n := st.TUN.Queues, len(ho.FDs)
			if q < 1 || n != q+1+len(st.IngressListeners) {
				closeFDs(ho.FDs)
				return nil, -1, nil, fmt.Errorf("takeover: %d descriptors received, want %d TUN queues, the instance lock and %d ingress listeners",
					n, q, len(st.IngressListeners))
			}
			d.adoptIngress(st.Version, st.IngressListeners, ho.FDs[q+1:])
			d.checker.Seed(unhealthyOf(st.Services))
			d.log.Info("taking over", "flows", len(st.Flows), "queues", q, "ingress_listeners", len(st.IngressListeners))
			return ho.FDs[:q], ho.FDs[q], &st.Handover, nil
		})
		return nil
	}
}

// upgradeState is the snapshot a predecessor sends (documented in docs/operations.md,
// "Upgrade"): the gateway's, and the configured addresses of the ingress listening sockets it
// passes, in the order of their descriptors (after the TUN queues and the instance lock).
type upgradeState struct {
	gateway.Handover
	IngressListeners []string `json:"ingress_listeners,omitempty"`
}

// adoptIngress keeps the ingress listening sockets received for the ingress to serve
// (startIngress). A predecessor of snapshot version 1 passes none: the successor binds the
// addresses once the predecessor released them (startIngressListeners).
func (d *daemon) adoptIngress(version int, addrs []string, fds []int) {
	if version < 2 {
		return
	}
	d.listenersPassed = true
	d.ingressFiles = map[string]*os.File{}
	for i, fd := range fds {
		d.ingressFiles[addrs[i]] = os.NewFile(uintptr(fd), "ingress "+addrs[i])
	}
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		syscall.Close(fd)
	}
}

// finishHandover tells the predecessor this process serves and waits until it released the
// admin listeners and the hand-over socket.
func (d *daemon) finishHandover() error {
	if d.handover == nil {
		return nil
	}
	if err := d.handover.Ready(); err != nil {
		return err
	}
	d.handover = nil
	d.g.Own()
	return nil
}

// abandon ends a failed takeover: the predecessor, still owner of the TUN, routes and rules,
// thaws when this process closes the connection; nothing shared is removed here.
func (d *daemon) abandon() {
	if d.handover != nil {
		d.handover.Abort()
	}
	if d.checker != nil {
		d.checker.Close()
	}
}

// serveHandovers opens the hand-over socket and answers successors in the background; handedOver
// is closed once one took over.
func (d *daemon) serveHandovers(cfg *config.Config) error {
	path := takeoverSocket(cfg)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("takeover socket: %w", err)
	}
	ln, err := takeover.Listen(path)
	if err != nil {
		return err
	}
	ln.SetInfo(processInfo())
	d.takeoverLn = ln
	d.handedOver = make(chan struct{})
	go func() {
		if err := ln.Serve(handoverSource{d}, d.log); err == nil {
			close(d.handedOver)
		}
	}()
	return nil
}

// handoverSource is the daemon as a takeover.Source.
type handoverSource struct{ d *daemon }

// Freeze freezes the data path and adds the ingress listening sockets: the successor serves
// them before it reports ready, so no connection is refused while this process drains.
func (s handoverSource) Freeze() ([]int, any, error) {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	fds, h, err := s.d.g.Freeze()
	if err != nil {
		return nil, nil, err
	}
	st := upgradeState{Handover: *h}
	if ing := s.d.ing; ing != nil {
		addrs, files, err := ing.ListenerFiles()
		s.d.passed = files
		if err == nil {
			fds, err = appendRawFDs(fds, files)
		}
		if err != nil {
			return nil, nil, errors.Join(err, s.thaw())
		}
		st.IngressListeners = addrs
	}
	return fds, st, nil
}

// appendRawFDs appends the descriptors of files without File.Fd, which would switch the shared
// socket to blocking mode for every process that holds it.
func appendRawFDs(fds []int, files []*os.File) ([]int, error) {
	for _, f := range files {
		rc, err := f.SyscallConn()
		if err != nil {
			return fds, err
		}
		rc.Control(func(fd uintptr) { fds = append(fds, int(fd)) })
	}
	return fds, nil
}

// Thaw serves again after a failed hand-over; the duplicates passed are closed.
func (s handoverSource) Thaw() error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	return s.thaw()
}

func (s handoverSource) thaw() error {
	s.d.closePassed()
	return s.d.g.Thaw()
}

func (d *daemon) closePassed() {
	for _, f := range d.passed {
		f.Close()
	}
	d.passed = nil
}

// Release stops the admin API, the hand-over socket and the BGP speaker, which the successor
// opens itself (its BGP sessions start afresh: no graceful restart yet).
func (s handoverSource) Release() {
	d := s.d
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closePassed()
	d.stopBGP()
	if d.api != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		d.api.Shutdown(ctx)
		cancel()
		d.api = nil
	}
	d.takeoverLn.Close()
	if ing := d.ing; ing != nil {
		// The successor serves the listening sockets (passed, or bound once these close): this
		// process stops accepting, answers requests in flight and those arriving on its idle
		// keep-alive connections with Connection: close (HTTP/2: GOAWAY), within
		// ingress.drain_timeout (retire waits).
		d.ing = nil
		d.ingDrained = make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), ing.DrainTimeout())
			defer cancel()
			d.ingDrained <- ing.Shutdown(ctx)
		}()
	}
}

// ingressBindWait bounds how long a successor retries binding the ingress listeners its
// predecessor is closing (Release starts that right before the successor binds).
const ingressBindWait = 5 * time.Second

// startIngressListeners starts ing; while taking over from a predecessor that passes no
// listening sockets (snapshot version 1), an address it still holds is retried until
// ingressBindWait.
func (d *daemon) startIngressListeners(ing *ingress.Server) error {
	deadline := time.Now().Add(ingressBindWait)
	for {
		err := ing.Start()
		if err == nil || !d.takingOver || d.listenersPassed || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// retire ends the predecessor after a hand-over: health checks stop, L7 requests in flight
// finish (ingress.drain_timeout), and the gateway detaches, leaving the TUN, routes and rules
// to the successor.
func (d *daemon) retire() error {
	if d.checker != nil {
		d.checker.Close()
	}
	var err error
	if d.ingDrained != nil {
		err = <-d.ingDrained
	}
	d.g.Detach()
	return err
}

// closeAdopted closes the ingress sockets a predecessor passed that no ingress took (the
// configuration has none).
func (d *daemon) closeAdopted() {
	for _, f := range d.ingressFiles {
		f.Close()
	}
	d.ingressFiles = nil
}

// unhealthyOf lists the backends a predecessor found unhealthy, for the health checker's seed.
func unhealthyOf(svcs []gateway.SavedService) []health.Key {
	var out []health.Key
	for _, s := range svcs {
		for _, b := range s.Backends {
			if !b.Healthy {
				out = append(out, health.Key{Service: s.Name, Backend: b.Address})
			}
		}
	}
	return out
}

// prepareCheckpointDir creates the directory of conntrack.checkpoint when it is missing (mode
// 0700, owned by owner, the -user the process switches to, so that it can write there).
func prepareCheckpointDir(cfg *config.Config, owner *[2]int) error {
	cp := cfg.Conntrack.Checkpoint
	if cp == nil {
		return nil
	}
	dir := filepath.Dir(cp.Path)
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if owner != nil {
		return os.Chown(dir, owner[0], owner[1])
	}
	return nil
}
