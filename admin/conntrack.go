package admin

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/nat"
	"github.com/edgegate/edgegate/packet"
)

// Endpoint is one side of a flow tuple in the API.
type Endpoint struct {
	Src   netip.Addr `json:"src"`
	Dst   netip.Addr `json:"dst"`
	SPort uint16     `json:"sport"`
	DPort uint16     `json:"dport"`
}

// Flow is one conntrack entry as the API and CLI show it.
type Flow struct {
	Protocol string   `json:"protocol"`
	State    string   `json:"state"`
	Timeout  int64    `json:"timeout_seconds"` // seconds until expiry when idle
	Assured  bool     `json:"assured"`
	Replied  bool     `json:"seen_reply"`
	Original Endpoint `json:"original"`
	Reply    Endpoint `json:"reply"`
	Kind     string   `json:"kind"` // service or egress
	Service  string   `json:"service,omitempty"`
	Backend  string   `json:"backend,omitempty"`
}

// FlowFilter selects flows; it is parsed from query parameters (the CLI flags use the same names):
// protocol, address, port, service, backend, state.
type FlowFilter struct {
	conntrack.Filter
	Service string // service name (resolved to its id against the running rules)
}

// Empty reports whether no field is set (a DELETE then needs all=true).
func (f *FlowFilter) Empty() bool {
	return f.Filter == (conntrack.Filter{}) && f.Service == ""
}

// ParseProtocol accepts tcp, udp, icmp, icmpv6 (or ipv6-icmp) or a protocol number.
func ParseProtocol(s string) (packet.Proto, error) {
	name := strings.ToLower(s)
	if name == "ipv6-icmp" {
		name = packet.ProtoICMPv6.String()
	}
	for _, p := range trackedProtos {
		if p.String() == name {
			return p, nil
		}
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("protocol %q: want tcp, udp, icmp, icmpv6 or a number 1-255", s)
	}
	return packet.Proto(n), nil
}

// ParseState accepts a state name as conntrack.State.String prints it (any case).
func ParseState(s string) (conntrack.State, error) {
	want := strings.ToLower(s)
	for st := conntrack.StateSynSent; st.String() != "invalid"; st++ {
		if st.String() == want {
			return st, nil
		}
	}
	return 0, fmt.Errorf("state %q: unknown", s)
}

// FilterKeys are the query parameters ParseFlowFilter understands.
var FilterKeys = []string{"protocol", "address", "port", "service", "backend", "state"}

// ParseFlowFilter reads a filter from query parameters.
func ParseFlowFilter(q url.Values) (FlowFilter, error) {
	var f FlowFilter
	var err error
	if v := q.Get("protocol"); v != "" {
		if f.Proto, err = ParseProtocol(v); err != nil {
			return f, err
		}
	}
	if v := q.Get("address"); v != "" {
		if f.Addr, err = netip.ParseAddr(v); err != nil {
			return f, fmt.Errorf("address: %w", err)
		}
		f.Addr = f.Addr.Unmap()
	}
	if v := q.Get("port"); v != "" {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil || n == 0 {
			return f, fmt.Errorf("port %q: want 1-65535", v)
		}
		f.Port = uint16(n)
	}
	if v := q.Get("backend"); v != "" {
		if f.Backend, err = netip.ParseAddr(v); err != nil {
			return f, fmt.Errorf("backend: %w", err)
		}
		f.Backend = f.Backend.Unmap()
	}
	if v := q.Get("state"); v != "" {
		if f.State, err = ParseState(v); err != nil {
			return f, err
		}
	}
	f.Service = q.Get("service")
	return f, nil
}

// Values is the inverse of ParseFlowFilter (for the client).
func (f *FlowFilter) Values() url.Values {
	q := url.Values{}
	if f.Proto != 0 {
		q.Set("protocol", strconv.Itoa(int(f.Proto)))
	}
	if f.Addr.IsValid() {
		q.Set("address", f.Addr.String())
	}
	if f.Port != 0 {
		q.Set("port", strconv.Itoa(int(f.Port)))
	}
	if f.Backend.IsValid() {
		q.Set("backend", f.Backend.String())
	}
	if f.State != conntrack.StateNone {
		q.Set("state", f.State.String())
	}
	if f.Service != "" {
		q.Set("service", f.Service)
	}
	return q
}

