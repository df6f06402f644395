package admin

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"

	"github.com/edgegate/edgegate/bgp"
	"github.com/edgegate/edgegate/lb"
)

// Status is the answer of /status: services with their backends' state, health and load.
type Status struct {
	Ready     bool            `json:"ready"`
	Version   string          `json:"version"`
	Flows     int             `json:"conntrack_entries"`
	MaxFlows  int             `json:"conntrack_max_entries"`
	Services  []ServiceStatus `json:"services"`
	ConfigSrc string          `json:"config_file"`
	BGP       *bgp.Status     `json:"bgp,omitempty"` // nil without a bgp section
}

// ServiceStatus is one service.
type ServiceStatus struct {
	Name      string          `json:"name"`
	Addresses []netip.Addr    `json:"addresses"`
	Ports     []string        `json:"ports"` // "tcp/80->8080"
	Scheduler string          `json:"scheduler"`
	Backends  []BackendStatus `json:"backends"`
}

// BackendStatus is one backend of a service.
type BackendStatus struct {
	Address     netip.Addr `json:"address"`
	Weight      int        `json:"weight"`
	State       string     `json:"state"`  // active, draining, unhealthy (what the scheduler uses)
	Health      string     `json:"health"` // healthy, unhealthy, unchecked (what the checks see)
	ActiveFlows int64      `json:"active_flows"`
}

// StatusOf builds the status from the running rules (the lb sets carry state and load).
func StatusOf(src Source, h Health, version string) Status {
	st := Status{Ready: src.Ready(), Version: version, Flows: src.Table().Len(), MaxFlows: src.Table().Cap(), Services: []ServiceStatus{}}
	if cfg := src.Config(); cfg != nil {
		st.ConfigSrc = cfg.Source
	}
	r := src.Rules()
	if r == nil {
		return st
	}
	for _, svc := range r.Services() {
		ss := ServiceStatus{Name: svc.Name, Addresses: svc.Addrs, Backends: []BackendStatus{}}
		for _, p := range svc.Ports {
			ss.Ports = append(ss.Ports, fmt.Sprintf("%s/%d->%d", protoLabel(p.Proto), p.Port, p.TargetPort))
		}
		for _, set := range [...]*lb.Set{svc.Set4, svc.Set6} {
			if set == nil {
				continue
			}
			ss.Scheduler = set.Scheduler()
			for _, b := range set.Backends() {
				bs := BackendStatus{Address: b.Addr, Weight: b.Weight, State: b.State.String(), Health: "unchecked"}
				if b.Active != nil {
					bs.ActiveFlows = max(0, b.Active.Load())
				}
				if h != nil {
					if checked, ok := h.Status(svc.Name, b.Addr); checked {
						bs.Health = map[bool]string{true: "healthy", false: "unhealthy"}[ok]
					}
				}
				ss.Backends = append(ss.Backends, bs)
			}
		}
		st.Services = append(st.Services, ss)
	}
	return st
}

// FormatStatus prints the status as aligned text for the CLI.
func FormatStatus(w io.Writer, st Status) error {
	ready := "ready"
	if !st.Ready {
		ready = "NOT READY"
	}
	fmt.Fprintf(w, "edgegate %s: %s, %d/%d flows, config %s\n\n", st.Version, ready, st.Flows, st.MaxFlows, st.ConfigSrc)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tADDRESSES\tPORTS\tSCHEDULER\tBACKEND\tWEIGHT\tSTATE\tHEALTH\tACTIVE")
	for _, s := range st.Services {
		addrs := make([]string, len(s.Addresses))
		for i, a := range s.Addresses {
			addrs[i] = a.String()
		}
		first := fmt.Sprintf("%s\t%s\t%s\t%s", s.Name, strings.Join(addrs, ","), strings.Join(s.Ports, ","), s.Scheduler)
		if len(s.Backends) == 0 {
			fmt.Fprintf(tw, "%s\t-\t\t\t\t\n", first)
		}
		for i, b := range s.Backends {
			if i > 0 {
				first = "\t\t\t"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\n", first, b.Address, b.Weight, b.State, b.Health, b.ActiveFlows)
		}
	}
	if err := tw.Flush(); err != nil || st.BGP == nil {
		return err
	}
	return bgp.FormatStatus(w, *st.BGP)
}
