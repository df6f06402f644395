package config

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/edgegate/edgegate/lb"
)

// TestSchedulersMatchLB keeps the accepted scheduler names equal to what lb implements.
func TestSchedulersMatchLB(t *testing.T) {
	if !slices.Equal(Schedulers, lb.Schedulers) {
		t.Fatalf("config.Schedulers = %v, lb.Schedulers = %v", Schedulers, lb.Schedulers)
	}
	if DefaultScheduler != lb.DefaultScheduler || DefaultMaglevTableSize != lb.DefaultMaglevSize {
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
			spec := lb.Spec{Scheduler: s.Scheduler, Affinity: s.AffinityTimeout(), MaglevSize: s.MaglevTableSize}
			for _, b := range s.Backends {
				st := lb.Active
				if b.Drain {
					st = lb.Draining
				}
				spec.Backends = append(spec.Backends, lb.Backend{Addr: b.Address, Weight: b.EffectiveWeight(), State: st})
			}
			if _, err := lb.Build(spec, nil); err != nil {
				t.Errorf("%s: service %q: %v", f, s.Name, err)
			}
		}
	}
}
