// Package admin is edgegate's operations surface: a Prometheus collector that reads the data
// path's counters at scrape time, and the HTTP API with a client for the CLI: /metrics, /healthz
// and /readyz on a TCP listener (loopback by default), those and /config, /conntrack, /status,
// /capture and pprof on a Unix socket only root (or one group) can use.
package admin

import (
	"net/netip"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/gateway"
	"github.com/edgegate/edgegate/nat"
)

// Source is what the admin side reads from a running data path; *gateway.Gateway implements it.
// It is an interface so the collector and API can be tested without a TUN.
type Source interface {
	Counters() gateway.Snapshot
	Table() *conntrack.Table
	Rules() *nat.Rules // nil before the data path started
	Config() *config.Config
	Ready() bool
	ServiceName(id uint32) string
	EndedFlows(fn func(service uint32, backend netip.Addr, n uint64))
	SetTap(t gateway.Tap)
}

// Health is the view of health-check results the API and status report; nil means no checks.
type Health interface {
	// Status reports whether backend of service is checked and, if so, whether it is healthy.
	Status(service string, backend netip.Addr) (checked, healthy bool)
}

var _ Source = (*gateway.Gateway)(nil)
