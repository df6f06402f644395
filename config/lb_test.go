package config

import (
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/edgegate/edgegate/lb"
)

// TestSchedulersMatchLB keeps the accepted scheduler names equal to what lb implements.
func TestSchedulersMatchLB(t *testing.T) {
	names := make([]string, len(Schedulers))
	for i, s := range Schedulers {
		names[i] = string(s)
	}
	if !slices.Equal(names, lb.Schedulers) {
		t.Fatalf("config.Schedulers = %v, lb.Schedulers = %v", Schedulers, lb.Schedulers)
	}
	if string(DefaultScheduler) != lb.DefaultScheduler || DefaultMaglevTableSize != lb.DefaultMaglevSize {
		t.Fatal("defaults differ from lb")
	}
	if MaxWeight > lb.MaxWeight || MaxMaglevTableSize > lb.MaxMaglevSize || MaxBackends > lb.MaxBackends {
		t.Fatal("config accepts more than lb.Build does")
	}
}

// TestExamplesBuildInLB checks that what validation accepts, lb.Build accepts: every service
// of every example becomes a backend set.
func TestExamplesBuildInLB(t *testing.T) {
	files, _ := filepath.Glob("../examples/*.yaml")
	for _, f := range files {
		c, err := Load(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range c.Services {
			if _, err := lb.Build(s.LBSpec(nil), nil); err != nil {
				t.Errorf("%s: service %q: %v", f, s.Name, err)
			}
		}
	}
}

// TestLBSpec: the one config → lb.Spec conversion keeps the scheduler, Maglev size and weights,
// drains what the config drains, filters with keep, and gives client_ip affinity its timeout (the
// default for a literal Service without one, none without client_ip).
func TestLBSpec(t *testing.T) {
	a, b := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8::1")
	s := Service{Scheduler: SchedulerMaglev, MaglevTableSize: 251, SessionAffinity: AffinityClientIP,
		Backends: []Backend{{Address: a, Weight: 3}, {Address: b, Weight: 1, Drain: true}}}
	for _, tt := range []struct {
		name     string
		timeout  Duration
		affinity Affinity
		keep     func(Backend) bool
		want     lb.Spec
	}{
		{"all", Duration(time.Minute), AffinityClientIP, nil, lb.Spec{Scheduler: "maglev", MaglevSize: 251, Affinity: time.Minute,
			Backends: []lb.Backend{{Addr: a, Weight: 3, State: lb.Active}, {Addr: b, Weight: 1, State: lb.Draining}}}},
		{"ipv6 only, default timeout", 0, AffinityClientIP, func(x Backend) bool { return x.Address.Is6() },
			lb.Spec{Scheduler: "maglev", MaglevSize: 251, Affinity: DefaultAffinityTimeout.D(),
				Backends: []lb.Backend{{Addr: b, Weight: 1, State: lb.Draining}}}},
		{"no affinity", Duration(time.Minute), AffinityNone, func(x Backend) bool { return x.Address.Is4() },
			lb.Spec{Scheduler: "maglev", MaglevSize: 251, Backends: []lb.Backend{{Addr: a, Weight: 3, State: lb.Active}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s.SessionAffinityTimeout, s.SessionAffinity = tt.timeout, tt.affinity
			if got := s.LBSpec(tt.keep); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("LBSpec = %+v, want %+v", got, tt.want)
			}
		})
	}
}
