package flowsync

import (
	"errors"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// stats are the node's counters.
type stats struct {
	txDatagrams, txRecords, sendErrors, queueDrops, dumps               atomic.Uint64
	rxDatagrams, rxRecords, recvErrors                                  atomic.Uint64
	installed, updated, deleted, conflicts, rejected, peerLimit         atomic.Uint64
	dropLength, dropMagic, dropMAC, dropRecord, dropReplay, dropUnknown atomic.Uint64
	dropRate                                                            atomic.Uint64
}

// drop counts a refused datagram by its reason.
func (s *stats) drop(why error) {
	switch {
	case errors.Is(why, ErrLength):
		s.dropLength.Add(1)
	case errors.Is(why, ErrMagic):
		s.dropMagic.Add(1)
	case errors.Is(why, ErrMAC):
		s.dropMAC.Add(1)
	case errors.Is(why, ErrRecord):
		s.dropRecord.Add(1)
	case errors.Is(why, ErrReplay):
		s.dropReplay.Add(1)
	case errors.Is(why, errRate):
		s.dropRate.Add(1)
	default:
		s.dropUnknown.Add(1)
	}
}

// Stats is a snapshot of the counters.
type Stats struct {
	TxDatagrams, TxRecords, SendErrors, QueueDrops, Dumps uint64
	RxDatagrams, RxRecords, RecvErrors                    uint64
	// Received records: installed as new flows, updated in place, deleted, refused because
	// another flow holds a tuple (Conflicts), refused for an unknown service or origin
	// (Rejected) or over the peer's share of the table (PeerLimit).
	Installed, Updated, Deleted, Conflicts, Rejected, PeerLimit uint64
	// Dropped datagrams by reason.
	Drops map[string]uint64
}

// DropReasons are the labels of Stats.Drops (and of edgegate_flowsync_dropped_total).
var DropReasons = []string{"length", "magic", "auth", "malformed", "replay", "unknown_peer", "rate"}

// Stats reads the counters.
func (n *Node) Stats() Stats {
	s := &n.stats
	drops := []uint64{s.dropLength.Load(), s.dropMagic.Load(), s.dropMAC.Load(), s.dropRecord.Load(),
		s.dropReplay.Load(), s.dropUnknown.Load(), s.dropRate.Load()}
	st := Stats{
		TxDatagrams: s.txDatagrams.Load(), TxRecords: s.txRecords.Load(), SendErrors: s.sendErrors.Load(),
		QueueDrops: s.queueDrops.Load(), Dumps: s.dumps.Load(),
		RxDatagrams: s.rxDatagrams.Load(), RxRecords: s.rxRecords.Load(), RecvErrors: s.recvErrors.Load(),
		Installed: s.installed.Load(), Updated: s.updated.Load(), Deleted: s.deleted.Load(),
		Conflicts: s.conflicts.Load(), Rejected: s.rejected.Load(), PeerLimit: s.peerLimit.Load(),
		Drops: make(map[string]uint64, len(DropReasons)),
	}
	for i, r := range DropReasons {
		st.Drops[r] = drops[i]
	}
	return st
}

var (
	txDesc      = prometheus.NewDesc("edgegate_flowsync_sent_datagrams_total", "Flow-sync datagrams sent to peers.", nil, nil)
	txRecDesc   = prometheus.NewDesc("edgegate_flowsync_sent_flows_total", "Flow records sent to peers (one per peer).", nil, nil)
	sendErrDesc = prometheus.NewDesc("edgegate_flowsync_send_errors_total", "Flow-sync datagrams the socket refused to send.", nil, nil)
	qDropDesc   = prometheus.NewDesc("edgegate_flowsync_queue_drops_total", "Flow events dropped because the send queue was full.", nil, nil)
	dumpDesc    = prometheus.NewDesc("edgegate_flowsync_dumps_total", "Whole flow tables sent to a peer that (re)started.", nil, nil)
	rxDesc      = prometheus.NewDesc("edgegate_flowsync_received_datagrams_total", "Flow-sync datagrams received (dropped ones included).", nil, nil)
	rxRecDesc   = prometheus.NewDesc("edgegate_flowsync_received_flows_total", "Flow records received in accepted datagrams, by outcome.", []string{"outcome"}, nil)
	dropDesc    = prometheus.NewDesc("edgegate_flowsync_dropped_total", "Flow-sync datagrams dropped, by reason.", []string{"reason"}, nil)
	peerDesc    = prometheus.NewDesc("edgegate_flowsync_peer_flows", "Flows installed from each peer (by the creating node's index).", []string{"node"}, nil)
)

// Describe implements prometheus.Collector.
func (n *Node) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{txDesc, txRecDesc, sendErrDesc, qDropDesc, dumpDesc, rxDesc, rxRecDesc, dropDesc, peerDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (n *Node) Collect(ch chan<- prometheus.Metric) {
	st := n.Stats()
	c := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	c(txDesc, st.TxDatagrams)
	c(txRecDesc, st.TxRecords)
	c(sendErrDesc, st.SendErrors)
	c(qDropDesc, st.QueueDrops)
	c(dumpDesc, st.Dumps)
	c(rxDesc, st.RxDatagrams)
	for _, o := range []struct {
		name string
		v    uint64
	}{{"installed", st.Installed}, {"updated", st.Updated}, {"deleted", st.Deleted}, {"conflict", st.Conflicts},
		{"rejected", st.Rejected}, {"peer_limit", st.PeerLimit}} {
		c(rxRecDesc, o.v, o.name)
	}
	for _, r := range DropReasons {
		c(dropDesc, st.Drops[r], r)
	}
	for i := range n.installed {
		if v := n.installed[i].Load(); v != 0 {
			ch <- prometheus.MustNewConstMetric(peerDesc, prometheus.GaugeValue, float64(v), strconv.Itoa(i))
		}
	}
}
