package admin

import (
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/lb"
	"github.com/edgegate/edgegate/nat"
	"github.com/edgegate/edgegate/packet"
)

// Collector exports the data path's state. Everything is read at scrape time: the workers'
// plain per-worker counters (summed by Gateway.Counters), the flow table's counters and a walk of
// its entries, and the lb sets of the running rules. The packet path does nothing for it.
type Collector struct {
	src Source

	reloadOK, reloadFail atomic.Uint64
	lastReloadOK         atomic.Int64 // unix ns of the last successful (re)load
	lastReloadFailed     atomic.Bool

	packets, bytes, verdicts, writeErrors, drops, coalesced         *prometheus.Desc
	ctEntries, ctMax, ctCreated, ctRemoved, ctInsertFail, ctInvalid *prometheus.Desc
	ctInvalidWindow                                                 *prometheus.Desc
	selections, active, backendState, eligible                      *prometheus.Desc
	snatUsed, snatCapacity                                          *prometheus.Desc
	reloads, reloadTS, reloadLastOK, ready                          *prometheus.Desc
	spCookies, spACKs, spResends, spFlows, ringDrops                *prometheus.Desc
	synFilter                                                       *prometheus.Desc
}

// NewCollector returns a collector over src. The configuration load at start counts as the first
// successful load for the reload timestamp.
func NewCollector(src Source) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("edgegate_"+name, help, labels, nil)
	}
	c := &Collector{
		src:          src,
		packets:      d("packets_total", "Packets read from (rx) and written to (tx) the TUN.", "direction"),
		bytes:        d("bytes_total", "IP bytes read from (rx) and written to (tx) the TUN.", "direction"),
		verdicts:     d("packet_verdicts_total", "Packets read from the TUN by outcome: forwarded (translated), local (answered by the gateway), dropped.", "verdict"),
		writeErrors:  d("write_errors_total", "Packets the kernel refused when written back to the TUN."),
		coalesced:    d("udp_coalesced_total", "UDP datagrams written as part of a UDP super-packet (the kernel segments it after the TUN)."),
		drops:        d("drops_total", "Dropped packets by reason class and detail (malformed/unsupported come from the parser, the rest from translation).", "reason", "detail"),
		ctEntries:    d("conntrack_entries", "Current flow table entries by protocol and state (expired ones not yet swept included).", "protocol", "state"),
		ctMax:        d("conntrack_max_entries", "Flow table bound (conntrack.max_entries)."),
		ctCreated:    d("conntrack_flows_created_total", "Flows inserted into the table."),
		ctRemoved:    d("conntrack_flows_removed_total", "Flows removed by cause: expired, deleted (API, reload, drain), early_drop (evicted to make room).", "cause"),
		ctInsertFail: d("conntrack_insert_failures_total", "Flow inserts refused by cause: table_full, insert_race, reply_taken.", "cause"),
		ctInvalid:    d("conntrack_invalid_total", "Packets that fit no state of their flow (conntrack INVALID)."),
		ctInvalidWindow: d("conntrack_invalid_window_total",
			"TCP segments outside their flow's sequence window: RSTs are dropped (drops_total reason invalid_window), other segments forwarded."),
		selections:   d("backend_selections_total", "New flows sent to a backend (live plus ended flows of the backend).", "service", "backend"),
		active:       d("backend_active_flows", "Live flows of a backend.", "service", "backend"),
		backendState: d("backend_state", "1 for the backend's current scheduling state (active, draining, unhealthy).", "service", "backend", "state"),
		eligible:     d("service_eligible_backends", "Backends that may receive new flows, by service and address family.", "service", "family"),
		snatUsed:     d("snat_ports_in_use", "Source ports in use per masquerade/egress pool address and protocol.", "address", "protocol"),
		snatCapacity: d("snat_ports_capacity", "Source ports available per pool address and protocol (nat.port_range, this node's slice of it in a cluster)."),
		reloads:      d("config_reloads_total", "Configuration reloads by result (success, failure).", "result"),
		reloadTS:     d("config_last_reload_success_timestamp_seconds", "Unix time of the last successful configuration (re)load."),
		reloadLastOK: d("config_last_reload_successful", "1 if the last reload attempt succeeded."),
		ready:        d("ready", "1 when the TUN is up, routes are set, the configuration is loaded and the start (privilege drop included) is complete: as /readyz."),
		spCookies:    d("synproxy_syn_cookies_total", "SYNs the SYN proxy answered with a cookie SYN-ACK (no flow entry, nothing forwarded)."),
		spACKs:       d("synproxy_cookie_acks_total", "ACKs without flow checked as answers to a cookie SYN-ACK, by result: valid (a backend connection was opened), invalid (dropped, also drops_total{reason=\"invalid_cookie\"}).", "result"),
		spResends:    d("synproxy_syn_resends_total", "SYNs the SYN proxy sent a backend again because the client spoke before the backend answered."),
		spFlows:      d("synproxy_flows_total", "Connections spliced through the SYN proxy (the backend answered its SYN)."),
		ringDrops:    d("tun_ring_drops_total", "Packets the kernel dropped in front of the TUN (the device's tx_dropped): a queue's ring was full (with tun.queues >= 2 the steering program sends connection attempts to their own queue: under a SYN flood these are that new-flow queue's drops) or the SYN prefilter dropped a connection attempt."),
		synFilter:    d("synproxy_prefilter_total", "Connection attempts judged by the SYN prefilter in front of the TUN, by result: passed (within its rate), first_dropped (over the rate and not seen recently: dropped and remembered), retry_passed (a repetition of a remembered attempt), retry_dropped (repetitions over their rate).", "result"),
	}
	c.lastReloadOK.Store(time.Now().UnixNano())
	return c
}

