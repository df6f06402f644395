package e2e

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Case 11: a bad configuration makes `validate` and `run` exit non-zero with file:line:col
// messages, and `run` changes nothing (no TUN, no routes, no rules).
func TestBadConfig(t *testing.T) {
	tp := &topo{t: t, dir: t.TempDir()}
	for _, tc := range []struct {
		name, yaml string
		want       *regexp.Regexp
	}{
		{"unknown key", "tun: {name: edge0, mtuu: 1500}\nservices: []\n", regexp.MustCompile(`bad-unknown-key\.yaml:1:\d+: .*mtuu`)},
		{"bad scheduler", `
nat: {masquerade_addresses: [198.18.250.1]}
services:
  - name: web
    addresses: [198.18.200.10]
    ports: [{port: 80}]
    scheduler: fastest
    backends: [{address: 198.19.1.2}]
`, regexp.MustCompile(`bad-bad-scheduler\.yaml:7:\d+: .*fastest`)},
		{"port out of range", `
nat: {masquerade_addresses: [198.18.250.1]}
services:
  - name: web
    addresses: [198.18.200.10]
    ports: [{port: 70000}]
    backends: [{address: 198.19.1.2}]
`, regexp.MustCompile(`bad-port-out-of-range\.yaml:6:\d+: `)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tp.writeConfig("bad-"+strings.ReplaceAll(tc.name, " ", "-")+".yaml", tc.yaml)
			out, err := exec.Command(edgegateBin, "validate", "-c", path).CombinedOutput()
			if err == nil {
				t.Fatalf("validate accepted a bad file:\n%s", out)
			}
			if !tc.want.Match(out) {
				t.Errorf("validate output does not name the problem's file:line:col (%s):\n%s", tc.want, out)
			}
		})
	}
	// run in a namespace: exits non-zero, names the line, leaves no TUN and no routes behind.
	ns := newTopoGatewayOnly(t)
	path := tp.writeConfig("bad-run.yaml", "tun: {name: edge0, queues: 0}\nservices: [{name: x}]\n")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := ns.gw.Command(ctx, edgegateBin, "run", "-c", path).CombinedOutput()
	if err == nil {
		t.Fatalf("run accepted a bad file:\n%s", out)
	}
	if !regexp.MustCompile(`bad-run\.yaml:\d+:\d+: `).Match(out) {
		t.Errorf("run output does not name file:line:col:\n%s", out)
	}
	if links, _ := ns.gw.Exec("ip", "-o", "link"); strings.Contains(links, "edge0") {
		t.Errorf("run with a bad file created the TUN:\n%s", links)
	}
	if routes, _ := ns.gw.Exec("ip", "route", "show", "proto", "201"); strings.TrimSpace(routes) != "" {
		t.Errorf("run with a bad file added routes:\n%s", routes)
	}
}
