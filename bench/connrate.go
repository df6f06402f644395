package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgegate/edgegate/internal/netns"
)

// connServer accepts connections and closes each at once, so the server side does the active
// close and keeps the TIME_WAIT state: client ports are free for reuse immediately, which keeps
// a long connection-rate run from running out of ephemeral ports.
type connServer struct {
	ln   net.Listener
	done chan struct{}
}

// startConnServer listens on port inside n (the socket is created on a thread in n, so it stays
// there while the accept loop runs on any thread).
func startConnServer(n *netns.NS, port int) (*connServer, error) {
	var ln net.Listener
	if err := n.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		return err
	}); err != nil {
		return nil, fmt.Errorf("connection-rate server: %w", err)
	}
	s := &connServer{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // e.g. a connection reset before accept
			}
			c.Close()
		}
	}()
	return s, nil
}

// Close stops the accept loop and waits for it.
func (s *connServer) Close() error {
	err := s.ln.Close()
	<-s.done
	return err
}

// connResult is one connection-rate run.
type connResult struct {
	Conns    int64
	Errors   int64
	Seconds  float64
	FirstErr error // the first failure, when Errors > 0
}

// connRateWorkers bounds the client's parallelism: enough to keep 2 vCPUs busy through the
// gateway, few enough that the client is not the bottleneck's cause by itself.
const connRateWorkers = 8

// runConnRate opens connections to dst from inside client for dur with connRateWorkers
// concurrent workers; each connection is connect, wait for the server's close, close. Every
// dial and read is bounded by a timeout, so a stalled gateway cannot stall the run.
func runConnRate(ctx context.Context, client *netns.NS, dst netip.AddrPort, dur time.Duration) (connResult, error) {
	var conns, errs atomic.Int64
	var firstErr error
	var once sync.Once
	start := time.Now()
	end := start.Add(dur)
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	// A failure counts only before the end: the dialer reports the context's deadline as
	// "i/o timeout" a moment before ctx.Err() is set, so ctx.Err() cannot tell them apart.
	fail := func(err error) {
		if time.Now().Before(end) {
			errs.Add(1)
			once.Do(func() { firstErr = err })
		}
	}
	var wg sync.WaitGroup
	for range connRateWorkers {
		wg.Go(func() {
			// Each worker keeps its locked thread in the client namespace for the whole run,
			// so every socket it dials is created there.
			err := client.Do(func() error {
				d := net.Dialer{Timeout: 2 * time.Second}
				buf := make([]byte, 1)
				for ctx.Err() == nil && time.Now().Before(end) {
					c, err := d.DialContext(ctx, "tcp4", dst.String())
					if err != nil {
						fail(err)
						continue
					}
					c.SetReadDeadline(time.Now().Add(2 * time.Second))
					_, err = c.Read(buf) // the server closes: io.EOF
					c.Close()
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						fail(err)
						continue
					}
					conns.Add(1)
				}
				return nil
			})
			if err != nil {
				fail(err)
			}
		})
	}
	wg.Wait()
	r := connResult{Conns: conns.Load(), Errors: errs.Load(), Seconds: time.Since(start).Seconds(), FirstErr: firstErr}
	if r.Conns == 0 {
		if firstErr == nil {
			firstErr = errors.New("no connection completed")
		}
		return r, fmt.Errorf("connection rate to %s: %w", dst, firstErr)
	}
	return r, nil
}

// waitReachable dials dst from client until a connection completes or the deadline passes; it
// is the readiness check of every target (the gateway forwards, the server listens).
func waitReachable(ctx context.Context, client *netns.NS, dst netip.AddrPort, timeout time.Duration, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		last = client.Do(func() error {
			d := net.Dialer{Timeout: 500 * time.Millisecond}
			c, err := d.DialContext(ctx, "tcp4", dst.String())
			if err != nil {
				return err
			}
			return c.Close()
		})
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not reachable within %v: %w", dst, timeout, last)
		case <-exited:
			return fmt.Errorf("gateway process exited before %s was reachable", dst)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