// RecordReload counts a reload attempt; err == nil is a success.
func (c *Collector) RecordReload(err error) {
	if err != nil {
		c.reloadFail.Add(1)
		c.lastReloadFailed.Store(true)
		return
	}
	c.reloadOK.Add(1)
	c.lastReloadFailed.Store(false)
	c.lastReloadOK.Store(time.Now().UnixNano())
}

// Describe sends every descriptor.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.packets, c.bytes, c.verdicts, c.writeErrors, c.drops,
		c.ctEntries, c.ctMax, c.ctCreated, c.ctRemoved, c.ctInsertFail, c.ctInvalid, c.ctInvalidWindow,
		c.selections, c.active, c.backendState, c.eligible, c.snatUsed, c.snatCapacity,
		c.reloads, c.reloadTS, c.reloadLastOK, c.ready, c.spCookies, c.spACKs, c.spResends, c.spFlows, c.ringDrops, c.synFilter} {
		ch <- d
	}
}

// dropClass maps a parser refusal to the coarse reason of the list.
func dropClass(r packet.Reason) string {
	switch r {
	case packet.ErrUnsupportedProto, packet.ErrFragment:
		return "unsupported"
	}
	return "malformed"
}

// Collect reads everything once.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	s := c.src.Counters()
	counter(c.packets, s.RxPackets, "rx")
	counter(c.packets, s.TxPackets, "tx")
	counter(c.bytes, s.RxBytes, "rx")
	counter(c.bytes, s.TxBytes, "tx")
	var dropped uint64
	for r := packet.Reason(1); r < packet.NumReasons; r++ {
		dropped += s.Malformed[r]
		counter(c.drops, s.Malformed[r], dropClass(r), r.String())
	}
	for r := nat.Reason(1); r < nat.NumReasons; r++ {
		dropped += s.Dropped[r]
		counter(c.drops, s.Dropped[r], r.String(), r.String())
	}
	counter(c.verdicts, s.Forwarded, "forwarded")
	counter(c.verdicts, s.Local, "local")
	counter(c.verdicts, dropped, "dropped")
	counter(c.writeErrors, s.WriteErrors)
	counter(c.coalesced, s.Coalesced)
	counter(c.spCookies, s.SYNProxy.Cookies)
	counter(c.spACKs, s.SYNProxy.ValidACKs, "valid")
	counter(c.spACKs, s.Dropped[nat.BadCookie], "invalid")
	counter(c.spResends, s.SYNProxy.Resent)
	counter(c.spFlows, s.SYNProxy.Spliced)
	counter(c.ringDrops, s.RingDrops)
	counter(c.synFilter, s.SYNFilter.Passed, "passed")
	counter(c.synFilter, s.SYNFilter.FirstDropped, "first_dropped")
	counter(c.synFilter, s.SYNFilter.RetryPassed, "retry_passed")
	counter(c.synFilter, s.SYNFilter.RetryDropped, "retry_dropped")

	ct := c.src.Table()
	st := ct.Stats()
	gauge(c.ctMax, float64(ct.Cap()))
	counter(c.ctCreated, st.Inserted)
	counter(c.ctRemoved, st.Expired, "expired")
	counter(c.ctRemoved, st.Deleted, "deleted")
	counter(c.ctRemoved, st.EarlyDrops, "early_drop")
	counter(c.ctInsertFail, st.TableFull, "table_full")
	counter(c.ctInsertFail, st.InsertRaces, "insert_race")
	counter(c.ctInsertFail, st.ReplyTaken, "reply_taken")
	counter(c.ctInvalid, st.Invalid)
	counter(c.ctInvalidWindow, st.InvalidWindow)

	c.collectTable(ch, gauge)
	c.collectBackends(ch, counter, gauge)

	counter(c.reloads, c.reloadOK.Load(), "success")
	counter(c.reloads, c.reloadFail.Load(), "failure")
	gauge(c.reloadTS, float64(c.lastReloadOK.Load())/1e9)
	gauge(c.reloadLastOK, b2f(!c.lastReloadFailed.Load()))
	gauge(c.ready, b2f(c.src.Ready()))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// trackedProtos are the protocols the table tracks, each labelled with its name.
