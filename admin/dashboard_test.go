package admin

import (
	"encoding/json"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/health"
	"github.com/edgegate/edgegate/ingress"
)

type noUpstreams struct{}

func (noUpstreams) Pick(string, uint16, netip.Addr) (netip.AddrPort, bool) {
	return netip.AddrPort{}, false
}

// TestDashboardMetrics: every edgegate_ metric the shipped Grafana dashboard queries exists in
// the registry edgegate run serves (data path, health checks, ingress).
func TestDashboardMetrics(t *testing.T) {
	src := newFakeSource(t)
	src.open(t, 40000)
	reg := NewRegistry(NewCollector(src), "test")
	hc := health.New(nil, nil)
	defer hc.Close()
	hc.Update(src.cfg)
	reg.MustRegister(hc)
	cfg, err := config.Parse([]byte(`
nat: {masquerade_addresses: [203.0.113.1]}
services:
  - name: web
    addresses: [192.0.2.10]
    ports: [{port: 80, target_port: 8080}]
    backends: [{address: 198.51.100.1}]
    health_check: {type: tcp}
ingress:
  listeners: [{name: plain, address: "127.0.0.1:18080"}]
  routes: [{name: web, rules: [{backends: [{service: web, port: 80}]}]}]
`), "dash.yaml")
	if err != nil {
		t.Fatal(err)
	}
	hc.Update(cfg)
	if _, err := ingress.New(cfg, noUpstreams{}, ingress.Options{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range fams {
		have[f.GetName()] = true
	}
	// Vectors without children are not gathered: the ingress's (no request served here) are
	// taken from the names its source declares.
	src2, err := os.ReadFile("../ingress/metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`Name:\s+"(edgegate_http_[a-z_]+)"`).FindAllStringSubmatch(string(src2), -1) {
		have[m[1]] = true
	}
	b, err := os.ReadFile("../examples/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	re := regexp.MustCompile(`\b(edgegate|process|go)_[a-z_]+`)
	queried := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range re.FindAllString(tg.Expr, -1) {
				queried++
				name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
				if !have[name] && !have[m] {
					t.Errorf("panel %q queries %s, which edgegate does not export", p.Title, m)
				}
			}
		}
	}
	if queried < 20 {
		t.Errorf("only %d metric references found in the dashboard", queried)
	}
}
