package ingress

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/lb"
)

// ActiveUpstreams is optionally implemented by an Upstreams whose backends count work in flight
// (least_conn and two_choices read the counts): PickActive also returns the chosen backend's
// counter, which the proxy increments for the duration of the request. The gateway's live
// balancing state should implement it so L7 requests weigh in on the shared counts.
type ActiveUpstreams interface {
	Upstreams
	PickActive(service string, port uint16, client netip.Addr) (netip.AddrPort, *atomic.Int64, bool)
}

type svcPort struct {
	service string
	port    uint16
}

// staticUpstreams resolves service ports with one lb.Set per service built from the config.
type staticUpstreams struct {
	sets map[svcPort]staticTarget
}

type staticTarget struct {
	set      *lb.Set
	target   uint16 // port dialled on the backend
	affinity bool   // the set needs the time (client affinity expiry)
}

// StaticUpstreams builds Upstreams from a parsed cfg.Services with lb.Build of each service's
// config.Service.LBSpec (the port's target_port is dialled), for tests and the gateway's first version: no health checks, so every
// configured backend that is not draining and has weight > 0 is eligible. It implements
// ActiveUpstreams.
func StaticUpstreams(cfg *config.Config) (Upstreams, error) {
	u := &staticUpstreams{sets: map[svcPort]staticTarget{}}
	for i := range cfg.Services {
		svc := &cfg.Services[i]
		spec := svc.LBSpec(nil)
		set, err := lb.Build(spec, nil)
		if err != nil {
			return nil, fmt.Errorf("ingress: service %q: %w", svc.Name, err)
		}
		for _, p := range svc.Ports {
			if p.IsUDP() {
				continue
			}
			u.sets[svcPort{svc.Name, p.Port}] = staticTarget{set: set, target: p.TargetPort, affinity: spec.Affinity > 0}
		}
	}
	return u, nil
}

func (u *staticUpstreams) Pick(service string, port uint16, client netip.Addr) (netip.AddrPort, bool) {
	a, _, ok := u.PickActive(service, port, client)
	return a, ok
}

// PickActive picks with a random flow hash: at L7 every request is a new "flow", so maglev and
// the random schedulers spread requests; source_hash and client_ip affinity still key on client.
func (u *staticUpstreams) PickActive(service string, port uint16, client netip.Addr) (netip.AddrPort, *atomic.Int64, bool) {
	t, ok := u.sets[svcPort{service, port}]
	if !ok {
		return netip.AddrPort{}, nil, false
	}
	var now int64
	if t.affinity {
		now = time.Now().UnixNano()
	}
	b, ok := t.set.Pick(client, rand.Uint64(), now)
	if !ok {
		return netip.AddrPort{}, nil, false
	}
	return netip.AddrPortFrom(b.Addr, t.target), b.Active, true
}
