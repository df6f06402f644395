// Package health probes the backends of services that configure a health_check (TCP connect or
// HTTP GET) from the gateway's own network namespace, and reports state changes so the gateway
// rebuilds its rules without unhealthy backends. A backend starts healthy (traffic flows at once;
// a dead one is removed after unhealthy_threshold failed probes) and needs healthy_threshold
// successes in a row to come back.
package health

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgegate/edgegate/config"
)

// Key names a checked backend of a service.
type Key struct {
	Service string
	Backend netip.Addr
}

// Checker runs one prober goroutine per checked backend.
type Checker struct {
	log      *slog.Logger
	onChange func() // called after a backend's health flipped (from prober goroutines)

	mu      sync.Mutex // serialises Update and Close
	probers atomic.Pointer[map[Key]*prober]
	// seeded are backends a predecessor found unhealthy (Seed), until Update starts their
	// probers with that verdict.
	seeded atomic.Pointer[map[Key]bool]
	wg     sync.WaitGroup
	closed bool

	healthyDesc, checksDesc, changesDesc *prometheus.Desc
}

// New returns a checker; onChange (may be nil) is called after every health flip, e.g. to
// rebuild the gateway's rules (gateway.SetHealth(c.Healthy)).
func New(log *slog.Logger, onChange func()) *Checker {
	if log == nil {
		log = slog.Default()
	}
	c := &Checker{
		log:         log,
		onChange:    onChange,
		healthyDesc: prometheus.NewDesc("edgegate_backend_healthy", "1 if the backend passes its service's health check, 0 if not (only checked backends).", []string{"service", "backend"}, nil),
		checksDesc:  prometheus.NewDesc("edgegate_health_checks_total", "Health probes by result (success, failure).", []string{"service", "backend", "result"}, nil),
		changesDesc: prometheus.NewDesc("edgegate_health_transitions_total", "Times the backend changed between healthy and unhealthy.", []string{"service", "backend"}, nil),
	}
	empty := map[Key]*prober{}
	c.probers.Store(&empty)
	return c
}

// prober checks one backend.
type prober struct {
	key     Key
	spec    config.HealthCheck
	healthy atomic.Bool
	ok, bad atomic.Uint64 // probes by result
	flips   atomic.Uint64
	cancel  context.CancelFunc
	client  *http.Client
}

// Update starts probers for the checked backends of cfg and stops those no longer configured.
// A backend whose check is unchanged keeps its prober and state across reloads.
func (c *Checker) Update(cfg *config.Config) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	old := *c.probers.Load()
	next := map[Key]*prober{}
	for i := range cfg.Services {
		s := &cfg.Services[i]
		if s.HealthCheck == nil {
			continue
		}
		for _, b := range s.Backends {
			k := Key{s.Name, b.Address}
			if p, ok := old[k]; ok && p.spec == *s.HealthCheck {
				next[k] = p
				continue
			}
			next[k] = c.start(k, *s.HealthCheck)
		}
	}
	c.seeded.Store(nil)
	changed := false
	for k, p := range old {
		if next[k] != p {
			p.cancel()
			changed = changed || !p.healthy.Load()
		}
	}
	c.probers.Store(&next)
	if changed && c.onChange != nil {
		go c.onChange() // a removed unhealthy prober: rebuild without the stale verdict
	}
}

