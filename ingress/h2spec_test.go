package ingress

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/edgegate/edgegate/config"
)

// h2specCases is the number of test cases of h2spec v2.2.1 (RFC 7540 and RFC 7541, generic and
// HPACK groups) the TLS listener must pass, all of them.
const h2specCases = 145

var h2specSummary = regexp.MustCompile(`(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed`)

// h2specTool finds h2spec on PATH or in GOPATH/bin (scripts/deps.sh installs it there).
func h2specTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("h2spec"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		home, _ := os.UserHomeDir()
		gopath = filepath.Join(home, "go")
	}
	if p := filepath.Join(gopath, "bin", "h2spec"); fileExists(p) {
		return p
	}
	return needTool(t, "h2spec")
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestH2Spec runs the h2spec conformance suite (RFC 7540/7541) against the TLS listener, proxying
// to a real backend: every case must pass.
func TestH2Spec(t *testing.T) {
	h2spec := h2specTool(t)
	pki := newPKI(t)
	web := startBackend(t, "web", nil)
	ing := &config.Ingress{
		Listeners: []config.Listener{{Name: "tls", Address: "127.0.0.1:0", Protocol: "https",
			TLS: []config.Certificate{pki.leaf(t, "h2spec.test", "h2spec.test")}}},
		Routes: []config.HTTPRoute{{Name: "web", Rules: []config.Rule{{Backends: []config.BackendRef{ref("web", 80, 1)}}}}},
	}
	s := startIngress(t, ing, newFixed().add("web", 80, web.addr), Options{})
	_, port, _ := net.SplitHostPort(addrOf(t, s, "tls"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, h2spec, "-h", "127.0.0.1", "-p", port, "-t", "-k", "-o", "5").CombinedOutput()
	m := h2specSummary.FindSubmatch(out)
	if m == nil {
		t.Fatalf("h2spec: no summary (%v):\n%s", err, out)
	}
	total, _ := strconv.Atoi(string(m[1]))
	passed, _ := strconv.Atoi(string(m[2]))
	if total != h2specCases || passed != h2specCases {
		t.Fatalf("h2spec: %s (want %d/%d passed):\n%s", m[0], h2specCases, h2specCases, out)
	}
	t.Logf("h2spec: %s", m[0])
}
