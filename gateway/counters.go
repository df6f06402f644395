package gateway

import (
	"sync/atomic"

	"github.com/edgegate/edgegate/gateway/tun"
	"github.com/edgegate/edgegate/nat"
	"github.com/edgegate/edgegate/packet"
)

// counter is written by exactly one worker and read by scrapes: a plain load+store keeps the
// packet path free of locked instructions while the race detector still sees atomic accesses.
type counter struct{ v atomic.Uint64 }

func (c *counter) add(n uint64) { c.v.Store(c.v.Load() + n) }

// Load returns the current value.
func (c *counter) Load() uint64 { return c.v.Load() }

// Counters are one worker's packet statistics. Summed over workers at scrape time.
type Counters struct {
	RxPackets, RxBytes counter // read from the TUN
	TxPackets, TxBytes counter // written back to the TUN
	Forwarded          counter // translated and written
	Local              counter // answered by the gateway (echo to a service address)
	WriteErrors        counter // packets the kernel refused on write
	Coalesced          counter // UDP datagrams written inside a super-packet
	SYNProxy           SYNProxyCounters
	Malformed          [packet.NumReasons]counter
	Dropped            [nat.NumReasons]counter
	_                  [64]byte // keep workers' counters on separate cache lines
}

// SYNProxyCounters count the SYN proxy's work (invalid cookie ACKs are drops: invalid_cookie).
type SYNProxyCounters struct {
	Cookies   counter // SYNs answered with a cookie SYN-ACK
	ValidACKs counter // cookie ACKs that checked and opened a backend connection
	Resent    counter // SYNs re-sent to a backend that had not answered
	Spliced   counter // proxied handshakes completed with the backend
}

// SYNProxySnapshot is SYNProxyCounters summed over workers.
type SYNProxySnapshot struct{ Cookies, ValidACKs, Resent, Spliced uint64 }

// count adds a packet the proxy built to its counter.
func (c *SYNProxyCounters) count(v nat.Verdict) {
	switch v {
	case nat.Cookie:
		c.Cookies.add(1)
	case nat.ProxyOpen:
		c.ValidACKs.add(1)
	case nat.ProxyResend:
		c.Resent.add(1)
	case nat.ProxySplice:
		c.Spliced.add(1)
	}
}

// Snapshot is a plain copy of Counters summed over workers.
type Snapshot struct {
	RxPackets, RxBytes, TxPackets, TxBytes, Forwarded, Local, WriteErrors, Coalesced uint64
	SYNProxy                                                                         SYNProxySnapshot
	// RingDrops: packets the kernel dropped because a TUN queue's ring was full (with steering,
	// the new-flow queue's under a SYN flood). Read from the device at snapshot time.
	RingDrops uint64
	// SYNFilter: the SYN prefilter's verdicts (zero without it). Its drops are also in RingDrops
	// (the device counts both as tx_dropped).
	SYNFilter tun.SYNFilterStats
	Malformed [packet.NumReasons]uint64
	Dropped   [nat.NumReasons]uint64
}

func (s *Snapshot) add(c *Counters) {
	s.RxPackets += c.RxPackets.Load()
	s.RxBytes += c.RxBytes.Load()
	s.TxPackets += c.TxPackets.Load()
	s.TxBytes += c.TxBytes.Load()
	s.Forwarded += c.Forwarded.Load()
	s.Local += c.Local.Load()
	s.WriteErrors += c.WriteErrors.Load()
	s.Coalesced += c.Coalesced.Load()
	s.SYNProxy.Cookies += c.SYNProxy.Cookies.Load()
	s.SYNProxy.ValidACKs += c.SYNProxy.ValidACKs.Load()
	s.SYNProxy.Resent += c.SYNProxy.Resent.Load()
	s.SYNProxy.Spliced += c.SYNProxy.Spliced.Load()
	for i := range c.Malformed {
		s.Malformed[i] += c.Malformed[i].Load()
	}
	for i := range c.Dropped {
		s.Dropped[i] += c.Dropped[i].Load()
	}
}
