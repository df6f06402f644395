package netns

import (
	"os"
	"os/exec"
	"testing"
)

// Missing reports why namespace tests cannot run here ("" when they can): they need root, the
// `ip` tool and /dev/net/tun (the gateway's TUN device).
func Missing() string {
	if os.Geteuid() != 0 {
		return "not running as root"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "the ip tool (iproute2) is not installed"
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return "/dev/net/tun is missing"
	}
	return ""
}

// Require stops a test that needs namespaces when the environment cannot provide them: it
// fails under CI (env CI set), where these tests must run, and skips with the reason elsewhere.
func Require(t testing.TB) {
	t.Helper()
	why := Missing()
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("network namespace test cannot run under CI: %s", why)
	}
	t.Skipf("skipping network namespace test: %s (run as root with iproute2 and /dev/net/tun)", why)
}

// ForTest calls Require, creates a uniquely named namespace and registers its Close with
// t.Cleanup, so it is removed (processes first) also when the test fails.
func ForTest(t testing.TB, prefix string) *NS {
	t.Helper()
	Require(t)
	n, err := Create(UniqueName(prefix))
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("close namespace %s: %v", n.Name, err)
		}
	})
	return n
}
