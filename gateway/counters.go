package gateway

import (
	"sync/atomic"

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
	Malformed          [packet.NumReasons]counter
	Dropped            [nat.NumReasons]counter
	_                  [64]byte // keep workers' counters on separate cache lines
}

// Snapshot is a plain copy of Counters summed over workers.
type Snapshot struct {
	RxPackets, RxBytes, TxPackets, TxBytes, Forwarded, Local, WriteErrors, Coalesced uint64
	Malformed                                                                        [packet.NumReasons]uint64
	Dropped                                                                          [nat.NumReasons]uint64
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
	for i := range c.Malformed {
		s.Malformed[i] += c.Malformed[i].Load()
	}
	for i := range c.Dropped {
		s.Dropped[i] += c.Dropped[i].Load()
	}
}
