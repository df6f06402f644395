package config

import (
	"path/filepath"
	"slices"
	"testing"

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
