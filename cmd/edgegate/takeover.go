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
			var h gateway.Handover
			ho, err := takeover.Request(takeoverSocket(cfg), &h)
			if err != nil {
				return nil, -1, nil, err
			}
			d.handover = ho
			n := len(ho.FDs)
			if n < 2 {
				return nil, -1, nil, fmt.Errorf("takeover: %d descriptors received, want the TUN queues and the instance lock", n)
			}
			d.log.Info("taking over", "flows", len(h.Flows), "queues", h.TUN.Queues)
			return ho.FDs[:n-1], ho.FDs[n-1], &h, nil
		})
		return nil
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

func (s handoverSource) Freeze() ([]int, any, error) {
	fds, h, err := s.d.g.Freeze()
	return fds, h, err
}

func (s handoverSource) Thaw() error { return s.d.g.Thaw() }

// Release stops the admin API, the hand-over socket and the BGP speaker, which the successor
// opens itself (its BGP sessions start afresh: no graceful restart yet).
func (s handoverSource) Release() {
	d := s.d
	d.stopBGP()
	if d.api != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		d.api.Shutdown(ctx)
		cancel()
		d.api = nil
	}
	d.takeoverLn.Close()
	if ing := d.ing; ing != nil {
		// The successor binds the same addresses: listeners close first, in-flight requests
		// finish within ingress.drain_timeout (retire waits).
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

// startIngressListeners starts ing; while taking over, an address still held by the
// predecessor is retried until ingressBindWait.
func (d *daemon) startIngressListeners(ing *ingress.Server) error {
	deadline := time.Now().Add(ingressBindWait)
	for {
		err := ing.Start()
		if err == nil || !d.takingOver || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
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
