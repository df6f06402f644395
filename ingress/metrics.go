package ingress

import (
	"errors"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics holds the ingress collectors. Label children are cached per route so the request path
// does an array index and an atomic add instead of hashing label values (WithLabelValues) on every
// request. A nil *metrics (no Registerer) records nothing.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec

	mu     sync.Mutex
	routes map[string]*routeMetrics // by route name; kept across reloads
}

// routeMetrics are the cached children of one route label value.
type routeMetrics struct {
	parent *metrics
	name   string
	codes  [600]atomic.Pointer[codeMetrics]
}

// codeMetrics are the children of one (route, code) pair.
type codeMetrics struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_http_requests_total",
			Help: "HTTP requests served by the ingress, by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "edgegate_http_request_duration_seconds",
			Help:    "Time from request headers read to the response finished, by route and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "code"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_http_upstream_errors_total",
			Help: "Failed upstream attempts by route and reason (connect, timeout, status_5xx, no_backend, ...).",
		}, []string{"route", "reason"}),
		routes: map[string]*routeMetrics{},
	}
	// An ingress started again in the same process (a reload that removed and re-added it, or
	// retried a failed start) counts on in the collectors registered the first time.
	if err := register(reg, &m.requests); err != nil {
		return nil, err
	}
	if err := register(reg, &m.duration); err != nil {
		return nil, err
	}
	if err := register(reg, &m.errors); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers *c, or points *c at the collector of the same description already
// registered.
func register[C prometheus.Collector](reg prometheus.Registerer, c *C) error {
	err := reg.Register(*c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			*c = existing
			return nil
		}
	}
	return err
}

// route returns the cached children for a route name (nil when metrics are off).
func (m *metrics) route(name string) *routeMetrics {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.routes[name]; ok {
		return r
	}
	r := &routeMetrics{parent: m, name: name}
	m.routes[name] = r
	return r
}

func (r *routeMetrics) observe(code int, seconds float64) {
	if r == nil {
		return
	}
	if code < 0 || code >= len(r.codes) {
		r.parent.requests.WithLabelValues(r.name, strconv.Itoa(code)).Inc()
		r.parent.duration.WithLabelValues(r.name, strconv.Itoa(code)).Observe(seconds)
		return
	}
	c := r.codes[code].Load()
	if c == nil {
		label := strconv.Itoa(code)
		c = &codeMetrics{requests: r.parent.requests.WithLabelValues(r.name, label), duration: r.parent.duration.WithLabelValues(r.name, label)}
		r.codes[code].Store(c)
	}
	c.requests.Inc()
	c.duration.Observe(seconds)
}

func (r *routeMetrics) upstreamError(reason string) {
	if r == nil {
		return
	}
	r.parent.errors.WithLabelValues(r.name, reason).Inc()
}
