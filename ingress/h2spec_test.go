package ingress

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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

// TestH2Spec runs the h2spec conformance suite (RFC 7540/7541) against the TLS listener and
// against a plain listener (h2c with prior knowledge), proxying to a real backend: every case
// must pass on both.
func TestH2Spec(t *testing.T) {
	h2spec := h2specTool(t)
	pki := newPKI(t)
	web := startBackend(t, "web", nil)
	ing := &config.Ingress{
		Listeners: []config.Listener{{Name: "tls", Address: "127.0.0.1:0", Protocol: "https",
			TLS: []config.Certificate{pki.leaf(t, "h2spec.test", "h2spec.test")}}},
		Routes: []config.HTTPRoute{{Name: "web", Rules: []config.Rule{{Backends: []config.BackendRef{ref("web", 80, 1)}}}}},
	}
	ing.Listeners = append(ing.Listeners, config.Listener{Name: "plain", Address: "127.0.0.1:0"})
	s := startIngress(t, ing, newFixed().add("web", 80, web.addr), Options{})
	// On the plain listener (h2c with prior knowledge) one case cannot pass: its "invalid
	// connection preface" is a valid start of an HTTP/1.1 request there, answered as such.
	for _, l := range []struct {
		name, flags, allowed string
	}{{"tls", "-t -k", ""}, {"plain", "", "Sends invalid connection preface"}} {
		_, port, _ := net.SplitHostPort(addrOf(t, s, l.name))
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		args := append([]string{"-h", "127.0.0.1", "-p", port, "-o", "5"}, strings.Fields(l.flags)...)
		out, err := exec.CommandContext(ctx, h2spec, args...).CombinedOutput()
		cancel()
		m := h2specSummary.FindSubmatch(out)
		if m == nil {
			t.Fatalf("h2spec %s: no summary (%v):\n%s", l.name, err, out)
		}
		total, _ := strconv.Atoi(string(m[1]))
		passed, _ := strconv.Atoi(string(m[2]))
		want := h2specCases
		if l.allowed != "" {
			want--
			if !bytes.Contains(out, []byte("× 2: "+l.allowed)) {
				want = h2specCases // some other case failed
			}
		}
		if total != h2specCases || passed != want {
			t.Fatalf("h2spec %s: %s (want %d of %d passed):\n%s", l.name, m[0], want, h2specCases, out)
		}
		t.Logf("h2spec %s: %s", l.name, m[0])
	}
}
