package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/edgegate/edgegate/lb"
	"gopkg.in/yaml.v3"
)

// D returns the duration as a time.Duration, the form every consumer needs.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String prints the duration like time.Duration does ("3h0m0s").
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML accepts Go durations ("30s", "3h", "1m30s") and plain integers, taken as seconds
// (the unit most timeouts are documented in). Negative durations are refused.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("want a duration such as \"30s\" or an integer number of seconds")
	}
	s := strings.TrimSpace(n.Value)
	if n.ShortTag() == "!!int" {
		secs, err := strconv.ParseInt(s, 0, 64)
		if err != nil || secs < 0 || secs > int64(maxDuration/time.Second) {
			return fmt.Errorf("want a non-negative number of seconds, got %q", n.Value)
		}
		*d = Duration(time.Duration(secs) * time.Second)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as \"30s\" or an integer number of seconds, got %q", n.Value)
	}
	if v < 0 {
		return fmt.Errorf("duration must not be negative, got %q", n.Value)
	}
	*d = Duration(v)
	return nil
}

const maxDuration = time.Duration(1<<63 - 1)

// MarshalYAML writes the Go duration form so Effective() output parses back to the same value.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// String prints "lo-hi".
func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.Lo, r.Hi) }

// Size is the number of ports in the range (0 for the zero value).
func (r PortRange) Size() int {
	if r.Lo == 0 || r.Hi < r.Lo {
		return 0
	}
	return int(r.Hi) - int(r.Lo) + 1
}

// Contains says whether port p lies in the range.
func (r PortRange) Contains(p uint16) bool { return p >= r.Lo && p <= r.Hi && r.Lo != 0 }

// UnmarshalYAML reads "lo-hi" with 1 <= lo <= hi <= 65535; a single port "p" means "p-p".
func (r *PortRange) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("want a port range such as \"1024-65535\"")
	}
	pr, err := ParsePortRange(n.Value)
	if err != nil {
		return err
	}
	*r = pr
	return nil
}

// ParsePortRange parses "lo-hi" (or a single port) as in the YAML.
func ParsePortRange(s string) (PortRange, error) {
	los, his, found := strings.Cut(strings.TrimSpace(s), "-")
	if !found {
		his = los
	}
	lo, err1 := strconv.ParseUint(strings.TrimSpace(los), 10, 16)
	hi, err2 := strconv.ParseUint(strings.TrimSpace(his), 10, 16)
	if err1 != nil || err2 != nil {
		return PortRange{}, fmt.Errorf("want a port range such as \"1024-65535\", got %q", s)
	}
	if lo == 0 || hi < lo {
		return PortRange{}, fmt.Errorf("port range %q: want 1 <= low <= high <= 65535", s)
	}
	return PortRange{Lo: uint16(lo), Hi: uint16(hi)}, nil
}

// MarshalYAML writes "lo-hi".
func (r PortRange) MarshalYAML() (any, error) { return r.String(), nil }

// Masquerade says whether the service rewrites client addresses to a masquerade address.
func (s *Service) Masquerade() bool { return s.SourceNAT != SourceNATNone }

// AffinityTimeout is the client_ip affinity timeout, or 0 when affinity is off (the form lb.Spec
// wants). A Service built as a literal (tests) with client_ip and no timeout gets the default.
func (s *Service) AffinityTimeout() time.Duration {
	switch {
	case s.SessionAffinity != AffinityClientIP:
		return 0
	case s.SessionAffinityTimeout <= 0:
		return DefaultAffinityTimeout.D()
	}
	return s.SessionAffinityTimeout.D()
}

// RefuseWhenEmpty says whether the service refuses new flows while no backend is healthy
// (all_unhealthy: refuse) rather than using them all (fail_open, the default).
func (s *Service) RefuseWhenEmpty() bool {
	return s.HealthCheck != nil && s.HealthCheck.AllUnhealthy == AllUnhealthyRefuse
}

// IsUDP says whether the port is a UDP port (else TCP, the default protocol).
func (p ServicePort) IsUDP() bool { return p.Protocol == ProtocolUDP }

// LBSpec is the service's lb.Spec (scheduler, affinity, Maglev table size) over its backends for
// which keep is true (nil: all), each active with its weight or draining; the one conversion from
// config to lb, used by the L4 rule builder and the L7 upstreams. Callers mark unhealthy backends
// and attach active-flow counters themselves.
func (s *Service) LBSpec(keep func(Backend) bool) lb.Spec {
	spec := lb.Spec{Scheduler: string(s.Scheduler), Affinity: s.AffinityTimeout(), MaglevSize: s.MaglevTableSize}
	for _, b := range s.Backends {
		if keep != nil && !keep(b) {
			continue
		}
		st := lb.Active
		if b.Drain {
			st = lb.Draining
		}
		spec.Backends = append(spec.Backends, lb.Backend{Addr: b.Address, Weight: b.Weight, State: st})
	}
	return spec
}

// Enabled says whether the admin TCP listener runs ("off" disables it).
func (a Admin) Enabled() bool { return a.Listen != AdminOff }

// SocketEnabled says whether the admin Unix socket is served ("off" disables it).
func (a Admin) SocketEnabled() bool { return a.Socket != AdminOff }