func (c *Checker) start(k Key, spec config.HealthCheck) *prober {
	ctx, cancel := context.WithCancel(context.Background())
	p := &prober{key: k, spec: spec, cancel: cancel}
	sd := c.seeded.Load()
	p.healthy.Store(sd == nil || !(*sd)[k])
	if spec.Type == config.HealthHTTP {
		p.client = &http.Client{
			Timeout: time.Duration(spec.Timeout),
			Transport: &http.Transport{
				DisableKeepAlives: true, // each probe tests a fresh connection, as a client would
				Proxy:             nil,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.run(ctx, p)
	}()
	return p
}

// run probes every interval and flips the state after threshold results in a row.
func (c *Checker) run(ctx context.Context, p *prober) {
	interval := time.Duration(p.spec.Interval)
	t := time.NewTicker(interval)
	defer t.Stop()
	streak := 0 // >0: successes in a row, <0: failures in a row
	for {
		err := p.probe(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			p.ok.Add(1)
			streak = max(streak, 0) + 1
		} else {
			p.bad.Add(1)
			streak = min(streak, 0) - 1
		}
		healthy := p.healthy.Load()
		switch {
		case !healthy && streak >= p.spec.HealthyThreshold:
			c.flip(p, true, nil)
		case healthy && -streak >= p.spec.UnhealthyThreshold:
			c.flip(p, false, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Checker) flip(p *prober, healthy bool, err error) {
	p.healthy.Store(healthy)
	p.flips.Add(1)
	if healthy {
		c.log.Info("backend healthy", "service", p.key.Service, "backend", p.key.Backend)
	} else {
		c.log.Warn("backend unhealthy", "service", p.key.Service, "backend", p.key.Backend, "err", err)
	}
	if c.onChange != nil {
		c.onChange()
	}
}

// probe runs one check bounded by the timeout.
func (p *prober) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(p.spec.Timeout))
	defer cancel()
	addr := net.JoinHostPort(p.key.Backend.String(), strconv.Itoa(int(p.spec.Port)))
	if p.spec.Type != config.HealthHTTP {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+p.spec.Path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "edgegate-health-check")
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != p.spec.ExpectStatus {
		return fmt.Errorf("status %d, want %d", resp.StatusCode, p.spec.ExpectStatus)
	}
	return nil
}

// Healthy is the gateway.HealthView: false only for a checked backend that failed its check (or,
// before the first Update, was seeded unhealthy).
func (c *Checker) Healthy(service string, backend netip.Addr) bool {
	k := Key{service, backend}
	p, ok := (*c.probers.Load())[k]
	if !ok {
		if sd := c.seeded.Load(); sd != nil && (*sd)[k] {
			return false
		}
		return true
	}
	return p.healthy.Load()
}

// Seed carries health verdicts over from a predecessor (hand-over upgrade): the backends listed
// are unhealthy until their checks pass HealthyThreshold times in a row, instead of starting
// healthy as after a restart. Call before the first Update, which consumes the seed for the
// backends its configuration checks.
func (c *Checker) Seed(unhealthy []Key) {
	m := make(map[Key]bool, len(unhealthy))
	for _, k := range unhealthy {
		m[k] = true
	}
	c.seeded.Store(&m)
}

// Status reports whether the backend is checked and its current verdict (admin.Health).
func (c *Checker) Status(service string, backend netip.Addr) (checked, healthy bool) {
	p, ok := (*c.probers.Load())[Key{service, backend}]
	if !ok {
		return false, false
	}
	return true, p.healthy.Load()
}

// Close stops every prober and waits for them.
func (c *Checker) Close() {
	c.mu.Lock()
	c.closed = true
	for _, p := range *c.probers.Load() {
		p.cancel()
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// Describe implements prometheus.Collector.
func (c *Checker) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.healthyDesc
	ch <- c.checksDesc
	ch <- c.changesDesc
}

// Collect implements prometheus.Collector.
func (c *Checker) Collect(ch chan<- prometheus.Metric) {
	for k, p := range *c.probers.Load() {
		b := k.Backend.String()
		h := 0.0
		if p.healthy.Load() {
			h = 1
		}
		ch <- prometheus.MustNewConstMetric(c.healthyDesc, prometheus.GaugeValue, h, k.Service, b)
		ch <- prometheus.MustNewConstMetric(c.checksDesc, prometheus.CounterValue, float64(p.ok.Load()), k.Service, b, "success")
		ch <- prometheus.MustNewConstMetric(c.checksDesc, prometheus.CounterValue, float64(p.bad.Load()), k.Service, b, "failure")
		ch <- prometheus.MustNewConstMetric(c.changesDesc, prometheus.CounterValue, float64(p.flips.Load()), k.Service, b)
	}
}