// resolve turns the service name into the table filter; ok=false: no such service (nothing matches).
func (f *FlowFilter) resolve(src Source) (conntrack.Filter, bool) {
	cf := f.Filter
	if f.Service == "" {
		return cf, true
	}
	r := src.Rules()
	if r == nil {
		return cf, false
	}
	for _, s := range r.Services() {
		if s.Name == f.Service {
			cf.Service, cf.MatchService = s.ID, true
			cf.Kind, cf.MatchKind = nat.KindService, true
			return cf, true
		}
	}
	return cf, false
}

func endpoint(t *conntrack.Tuple) Endpoint {
	return Endpoint{Src: t.SrcAddr(), Dst: t.DstAddr(), SPort: t.SrcPort, DPort: t.DstPort}
}

// flowOf converts an entry; now is unix ns.
func flowOf(src Source, e *conntrack.Entry, now int64) Flow {
	o, r := &e.Tuple[conntrack.Original], &e.Tuple[conntrack.Reply]
	f := Flow{
		Protocol: protoLabel(o.Proto),
		State:    e.State().String(),
		Timeout:  max(0, (e.Expires()-now)/int64(time.Second)),
		Assured:  e.Assured(),
		Replied:  e.SeenReply(),
		Original: endpoint(o),
		Reply:    endpoint(r),
	}
	switch e.Kind {
	case nat.KindService:
		f.Kind = "service"
		f.Service = src.ServiceName(e.Service)
		f.Backend = r.SrcAddr().String()
	case nat.KindEgress:
		f.Kind = "egress"
	default:
		f.Kind = strconv.Itoa(int(e.Kind))
	}
	return f
}

// StreamFlows calls fn for each live (unexpired) flow matching f, at most limit (0: all), as
// the table walk meets them, and stops at fn's first error (returned).
func StreamFlows(src Source, f FlowFilter, limit int, fn func(*Flow) error) error {
	cf, ok := f.resolve(src)
	if !ok {
		return nil
	}
	now := time.Now().UnixNano()
	n := 0
	var err error
	var fl Flow
	src.Table().Range(func(e *conntrack.Entry) bool {
		if e.Expires() <= now || !cf.Match(e) {
			return true
		}
		fl = flowOf(src, e, now)
		if err = fn(&fl); err != nil {
			return false
		}
		n++
		return limit <= 0 || n < limit
	})
	return err
}

// ListFlows returns the live (unexpired) flows matching f, at most limit (0: all).
func ListFlows(src Source, f FlowFilter, limit int) []Flow {
	out := []Flow{}
	StreamFlows(src, f, limit, func(fl *Flow) error {
		out = append(out, *fl)
		return nil
	})
	return out
}

// DeleteFlows deletes the flows matching f and returns how many.
func DeleteFlows(src Source, f FlowFilter) int {
	cf, ok := f.resolve(src)
	if !ok {
		return 0
	}
	return src.Table().DeleteMatching(cf)
}

// FormatFlow prints a flow the way `conntrack -L` does, e.g.
//
//	tcp      6 431999 ESTABLISHED src=198.18.1.2 dst=198.18.200.10 sport=40000 dport=80 src=198.19.1.2 dst=198.18.250.1 sport=8080 dport=40000 [ASSURED] service=web
func FormatFlow(f Flow) string {
	var b strings.Builder
	num, _ := ParseProtocol(f.Protocol) // "other": 0
	fmt.Fprintf(&b, "%-8s %d %d ", f.Protocol, num, f.Timeout)
	if f.Protocol == "tcp" {
		b.WriteString(strings.ToUpper(f.State))
		b.WriteByte(' ')
	}
	side := func(e Endpoint) {
		fmt.Fprintf(&b, "src=%s dst=%s ", e.Src, e.Dst)
		if strings.HasPrefix(f.Protocol, "icmp") {
			fmt.Fprintf(&b, "id=%d ", max(e.SPort, e.DPort))
		} else {
			fmt.Fprintf(&b, "sport=%d dport=%d ", e.SPort, e.DPort)
		}
	}
	side(f.Original)
	if !f.Replied {
		b.WriteString("[UNREPLIED] ")
	}
	side(f.Reply)
	if f.Assured {
		b.WriteString("[ASSURED] ")
	}
	if f.Service != "" {
		fmt.Fprintf(&b, "service=%s", f.Service)
	} else {
		fmt.Fprintf(&b, "kind=%s", f.Kind)
	}
	return b.String()
}
