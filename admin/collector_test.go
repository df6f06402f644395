package admin

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/nat"
	"github.com/edgegate/edgegate/packet"
)

// value finds the sample of name whose labels include want (summed over matches).
func value(t *testing.T, fams []*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	t.Helper()
	sum, found := 0.0, false
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for k, v := range want {
				ok := false
				for _, l := range m.GetLabel() {
					if l.GetName() == k && l.GetValue() == v {
						ok = true
					}
				}
				if !ok {
					continue metrics
				}
			}
			found = true
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum, found
}

func TestCollector(t *testing.T) {
	src := newFakeSource(t)
	for i := range 4 {
		src.open(t, uint16(40000+i))
	}
	src.snap.RxPackets, src.snap.RxBytes, src.snap.TxPackets, src.snap.TxBytes = 10, 1000, 7, 700
	src.snap.Forwarded, src.snap.Local = 6, 1
	src.snap.Dropped[nat.NoBackend] = 2
	src.snap.Malformed[packet.ErrTruncatedL4] = 1
	// One flow ends: selections stay, active drops.
	var victim *conntrack.Entry
	src.ct.Range(func(e *conntrack.Entry) bool { victim = e; return false })
	if !src.ct.Delete(victim) {
		t.Fatal("delete failed")
	}
	c := NewCollector(src)
	c.RecordReload(nil)
	c.RecordReload(errors.New("bad file"))
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"edgegate_packets_total", map[string]string{"direction": "rx"}, 10},
		{"edgegate_bytes_total", map[string]string{"direction": "tx"}, 700},
		{"edgegate_packet_verdicts_total", map[string]string{"verdict": "dropped"}, 3},
		{"edgegate_packet_verdicts_total", map[string]string{"verdict": "forwarded"}, 6},
		{"edgegate_drops_total", map[string]string{"reason": "no_backend"}, 2},
		{"edgegate_drops_total", map[string]string{"reason": "malformed", "detail": "truncated_l4"}, 1},
		{"edgegate_drops_total", map[string]string{"reason": "table_full"}, 0},
		{"edgegate_conntrack_entries", map[string]string{"protocol": "tcp", "state": "syn_sent"}, 3},
		{"edgegate_conntrack_flows_created_total", nil, 4},
		{"edgegate_conntrack_flows_removed_total", map[string]string{"cause": "deleted"}, 1},
		{"edgegate_conntrack_max_entries", nil, 1024},
		{"edgegate_backend_active_flows", map[string]string{"service": "web"}, 3},
		{"edgegate_backend_selections_total", map[string]string{"service": "web"}, 4},
		{"edgegate_backend_selections_total", map[string]string{"backend": "198.51.100.1"}, 2},
		{"edgegate_backend_state", map[string]string{"backend": "198.51.100.2", "state": "active"}, 1},
		{"edgegate_backend_state", map[string]string{"backend": "198.51.100.2", "state": "unhealthy"}, 0},
		{"edgegate_service_eligible_backends", map[string]string{"service": "web", "family": "ipv4"}, 2},
		{"edgegate_snat_ports_in_use", map[string]string{"address": "203.0.113.1", "protocol": "tcp"}, 3},
		{"edgegate_snat_ports_capacity", nil, 10000},
		{"edgegate_config_reloads_total", map[string]string{"result": "success"}, 1},
		{"edgegate_config_reloads_total", map[string]string{"result": "failure"}, 1},
		{"edgegate_config_last_reload_successful", nil, 0},
		{"edgegate_ready", nil, 1},
	}
	for _, tc := range tests {
		got, ok := value(t, fams, tc.name, tc.labels)
		if !ok || got != tc.want {
			t.Errorf("%s%v = %v (found %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
}

// TestMetricNames runs the Prometheus linter over the full registry (naming, units, help).
func TestMetricNames(t *testing.T) {
	src := newFakeSource(t)
	src.open(t, 40000)
	reg := NewRegistry(NewCollector(src), "test")
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(fams).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "edgegate_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}