var trackedProtos = []packet.Proto{packet.ProtoTCP, packet.ProtoUDP, packet.ProtoICMP, packet.ProtoICMPv6}

// protoLabel names the protocols the table tracks ("other" for the rest).
func protoLabel(p packet.Proto) string {
	if slices.Contains(trackedProtos, p) {
		return p.String()
	}
	return "other"
}

type snatKey struct {
	addr  netip.Addr
	proto packet.Proto
}

// collectTable walks the flow table once for entries by protocol/state and SNAT port usage.
func (c *Collector) collectTable(ch chan<- prometheus.Metric, gauge func(*prometheus.Desc, float64, ...string)) {
	type psKey struct {
		proto packet.Proto
		state conntrack.State
	}
	pools := map[netip.Addr]bool{}
	if cfg := c.src.Config(); cfg != nil {
		for _, a := range cfg.NAT.MasqueradeAddresses {
			pools[a] = true
		}
		for _, e := range cfg.Egress {
			for _, a := range e.Addresses {
				pools[a] = true
			}
		}
		lo, hi := cfg.PortSlice().Lo, cfg.PortSlice().Hi // this node's part in a cluster
		if lo == 0 {
			lo, hi = 1024, 65535
		}
		gauge(c.snatCapacity, float64(int(hi)-int(lo)+1))
	}
	byState := map[psKey]int{}
	snat := map[snatKey]int{}
	for a := range pools {
		snat[snatKey{a, packet.ProtoTCP}] = 0
		snat[snatKey{a, packet.ProtoUDP}] = 0
	}
	c.src.Table().Range(func(e *conntrack.Entry) bool {
		o, r := &e.Tuple[conntrack.Original], &e.Tuple[conntrack.Reply]
		byState[psKey{o.Proto, e.State()}]++
		if r.Dst != o.Src {
			if a := r.DstAddr(); pools[a] {
				snat[snatKey{a, o.Proto}]++
			}
		}
		return true
	})
	for k, n := range byState {
		gauge(c.ctEntries, float64(n), protoLabel(k.proto), k.state.String())
	}
	for k, n := range snat {
		gauge(c.snatUsed, float64(n), k.addr.String(), protoLabel(k.proto))
	}
}

// collectBackends reports per service and backend from the running lb sets.
func (c *Collector) collectBackends(ch chan<- prometheus.Metric, counter func(*prometheus.Desc, uint64, ...string), gauge func(*prometheus.Desc, float64, ...string)) {
	rules := c.src.Rules()
	if rules == nil {
		return
	}
	ended := map[flowKey]uint64{}
	c.src.EndedFlows(func(svc uint32, b netip.Addr, n uint64) { ended[flowKey{svc, b}] = n })
	for _, svc := range rules.Services() {
		for fam, set := range map[string]*lb.Set{"ipv4": svc.Set4, "ipv6": svc.Set6} {
			if set == nil {
				continue
			}
			gauge(c.eligible, float64(set.Eligible()), svc.Name, fam)
			for _, b := range set.Backends() {
				addr := b.Addr.String()
				var act int64
				if b.Active != nil {
					act = max(0, b.Active.Load())
				}
				gauge(c.active, float64(act), svc.Name, addr)
				counter(c.selections, uint64(act)+ended[flowKey{svc.ID, b.Addr}], svc.Name, addr)
				for _, st := range []lb.State{lb.Active, lb.Draining, lb.Unhealthy} {
					gauge(c.backendState, b2f(b.State == st), svc.Name, addr, st.String())
				}
			}
		}
	}
}

type flowKey struct {
	service uint32
	backend netip.Addr
}
